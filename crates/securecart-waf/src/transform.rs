//! Text transformations applied to a field before it is matched, as AWS WAF's (and
//! ModSecurity's `t:` actions that CRS relies on): attackers encode what they send, and a
//! rule must see through the encoding.

use std::borrow::Cow;

/// One transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    /// `%41` and `+` decoded (invalid escapes kept as they are).
    UrlDecode,
    /// As [`Transform::UrlDecode`], and `%u0041` too (IIS-style).
    UrlDecodeUni,
    /// `&lt;`, `&#60;`, `&#x3c;` and the common named entities decoded.
    HtmlEntityDecode,
    /// ASCII letters lowercased.
    Lowercase,
    /// Runs of white space (and NUL, form feed, vertical tab) made one space.
    CompressWhitespace,
    /// `/./`, `//` and `dir/../` resolved, as a server would.
    NormalizePath,
    /// As [`Transform::NormalizePath`], with `\` first made `/`.
    NormalizePathWin,
    /// The whole value decoded from base64, if it is base64.
    Base64Decode,
    /// JavaScript escapes decoded: `\x41`, `\u0041`, `\101`, `\n`.
    JsDecode,
    /// A command line as a shell reads it: `\`, `"`, `'` and `^` removed, `,` and `;`
    /// made spaces, runs of spaces made one, spaces before `/` and `(` removed, lowercase.
    CmdLine,
    /// NUL bytes removed.
    RemoveNulls,
    /// The characters a shell drops inside a word removed (`\`, `"`, `'`, `^`), so that
    /// `c'a't` reads `cat`; separators stay.
    RemoveShellQuotes,
    /// C comments (`/* */`) made one space.
    ReplaceComments,
    /// Hex digits decoded to bytes (the whole value, if it is hex).
    HexDecode,
    /// White space (and NUL, NBSP) removed: `wp-config. php` reads `wp-config.php`.
    RemoveWhitespace,
    /// CSS 2 escapes decoded (ModSecurity's `cssDecode`): `\6a` and `\00006a ` are `j`
    /// (the escape's last byte; full-width ASCII `\ff4a` too), `ja\vascript` is
    /// `javascript`, and an escaped new line is dropped.
    CssDecode,
    /// ANSI C escapes decoded: `\a`, `\b`, `\f`, `\n`, `\r`, `\t`, `\v`, `\\`, `\?`,
    /// `\'`, `\"`, `\xHH` and up to three octal digits; others are kept as they are.
    EscapeSeqDecode,
    /// SQL hex strings decoded: `0x414243` is `ABC` (pairs of digits after `0x`).
    SqlHexDecode,
    /// NUL bytes made spaces.
    ReplaceNulls,
    /// Base64 decoded forgivingly (ModSecurity's `base64DecodeExt`): bytes outside its
    /// alphabet are skipped, so `cGF n.ZQ` is `page`. A value with fewer than two of the
    /// alphabet's bytes is left as it is.
    Base64DecodeExt,
    /// Each UTF-8 character beyond ASCII written as `%u` and its code point in lowercase
    /// hex, at least four digits (ModSecurity's `utf8toUnicode`): `é` is `%u00e9`, so that
    /// a rule reads non-English text in one notation. Bytes that are not well-formed UTF-8
    /// (overlong, surrogates, cut short) are kept as they are. Makes values longer.
    Utf8ToUnicode,
    /// The value's MD5 digest, 16 bytes (AWS WAF's `MD5`), for a rule that matches a
    /// known value by its hash. Makes values of up to 15 bytes longer. (A chain key gives
    /// each step five bits, so 31 transformations at most: see `inspect::chain_key`.)
    Md5,
}

/// Applies `transforms` in order; borrows when none changes anything.
pub fn apply<'a>(transforms: &[Transform], input: &'a [u8]) -> Cow<'a, [u8]> {
    let mut value = Cow::Borrowed(input);
    for transform in transforms {
        if let Some(changed) = transform.run(&value) {
            value = Cow::Owned(changed);
        }
    }
    value
}

impl Transform {
    /// Every transformation, with its name in topology files.
    pub const NAMED: [(&'static str, Transform); 22] = [
        ("url_decode", Transform::UrlDecode),
        ("url_decode_uni", Transform::UrlDecodeUni),
        ("html_entity_decode", Transform::HtmlEntityDecode),
        ("lowercase", Transform::Lowercase),
        ("compress_white_space", Transform::CompressWhitespace),
        ("normalize_path", Transform::NormalizePath),
        ("normalize_path_win", Transform::NormalizePathWin),
        ("base64_decode", Transform::Base64Decode),
        ("js_decode", Transform::JsDecode),
        ("cmd_line", Transform::CmdLine),
        ("remove_nulls", Transform::RemoveNulls),
        ("remove_shell_quotes", Transform::RemoveShellQuotes),
        ("replace_comments", Transform::ReplaceComments),
        ("hex_decode", Transform::HexDecode),
        ("remove_whitespace", Transform::RemoveWhitespace),
        ("css_decode", Transform::CssDecode),
        ("escape_seq_decode", Transform::EscapeSeqDecode),
        ("sql_hex_decode", Transform::SqlHexDecode),
        ("replace_nulls", Transform::ReplaceNulls),
        ("base64_decode_ext", Transform::Base64DecodeExt),
        ("utf8_to_unicode", Transform::Utf8ToUnicode),
        ("md5", Transform::Md5),
    ];

    /// The transformation of a name in [`Transform::NAMED`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, transform)| *transform)
    }

    /// Its position among the transformations, for keys.
    pub fn index(self) -> u8 {
        self as u8
    }

    /// Whether it may make a value longer (the others never do, which the WAF's merged
    /// sets rely on: see `statement::Merged`).
    pub(crate) fn lengthens(self) -> bool {
        matches!(self, Transform::Utf8ToUnicode | Transform::Md5)
    }

    /// The transformed value, or `None` when it would not change.
    fn run(self, input: &[u8]) -> Option<Vec<u8>> {
        match self {
            Transform::UrlDecode => url_decode(input, false),
            Transform::UrlDecodeUni => url_decode(input, true),
            Transform::HtmlEntityDecode => html_entity_decode(input),
            Transform::Lowercase => input
                .iter()
                .any(u8::is_ascii_uppercase)
                .then(|| input.to_ascii_lowercase()),
            Transform::CompressWhitespace => compress_whitespace(input),
            Transform::NormalizePath => normalize_path(input),
            Transform::NormalizePathWin => {
                if !input.contains(&b'\\') {
                    return normalize_path(input);
                }
                let slashed: Vec<u8> = input
                    .iter()
                    .map(|&byte| if byte == b'\\' { b'/' } else { byte })
                    .collect();
                Some(normalize_path(&slashed).unwrap_or(slashed))
            }
            Transform::Base64Decode => {
                use base64::Engine;
                let trimmed = input.trim_ascii();
                base64::engine::general_purpose::STANDARD
                    .decode(trimmed)
                    .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
                    .ok()
            }
            Transform::JsDecode => js_decode(input),
            Transform::CmdLine => {
                let normalised = cmd_line(input);
                (normalised != input).then_some(normalised)
            }
            Transform::RemoveShellQuotes => {
                without(input, |byte| matches!(byte, b'\\' | b'"' | b'\'' | b'^'))
            }
            Transform::RemoveNulls => without(input, |byte| byte == 0),
            Transform::ReplaceComments => replace_comments(input),
            Transform::HexDecode => hex_decode(input),
            Transform::RemoveWhitespace => without(input, is_space),
            Transform::CssDecode => css_decode(input),
            Transform::EscapeSeqDecode => escape_seq_decode(input),
            Transform::SqlHexDecode => sql_hex_decode(input),
            Transform::ReplaceNulls => input.contains(&0).then(|| {
                input
                    .iter()
                    .map(|&byte| if byte == 0 { b' ' } else { byte })
                    .collect()
            }),
            Transform::Base64DecodeExt => base64_decode_ext(input),
            Transform::Utf8ToUnicode => utf8_to_unicode(input),
            Transform::Md5 => {
                use md5::Digest;
                Some(md5::Md5::digest(input).to_vec())
            }
        }
    }
}

/// What one pass over a value tells of it: which bytes (and pairs of bytes) it holds that
/// some transformation acts on. A transformation whose triggers a value lacks leaves it
/// as it is ([`Transform::may_change`]), which is most values for most transformations:
/// the WAF then reads the value as it is, without running the chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traits(u32);

// Every trait is one of the low `Traits::BITS` bits, and each of those bits is a trait.
const _: () = assert!(
    Traits::PERCENT_PLUS
        | Traits::AMPERSAND
        | Traits::UPPERCASE
        | Traits::ODD_SPACE
        | Traits::SPACE_RUN
        | Traits::PATH
        | Traits::BACKSLASH
        | Traits::NUL
        | Traits::QUOTE
        | Traits::SEPARATOR
        | Traits::SPACE_BEFORE
        | Traits::COMMENT
        | Traits::MAYBE_BASE64
        | Traits::MAYBE_HEX
        | Traits::SPACE
        | Traits::HEX_PREFIX
        | Traits::BASE64_BYTE
        | Traits::NON_ASCII
        | Traits::ALWAYS
        == (1 << Traits::BITS) - 1
);

impl Traits {
    const PERCENT_PLUS: u32 = 1;
    const AMPERSAND: u32 = 1 << 1;
    const UPPERCASE: u32 = 1 << 2;
    /// White space other than the space (tab, new lines, NUL, NBSP...).
    const ODD_SPACE: u32 = 1 << 3;
    /// A space after white space.
    const SPACE_RUN: u32 = 1 << 4;
    /// `//` or `/.`, or a leading `.`.
    const PATH: u32 = 1 << 5;
    const BACKSLASH: u32 = 1 << 6;
    const NUL: u32 = 1 << 7;
    /// `"`, `'` or `^`.
    const QUOTE: u32 = 1 << 8;
    /// `,`, `;`, tab, `\n`, `\r`.
    const SEPARATOR: u32 = 1 << 9;
    /// `/` or `(` after a space.
    const SPACE_BEFORE: u32 = 1 << 10;
    /// `/*`.
    const COMMENT: u32 = 1 << 11;
    /// Only bytes of base64's alphabet and ASCII white space: it may decode.
    const MAYBE_BASE64: u32 = 1 << 12;
    /// Only hex digits: it may decode.
    const MAYBE_HEX: u32 = 1 << 13;
    /// White space of any kind (the space too), NUL or NBSP.
    const SPACE: u32 = 1 << 14;
    /// `0x` or `0X`. (A pair's trait: below bit 16.)
    const HEX_PREFIX: u32 = 1 << 15;
    /// A byte of base64's alphabet.
    const BASE64_BYTE: u32 = 1 << 16;
    /// A byte beyond ASCII.
    const NON_ASCII: u32 = 1 << 17;
    /// Every value has it: the trigger of a transformation that changes any value.
    const ALWAYS: u32 = 1 << 18;
    /// A byte neither in base64's alphabet nor ASCII white space (during the pass).
    const NOT_BASE64: u32 = 1 << 29;
    /// A byte that is not a hex digit (during the pass).
    const NOT_HEX: u32 = 1 << 30;
    /// Each byte's traits on its own (the low 32 bits); and, for the traits of a pair of
    /// bytes, what the byte adds as the pair's second (bits 32 to 47) and as its first
    /// (bits 48 to 63): a pair has the traits both halves name. One look-up per byte, and
    /// no branch (text is full of the spaces and dots a branch would stop at).
    const OF_BYTE: [u64; 256] = {
        let mut table = [0u64; 256];
        let mut byte = 0;
        while byte < 256 {
            let b = byte as u8;
            let mut traits = 0;
            if b == b'%' || b == b'+' {
                traits |= Self::PERCENT_PLUS;
            }
            if b == b'&' {
                traits |= Self::AMPERSAND;
            }
            if b.is_ascii_uppercase() {
                traits |= Self::UPPERCASE;
            }
            if is_space(b) && b != b' ' {
                traits |= Self::ODD_SPACE;
            }
            if is_space(b) {
                traits |= Self::SPACE;
            }
            if b == b'\\' {
                traits |= Self::BACKSLASH;
            }
            if b == 0 {
                traits |= Self::NUL;
            }
            if matches!(b, b'"' | b'\'' | b'^') {
                traits |= Self::QUOTE;
            }
            if matches!(b, b',' | b';' | b'\t' | b'\n' | b'\r') {
                traits |= Self::SEPARATOR;
            }
            if !(b.is_ascii_alphanumeric()
                || matches!(b, b'+' | b'/' | b'=')
                || b.is_ascii_whitespace())
            {
                traits |= Self::NOT_BASE64;
            }
            if !b.is_ascii_hexdigit() {
                traits |= Self::NOT_HEX;
            }
            if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/') {
                traits |= Self::BASE64_BYTE;
            }
            if !b.is_ascii() {
                traits |= Self::NON_ASCII;
            }
            // The pairs: `//` and `/.` (PATH), `/*` (COMMENT), a space before `/` or
            // `(` (SPACE_BEFORE), white space before a space (SPACE_RUN), `0x`
            // (HEX_PREFIX).
            let first = match b {
                b'/' => Self::PATH | Self::COMMENT,
                b' ' => Self::SPACE_BEFORE | Self::SPACE_RUN,
                _ if is_space(b) => Self::SPACE_RUN,
                b'0' => Self::HEX_PREFIX,
                _ => 0,
            };
            let second = match b {
                b'/' => Self::PATH | Self::SPACE_BEFORE,
                b'.' => Self::PATH,
                b'*' => Self::COMMENT,
                b'(' => Self::SPACE_BEFORE,
                b' ' => Self::SPACE_RUN,
                b'x' | b'X' => Self::HEX_PREFIX,
                _ => 0,
            };
            table[byte] = traits as u64 | (second as u64) << 32 | (first as u64) << 48;
            byte += 1;
        }
        table
    };

    /// The traits of `value`, in one pass.
    pub(crate) fn of(value: &[u8]) -> Self {
        let mut traits = if value.first() == Some(&b'.') {
            Self::PATH | Self::ALWAYS
        } else {
            Self::ALWAYS
        };
        // What the byte before adds as a pair's first (a leading byte follows none).
        let mut first = 0;
        for &byte in value {
            let entry = Self::OF_BYTE[byte as usize];
            traits |= entry as u32 | (first & (entry >> 32) as u32 & 0xffff);
            first = (entry >> 48) as u32;
        }
        // What a byte rules out becomes what the value may be, so that a union of
        // values' traits holds every trigger of each.
        // (Nor does a length of 4n + 1 once trimmed, padded or not.)
        if traits & Self::NOT_BASE64 == 0 && value.trim_ascii().len() % 4 != 1 {
            traits |= Self::MAYBE_BASE64;
        }
        if traits & Self::NOT_HEX == 0 {
            traits |= Self::MAYBE_HEX;
        }
        Self(traits & !(Self::NOT_BASE64 | Self::NOT_HEX))
    }

    /// The traits of both `self`'s values and `other`'s: a transformation that may change
    /// none of them according to the union leaves each as it is.
    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the two share a trait.
    pub(crate) fn meets(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// How many traits there are: each is one of the low bits (a test at compile time
    /// checks that they are all of them).
    pub(crate) const BITS: usize = 19;

    /// Each of its traits, as its bit's number (below [`Traits::BITS`]).
    pub(crate) fn bits(self) -> impl Iterator<Item = u32> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                bit
            })
        })
    }
}

impl Transform {
    /// The traits of the values it may change: a value with none of them it leaves as it
    /// is (a test checks this against [`Transform::run`]).
    pub(crate) fn triggers(self) -> Traits {
        Traits(match self {
            Transform::UrlDecode | Transform::UrlDecodeUni => Traits::PERCENT_PLUS,
            Transform::HtmlEntityDecode => Traits::AMPERSAND,
            Transform::Lowercase => Traits::UPPERCASE,
            Transform::CompressWhitespace => Traits::ODD_SPACE | Traits::SPACE_RUN,
            Transform::NormalizePath => Traits::PATH,
            Transform::NormalizePathWin => Traits::PATH | Traits::BACKSLASH,
            Transform::Base64Decode => Traits::MAYBE_BASE64,
            Transform::JsDecode => Traits::BACKSLASH,
            Transform::CmdLine => {
                Traits::UPPERCASE
                    | Traits::BACKSLASH
                    | Traits::QUOTE
                    | Traits::SEPARATOR
                    | Traits::SPACE_RUN
                    | Traits::SPACE_BEFORE
            }
            Transform::RemoveNulls => Traits::NUL,
            Transform::RemoveShellQuotes => Traits::BACKSLASH | Traits::QUOTE,
            Transform::ReplaceComments => Traits::COMMENT,
            Transform::HexDecode => Traits::MAYBE_HEX,
            Transform::RemoveWhitespace => Traits::SPACE,
            Transform::CssDecode | Transform::EscapeSeqDecode => Traits::BACKSLASH,
            Transform::SqlHexDecode => Traits::HEX_PREFIX,
            Transform::ReplaceNulls => Traits::NUL,
            Transform::Base64DecodeExt => Traits::BASE64_BYTE,
            Transform::Utf8ToUnicode => Traits::NON_ASCII,
            Transform::Md5 => Traits::ALWAYS,
        })
    }

    /// Whether the transformation could change a value of these traits.
    pub(crate) fn may_change(self, traits: Traits) -> bool {
        traits.meets(self.triggers())
    }

    /// For a transformation that reads a value from left to right, looking a few bytes
    /// ahead at most: how many of the last bytes of what it makes of a prefix of a value
    /// may differ from what it makes of the whole value (an escape cut in two, `%4` or
    /// `%u004`; a space that a `/` after it removes). The rest is a prefix of the whole's
    /// transformation (a test checks it on every split of every short text). `None` for
    /// the others: a path's `..` takes back what came before, an entity or an octal
    /// escape may be any length, base64 and hex decode the whole value or nothing.
    pub(crate) fn prefix_margin(self) -> Option<usize> {
        match self {
            Transform::UrlDecode | Transform::UrlDecodeUni => Some(5),
            Transform::CmdLine => Some(1),
            Transform::Lowercase
            | Transform::CompressWhitespace
            | Transform::RemoveNulls
            | Transform::RemoveShellQuotes
            | Transform::RemoveWhitespace
            | Transform::ReplaceNulls => Some(0),
            Transform::HtmlEntityDecode
            | Transform::NormalizePath
            | Transform::NormalizePathWin
            | Transform::Base64Decode
            | Transform::JsDecode
            | Transform::ReplaceComments
            | Transform::HexDecode
            | Transform::CssDecode
            | Transform::EscapeSeqDecode
            | Transform::SqlHexDecode
            | Transform::Base64DecodeExt
            | Transform::Utf8ToUnicode
            | Transform::Md5 => None,
        }
    }

    /// The bytes of a value that may become one of `made` in what the transformation
    /// makes of it: each byte itself, a capital for its lowercase letter, the white
    /// space or separators a space is made from, the `%` of any decoded byte and the `+`
    /// of a space. Known for the transformations with a [`Transform::prefix_margin`]
    /// (`None` for the others; a test checks it on every short text).
    pub(crate) fn sources(self, made: &[bool; 256]) -> Option<[bool; 256]> {
        self.prefix_margin()?;
        let mut sources = *made;
        let mut add = |byte: u8| sources[usize::from(byte)] = true;
        for byte in (0..=255u8).filter(|&byte| made[usize::from(byte)]) {
            match self {
                Transform::UrlDecode | Transform::UrlDecodeUni => {
                    add(b'%');
                    if byte == b' ' {
                        add(b'+');
                    }
                }
                Transform::Lowercase if byte.is_ascii_lowercase() => {
                    add(byte.to_ascii_uppercase());
                }
                Transform::CmdLine if byte.is_ascii_lowercase() => {
                    add(byte.to_ascii_uppercase());
                }
                Transform::CmdLine if byte == b' ' => {
                    b",; \t\n\r".iter().for_each(|&separator| add(separator));
                }
                Transform::ReplaceNulls if byte == b' ' => add(0),
                Transform::CompressWhitespace if byte == b' ' => {
                    (0..=255u8)
                        .filter(|&space| is_space(space))
                        .for_each(&mut add);
                }
                _ => {}
            }
        }
        Some(sources)
    }
}

/// The traits of the values one of `transforms` may change.
pub(crate) fn triggers(transforms: &[Transform]) -> Traits {
    transforms.iter().fold(Traits::default(), |all, transform| {
        all.union(transform.triggers())
    })
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Full-width ASCII (U+FF01 to U+FF5E) as its ASCII letter or sign, as IIS and CSS
/// decoders read it; any other code point as it is.
fn fullwidth_to_ascii(code: u32) -> u32 {
    if (0xff01..=0xff5e).contains(&code) {
        code - 0xfee0
    } else {
        code
    }
}

/// The byte two hex digits at `from` make, if `input` has them there.
fn hex_pair(input: &[u8], from: usize) -> Option<u8> {
    let digits = input.get(from..from + 2)?;
    Some(hex_value(digits[0])? << 4 | hex_value(digits[1])?)
}

/// The number `count` hex digits at `from` make, if `input` has them there.
fn hex_number(input: &[u8], from: usize, count: usize) -> Option<u32> {
    input
        .get(from..from + count)?
        .iter()
        .try_fold(0u32, |code, &digit| {
            Some(code << 4 | u32::from(hex_value(digit)?))
        })
}

/// A C octal escape's byte from the (at least one) octal digits at `from`, at most three
/// of them, and how many it read.
fn octal_escape(input: &[u8], from: usize) -> (u8, usize) {
    let digits = input[from..]
        .iter()
        .take(3)
        .take_while(|byte| (b'0'..=b'7').contains(*byte))
        .count();
    let code = input[from..from + digits]
        .iter()
        .fold(0u32, |code, &digit| code * 8 + u32::from(digit - b'0'));
    ((code & 0xff) as u8, digits)
}

/// `%41` and `+` decoded (and `%u0041`, when `unicode`), an invalid escape kept as it is;
/// `None` when the input has neither `%` nor `+`. Run by run: the bytes up to the next
/// `%` (found with memchr) are copied with each `+` made a space, in a loop the compiler
/// vectorises (a form's text has a `+` for every space). Forms are read with it too.
pub(crate) fn url_decode(input: &[u8], unicode: bool) -> Option<Vec<u8>> {
    memchr::memchr2(b'%', b'+', input)?;
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    loop {
        let run = memchr::memchr(b'%', rest).unwrap_or(rest.len());
        out.extend(
            rest[..run]
                .iter()
                .map(|&byte| if byte == b'+' { b' ' } else { byte }),
        );
        let Some((_, after)) = rest[run..].split_first() else {
            break;
        };
        if unicode
            && matches!(after.first(), Some(b'u' | b'U'))
            && let Some(code) = hex_number(after, 1, 4)
        {
            if let Some(character) = char::from_u32(fullwidth_to_ascii(code)) {
                let mut encoded = [0u8; 4];
                out.extend_from_slice(character.encode_utf8(&mut encoded).as_bytes());
            }
            rest = &after[5..];
            continue;
        }
        match hex_pair(after, 0) {
            Some(byte) => {
                out.push(byte);
                rest = &after[2..];
            }
            None => {
                out.push(b'%');
                rest = after;
            }
        }
    }
    Some(out)
}

fn html_entity_decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.contains(&b'&') {
        return None;
    }
    // Each name, its text, and whether it is read only with its `;`: HTML5's names of the
    // other ASCII punctuation (`&lcub;` for `{`, which hides `${jndi:`) are, so that
    // `&plus=1` in a query stays a parameter; the others are read without it, as browsers
    // read them.
    const NAMED: [(&[u8], &[u8], bool); 37] = [
        (b"lt", b"<", false),
        (b"gt", b">", false),
        (b"amp", b"&", false),
        (b"quot", b"\"", false),
        (b"apos", b"'", false),
        (b"nbsp", b" ", false),
        (b"colon", b":", false),
        (b"lpar", b"(", false),
        (b"rpar", b")", false),
        (b"tab", b"\t", false),
        (b"newline", b"\n", false),
        (b"dollar", b"$", true),
        (b"lcub", b"{", true),
        (b"lbrace", b"{", true),
        (b"rcub", b"}", true),
        (b"rbrace", b"}", true),
        (b"lsqb", b"[", true),
        (b"lbrack", b"[", true),
        (b"rsqb", b"]", true),
        (b"rbrack", b"]", true),
        (b"sol", b"/", true),
        (b"bsol", b"\\", true),
        (b"period", b".", true),
        (b"comma", b",", true),
        (b"semi", b";", true),
        (b"excl", b"!", true),
        (b"quest", b"?", true),
        (b"equals", b"=", true),
        (b"num", b"#", true),
        (b"percnt", b"%", true),
        (b"ast", b"*", true),
        (b"plus", b"+", true),
        (b"grave", b"`", true),
        (b"verbar", b"|", true),
        (b"vert", b"|", true),
        (b"lowbar", b"_", true),
        (b"commat", b"@", true),
    ];
    let mut out = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        if input[at] == b'&' {
            let rest = &input[at + 1..];
            let end = rest
                .iter()
                .take(12)
                .position(|&byte| !(byte.is_ascii_alphanumeric() || byte == b'#'))
                .unwrap_or(rest.len().min(12));
            let name = &rest[..end];
            // The `;` is optional, as browsers read it.
            let consumed = end + usize::from(rest.get(end) == Some(&b';'));
            let decoded: Option<Vec<u8>> = if let Some(number) = name.strip_prefix(b"#") {
                let code = if let Some(hex) = number
                    .strip_prefix(b"x")
                    .or_else(|| number.strip_prefix(b"X"))
                {
                    hex.iter().try_fold(0u32, |code, &digit| {
                        Some(code.checked_mul(16)? + u32::from(hex_value(digit)?))
                    })
                } else {
                    number.iter().try_fold(0u32, |code, &digit| {
                        digit
                            .is_ascii_digit()
                            .then(|| {
                                code.checked_mul(10)
                                    .map(|code| code + u32::from(digit - b'0'))
                            })
                            .flatten()
                    })
                };
                code.filter(|_| number.len() > 1 || !number.is_empty())
                    .and_then(char::from_u32)
                    .map(|character| character.to_string().into_bytes())
            } else {
                let with_semicolon = consumed > end;
                NAMED
                    .iter()
                    .find(|(entity, _, semicolon_needed)| {
                        entity.eq_ignore_ascii_case(name) && (with_semicolon || !semicolon_needed)
                    })
                    .map(|(_, text, _)| text.to_vec())
            };
            if let Some(decoded) = decoded.filter(|_| !name.is_empty()) {
                out.extend_from_slice(&decoded);
                at += 1 + consumed;
                continue;
            }
        }
        out.push(input[at]);
        at += 1;
    }
    Some(out)
}

const fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0 | 0)
}

fn compress_whitespace(input: &[u8]) -> Option<Vec<u8>> {
    // Most values have nothing to compress: find out without copying, in one pass.
    let mut after_space = false;
    let needed = input.iter().any(|&byte| {
        let space = is_space(byte);
        let compress = space && (after_space || byte != b' ');
        after_space = space;
        compress
    });
    if !needed {
        return None;
    }
    let mut out = Vec::with_capacity(input.len());
    let mut changed = false;
    let mut in_space = false;
    for &byte in input {
        if is_space(byte) {
            if in_space || byte != b' ' {
                changed = true;
            }
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(byte);
            in_space = false;
        }
    }
    changed.then_some(out)
}

fn normalize_path(input: &[u8]) -> Option<Vec<u8>> {
    if !(input.windows(2).any(|pair| pair == b"//" || pair == b"/.") || input.starts_with(b".")) {
        return None;
    }
    let absolute = input.starts_with(b"/");
    let trailing = input.ends_with(b"/");
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in input.split(|&byte| byte == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                if segments.last().is_some_and(|last| *last != b"..") {
                    segments.pop();
                } else if !absolute {
                    segments.push(segment);
                }
            }
            _ => segments.push(segment),
        }
    }
    let mut out = Vec::with_capacity(input.len());
    if absolute {
        out.push(b'/');
    }
    out.extend_from_slice(&segments.join(&b'/'));
    if trailing && !segments.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

fn js_decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.contains(&b'\\') {
        return None;
    }
    let mut out = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        if input[at] == b'\\' && at + 1 < input.len() {
            let next = input[at + 1];
            let hex = |from: usize, count: usize| hex_number(input, from, count);
            match next {
                b'x' => {
                    if let Some(code) = hex(at + 2, 2) {
                        out.push(code as u8);
                        at += 4;
                        continue;
                    }
                }
                b'u' => {
                    if let Some(character) = hex(at + 2, 4).and_then(char::from_u32) {
                        let mut encoded = [0u8; 4];
                        out.extend_from_slice(character.encode_utf8(&mut encoded).as_bytes());
                        at += 6;
                        continue;
                    }
                }
                b'0'..=b'7' => {
                    let (byte, digits) = octal_escape(input, at + 1);
                    out.push(byte);
                    at += 1 + digits;
                    continue;
                }
                _ => {
                    out.push(match next {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'v' => 0x0b,
                        other => other,
                    });
                    at += 2;
                    continue;
                }
            }
        }
        out.push(input[at]);
        at += 1;
    }
    Some(out)
}

/// `input` without the bytes `remove` names (`None`: it has none). The runs between them
/// are copied whole: text has few.
fn without(input: &[u8], remove: impl Fn(u8) -> bool) -> Option<Vec<u8>> {
    let mut rest = input;
    let mut out: Option<Vec<u8>> = None;
    while let Some(at) = rest.iter().position(|&byte| remove(byte)) {
        out.get_or_insert_with(|| Vec::with_capacity(input.len()))
            .extend_from_slice(&rest[..at]);
        rest = &rest[at + 1..];
    }
    let mut out = out?;
    out.extend_from_slice(rest);
    Some(out)
}

/// Command-line normalisation (ModSecurity's `cmdLine`): `\ " ' ^` deleted, each run of
/// `, ; ` and white space made one space, a space before `/` or `(` deleted, the rest
/// lowercased. One table look-up per byte and writes in place of pushes: it reads every
/// byte of long text the command-line rules see.
fn cmd_line(input: &[u8]) -> Vec<u8> {
    const KEEP: u8 = 0;
    const DELETE: u8 = 1;
    const SEPARATOR: u8 = 2;
    const SLASH_OR_PAREN: u8 = 3;
    const CLASS: [u8; 256] = {
        let mut class = [KEEP; 256];
        let mut byte = 0;
        while byte < 256 {
            class[byte] = match byte as u8 {
                b'\\' | b'"' | b'\'' | b'^' => DELETE,
                b',' | b';' | b' ' | b'\t' | b'\n' | b'\r' => SEPARATOR,
                b'/' | b'(' => SLASH_OR_PAREN,
                _ => KEEP,
            };
            byte += 1;
        }
        class
    };
    let mut out = vec![0u8; input.len()];
    // How many bytes are written, and whether the last is a separator's space.
    let mut written = 0;
    let mut space = false;
    for &byte in input {
        match CLASS[usize::from(byte)] {
            KEEP => {
                out[written] = byte.to_ascii_lowercase();
                written += 1;
                space = false;
            }
            DELETE => {}
            SEPARATOR => {
                if !space {
                    out[written] = b' ';
                    written += 1;
                    space = true;
                }
            }
            _ => {
                written -= usize::from(space);
                out[written] = byte;
                written += 1;
                space = false;
            }
        }
    }
    out.truncate(written);
    out
}

fn replace_comments(input: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(input, b"/*")?;
    let mut out = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        if input[at..].starts_with(b"/*") {
            let end = input[at + 2..]
                .windows(2)
                .position(|pair| pair == b"*/")
                .map_or(input.len(), |position| at + 2 + position + 2);
            out.push(b' ');
            at = end;
            continue;
        }
        out.push(input[at]);
        at += 1;
    }
    Some(out)
}

fn hex_decode(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() < 2 || !input.len().is_multiple_of(2) {
        return None;
    }
    input.chunks(2).map(|pair| hex_pair(pair, 0)).collect()
}

/// ModSecurity's `cssDecode` (CSS 2.1 section 4.1.3): an escape's hex digits (up to six)
/// make one byte, the last two's, unless they name full-width ASCII (`ff01` to `ff5e`),
/// made plain; one white space after them is part of the escape. A backslash before a
/// new line drops both, before anything else drops itself, and ends nothing at the end.
fn css_decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.contains(&b'\\') {
        return None;
    }
    let mut out = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        if input[at] != b'\\' {
            out.push(input[at]);
            at += 1;
            continue;
        }
        at += 1;
        let Some(&next) = input.get(at) else {
            break;
        };
        let digits = input[at..]
            .iter()
            .take(6)
            .take_while(|byte| byte.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            if next != b'\n' {
                out.push(next);
            }
            at += 1;
            continue;
        }
        let value = hex_number(input, at, digits).unwrap_or(0);
        out.push((fullwidth_to_ascii(value) & 0xff) as u8);
        at += digits;
        if input
            .get(at)
            .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        {
            at += 1;
        }
    }
    (out != input).then_some(out)
}

/// ANSI C escapes, as AWS WAF's `ESCAPE_SEQ_DECODE`; an escape it does not know (or one
/// cut short) is kept as it is.
fn escape_seq_decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.contains(&b'\\') {
        return None;
    }
    let mut out = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        let (byte, used) = match (input[at], input.get(at + 1)) {
            (b'\\', Some(&next)) => match next {
                b'a' => (0x07, 2),
                b'b' => (0x08, 2),
                b'f' => (0x0c, 2),
                b'n' => (b'\n', 2),
                b'r' => (b'\r', 2),
                b't' => (b'\t', 2),
                b'v' => (0x0b, 2),
                b'\\' | b'?' | b'\'' | b'"' => (next, 2),
                b'x' | b'X' => match hex_pair(input, at + 2) {
                    Some(byte) => (byte, 4),
                    None => (b'\\', 1),
                },
                b'0'..=b'7' => {
                    let (byte, digits) = octal_escape(input, at + 1);
                    (byte, 1 + digits)
                }
                _ => (b'\\', 1),
            },
            (byte, _) => (byte, 1),
        };
        out.push(byte);
        at += used;
    }
    (out != input).then_some(out)
}

/// `0x` and pairs of hex digits after it, as bytes (ModSecurity's `sqlHexDecode`); `0x`
/// without two digits after it is kept.
fn sql_hex_decode(input: &[u8]) -> Option<Vec<u8>> {
    let pair = |from: usize| hex_pair(input, from);
    // (Most values have no `0x` followed by a pair: left as they are, uncopied.)
    let first = input.windows(4).position(|window| {
        window[0] == b'0' && matches!(window[1], b'x' | b'X') && hex_pair(window, 2).is_some()
    })?;
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..first]);
    let mut at = first;
    while at < input.len() {
        if input[at] == b'0'
            && matches!(input.get(at + 1), Some(b'x' | b'X'))
            && pair(at + 2).is_some()
        {
            at += 2;
            while let Some(byte) = pair(at) {
                out.push(byte);
                at += 2;
            }
            continue;
        }
        out.push(input[at]);
        at += 1;
    }
    Some(out)
}

/// Each well-formed UTF-8 character beyond ASCII as `%u` and at least four lowercase hex
/// digits of its code point; every other byte as it is.
fn utf8_to_unicode(input: &[u8]) -> Option<Vec<u8>> {
    let first = input.iter().position(|byte| !byte.is_ascii())?;
    let mut out = Vec::with_capacity(input.len() + input.len() / 2);
    out.extend_from_slice(&input[..first]);
    let mut at = first;
    let mut changed = false;
    while at < input.len() {
        let byte = input[at];
        let width = match byte {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 1,
        };
        // `from_utf8` rules out overlong forms, surrogates and code points past U+10FFFF.
        let character = (width > 1)
            .then(|| input.get(at..at + width))
            .flatten()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|text| text.chars().next());
        match character {
            Some(character) => {
                use std::io::Write;
                let _ = write!(out, "%u{:04x}", u32::from(character));
                changed = true;
                at += width;
            }
            None => {
                out.push(byte);
                at += 1;
            }
        }
    }
    changed.then_some(out)
}

/// Base64 with every byte outside its alphabet skipped (padding too), the last group of
/// two or three characters decoded as far as it goes.
fn base64_decode_ext(input: &[u8]) -> Option<Vec<u8>> {
    let sextet = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let (mut bits, mut count) = (0u32, 0u32);
    for value in input.iter().filter_map(|&byte| sextet(byte)) {
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    (!out.is_empty() && out != input).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transformation_has_one_name() {
        let mut indices: Vec<u8> = Transform::NAMED
            .iter()
            .map(|(name, transform)| {
                assert_eq!(Transform::from_name(name), Some(*transform));
                transform.index()
            })
            .collect();
        indices.sort_unstable();
        indices.dedup();
        // The indices are the variants' places: all of them, each once.
        assert_eq!(
            indices,
            (0..Transform::NAMED.len() as u8).collect::<Vec<_>>()
        );
        assert_eq!(Transform::from_name("rot13"), None);
        // A chain key gives each step five bits, its index plus one (see
        // `inspect::chain_key`).
        assert!(Transform::NAMED.len() < 32);
    }

    #[test]
    fn a_value_a_transformation_leaves_as_it_is_is_not_copied() {
        // The WAF scans a value once for every chain that leaves it as it is (see
        // `statement::Merged`): a copy would cost a scan of its own.
        for (name, transform) in Transform::NAMED {
            for value in [&b"women"[..], b"red wool coat", b"2", b"/static/app.js"] {
                if let Cow::Owned(changed) = apply(&[transform], value) {
                    assert_ne!(changed, value, "{name} copied {value:?} unchanged");
                }
            }
        }
        assert!(matches!(
            apply(&[Transform::CmdLine], b"women"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            apply(&[Transform::NormalizePathWin], b"/static/app.js"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            apply(&[Transform::NormalizePathWin], b"a\\..\\b").as_ref(),
            b"b"
        );
    }

    /// Whether `transforms` leave every value of these traits as it is (each leaves it
    /// so, so the next sees the same value), as the merge reads them.
    fn leaves_as_is(transforms: &[Transform], traits: Traits) -> bool {
        !traits.meets(triggers(transforms))
    }

    /// Every value of up to three bytes over an alphabet of each transformation's
    /// triggers (and bytes that are none), then longer ones drawn at random: where
    /// `may_change` says a transformation leaves a value as it is, running it must agree.
    #[test]
    fn what_traits_say_is_left_as_is_is_left_as_is() {
        const ALPHABET: &[u8] = b"%+&Aa0fxX /.*\\\"'^,;(\t\n\r\x0b\x0c\0\xa0\xc3#u=-";
        let check_with = |value: &[u8], traits: Traits| {
            for (name, transform) in Transform::NAMED {
                if !transform.may_change(traits) {
                    assert_eq!(
                        transform.run(value),
                        None,
                        "{name} changes {value:?}, which its traits say it leaves as it is"
                    );
                }
            }
        };
        // And no transformation but those that say so makes a value longer (a value
        // shorter than every match of a chain's expressions cannot match after it: see
        // `statement::Merged`).
        let check = |value: &[u8]| {
            check_with(value, Traits::of(value));
            for (name, transform) in Transform::NAMED {
                if transform.lengthens() {
                    continue;
                }
                if let Some(changed) = transform.run(value) {
                    assert!(
                        changed.len() <= value.len(),
                        "{name} makes {value:?} longer: {changed:?}"
                    );
                }
            }
        };
        crate::every_string(ALPHABET, 0..=3, check);
        // A fixed xorshift: the same values on every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Each with the one before, as two values of a field read through their union.
        let mut before: Vec<u8> = Vec::new();
        for round in 0..50_000 {
            // Every third value from base64's and hex's alphabets, which may decode.
            let alphabet: &[u8] = if round % 3 == 0 {
                b"Aa0f+/= "
            } else {
                ALPHABET
            };
            let length = (next() % 12) as usize + 4;
            let value: Vec<u8> = (0..length)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            check(&value);
            let union = Traits::of(&value).union(Traits::of(&before));
            check_with(&value, union);
            check_with(&before, union);
            before = value;
        }
        // And what a shop sends: its traits let every chain but lowercase skip it.
        let traits = Traits::of(b"red wool coat");
        assert!(leaves_as_is(
            &[
                Transform::UrlDecodeUni,
                Transform::HtmlEntityDecode,
                Transform::JsDecode,
                Transform::RemoveNulls,
                Transform::CompressWhitespace,
                Transform::CmdLine,
                Transform::NormalizePathWin,
            ],
            traits
        ));
        assert!(!leaves_as_is(&[Transform::Lowercase], Traits::of(b"Red")));
        // A field's values are read through their union: a value that may decode from
        // base64 keeps that in the union with one that may not.
        let union = Traits::of(b"not base64!").union(Traits::of(b"cGFnZQ=="));
        assert!(!leaves_as_is(&[Transform::Base64Decode], union));
        assert!(!leaves_as_is(
            &[Transform::HexDecode],
            Traits::of(b"x").union(Traits::of(b"3c"))
        ));
    }

    /// What a transformation with a prefix margin makes of any prefix of a text, but its
    /// last `margin` bytes, begins what it makes of the whole text; and each byte it makes
    /// comes from one of its sources in the text: checked on every split of every text
    /// of up to 4 bytes over the bytes they treat apart, and of up to 6 over those of
    /// escapes and over those of command lines.
    #[test]
    fn prefixes_and_sources_are_as_the_transformations_say() {
        let mut checked = 0;
        let alphabets: [(&[u8], u32); 3] =
            [(b"%+4u1aB \t;/('\\\0", 4), (b"%uA4+ ", 6), (b"aB ;/(\"", 6)];
        for ((_, transform), (alphabet, longest)) in Transform::NAMED
            .into_iter()
            .flat_map(|named| alphabets.map(|alphabet| (named, alphabet)))
        {
            let Some(margin) = transform.prefix_margin() else {
                continue;
            };
            let sources: Vec<[bool; 256]> = (0..=255u8)
                .map(|byte| {
                    let mut made = [false; 256];
                    made[usize::from(byte)] = true;
                    transform.sources(&made).expect("sources")
                })
                .collect();
            crate::every_string(alphabet, 0..=longest, |text| {
                let whole = apply(&[transform], text);
                for cut in 0..text.len() {
                    let part = apply(&[transform], &text[..cut]);
                    let kept = &part[..part.len().saturating_sub(margin)];
                    assert!(
                        whole.starts_with(kept),
                        "{transform:?} of {:?} cut at {cut}",
                        String::from_utf8_lossy(text)
                    );
                }
                for &byte in whole.iter() {
                    let sources = &sources[usize::from(byte)];
                    assert!(
                        text.iter().any(|&source| sources[usize::from(source)]),
                        "{transform:?} made {byte:?} of {:?}",
                        String::from_utf8_lossy(text)
                    );
                }
                checked += 1;
            });
        }
        assert!(checked > 1_000_000, "{checked}");
    }

    #[test]
    fn utf8_becomes_unicode_escapes_and_md5_a_digest() {
        let unicode = |input: &[u8]| apply(&[Transform::Utf8ToUnicode], input).into_owned();
        assert_eq!(unicode("café".as_bytes()), b"caf%u00e9");
        assert_eq!(unicode("€ 5".as_bytes()), b"%u20ac 5");
        assert_eq!(unicode("😀".as_bytes()), b"%u1f600");
        assert_eq!(unicode("<ｓcript>".as_bytes()), b"<%uff53cript>");
        // ASCII is left as it is, uncopied.
        assert!(matches!(
            apply(&[Transform::Utf8ToUnicode], b"plain"),
            Cow::Borrowed(_)
        ));
        // What is not well-formed UTF-8 stays: a lone continuation byte, an overlong `/`,
        // a surrogate, a character cut short, a code point past U+10FFFF.
        for malformed in [
            &b"a\x80b"[..],
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xe2\x82",
            b"\xf4\x90\x80\x80",
        ] {
            assert!(
                matches!(
                    apply(&[Transform::Utf8ToUnicode], malformed),
                    Cow::Borrowed(_)
                ),
                "{malformed:?}"
            );
        }
        assert_eq!(unicode(b"\xc3\xa9\xc3"), b"%u00e9\xc3");

        let md5 = |input: &[u8]| apply(&[Transform::Md5], input).into_owned();
        let hex =
            |bytes: Vec<u8>| -> String { bytes.iter().map(|byte| format!("{byte:02x}")).collect() };
        // RFC 1321's test suite.
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(b"message digest")),
            "f96b697d7cb7938d525a2f31aaf161d0"
        );
        // Every value's traits say it may change.
        assert!(Transform::Md5.may_change(Traits::of(b"")));
        assert!(Transform::Md5.may_change(Traits::of(b"-")));
        assert!(!Transform::Utf8ToUnicode.may_change(Traits::of(b"plain ascii")));
    }

    /// The table-driven command-line normalisation agrees with its plain reading (each
    /// byte pushed or popped as ModSecurity describes it) on every text of up to 5 bytes
    /// over the bytes it treats apart.
    #[test]
    fn command_line_normalisation_agrees_with_its_plain_reading() {
        fn plain(input: &[u8]) -> Vec<u8> {
            let mut out: Vec<u8> = Vec::new();
            for &byte in input {
                match byte {
                    b'\\' | b'"' | b'\'' | b'^' => {}
                    b',' | b';' | b' ' | b'\t' | b'\n' | b'\r' => {
                        if out.last() != Some(&b' ') {
                            out.push(b' ');
                        }
                    }
                    b'/' | b'(' => {
                        if out.last() == Some(&b' ') {
                            out.pop();
                        }
                        out.push(byte);
                    }
                    _ => out.push(byte.to_ascii_lowercase()),
                }
            }
            out
        }
        crate::every_string(b"aZ\\\"'^,; \t\n/(", 0..=5, |input| {
            assert_eq!(
                cmd_line(input),
                plain(input),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        });
    }

    #[test]
    fn transformations_see_through_encodings() {
        use Transform::*;
        let cases: &[(&[Transform], &str, &str)] = &[
            (&[UrlDecode], "1%27%20OR%20%271%27=%271", "1' OR '1'='1"),
            (&[UrlDecode], "a+b%zz%4", "a b%zz%4"),
            (&[UrlDecodeUni], "%u003cscript%uff1e", "<script>"),
            (&[UrlDecode, UrlDecode], "%253Cscript%253E", "<script>"),
            (
                &[HtmlEntityDecode],
                "&lt;img src=x onerror=&#97;lert(1)&GT;",
                "<img src=x onerror=alert(1)>",
            ),
            (
                &[HtmlEntityDecode],
                "&#x6A;avascript&colon;x",
                "javascript:x",
            ),
            (
                &[HtmlEntityDecode],
                "Tom &amp Jerry & co",
                "Tom & Jerry & co",
            ),
            (&[Lowercase], "SeLeCt", "select"),
            (&[CompressWhitespace], "union \t\n  select", "union select"),
            (&[NormalizePath], "/a/./b//../../etc/passwd", "/etc/passwd"),
            (&[NormalizePath], "a/../../b/", "../b/"),
            (
                &[NormalizePathWin],
                "..\\..\\windows\\win.ini",
                "../../windows/win.ini",
            ),
            (&[Base64Decode], "PHNjcmlwdD4=", "<script>"),
            (&[JsDecode], "\\x3cscript\\u003e\\101", "<script>A"),
            (&[CmdLine], "C^a\"t /e't'c/pa\\ss;w", "cat/etc/pass w"),
            (&[RemoveNulls], "a\0b", "ab"),
            (
                &[RemoveShellQuotes],
                ";c'a't /e\\tc/pa\"ss\"wd",
                ";cat /etc/passwd",
            ),
            (&[ReplaceComments], "UNION/**/SELECT/* x", "UNION SELECT "),
            (&[HexDecode], "3c73", "<s"),
            (&[HexDecode], "3c7", "3c7"),
            (&[RemoveWhitespace], "wp-config. php\t", "wp-config.php"),
            // CSS: the last byte of up to six digits, a space after them eaten, full-width
            // ASCII made plain, a backslash before anything else dropped, and one before a
            // new line dropped with it.
            (&[CssDecode], "\\6a a\\00076 \\61script", "javascript"),
            (&[CssDecode], "ja\\vascript:\\ff41lert", "javascript:alert"),
            (&[CssDecode], "ex\\\npression\\", "expression"),
            (&[CssDecode], "\\3c\\2f\\73", "</s"),
            // C: the known escapes, hex and octal; others kept.
            (
                &[EscapeSeqDecode],
                "\\x3cscript\\076\\t\\\\\\q\\x4",
                "<script>\t\\\\q\\x4",
            ),
            (&[EscapeSeqDecode], "\\101\\'\\\"\\?", "A'\"?"),
            // SQL hex: pairs after 0x, an odd digit left.
            (
                &[SqlHexDecode],
                "SELECT 0x414243, 0x4, 0x41424",
                "SELECT ABC, 0x4, AB4",
            ),
            (&[ReplaceNulls], "a\0b\0", "a b "),
            // Forgiving base64: what is not of its alphabet skipped.
            (&[Base64DecodeExt], "PHNj.cml wdD4=", "<script>"),
            (&[Base64DecodeExt], "P!", "P!"),
        ];
        for (transforms, input, expected) in cases {
            let output = apply(transforms, input.as_bytes());
            assert_eq!(
                String::from_utf8_lossy(&output),
                *expected,
                "{transforms:?} {input:?}"
            );
        }
        assert!(matches!(
            apply(&[UrlDecode, Lowercase], b"plain"),
            Cow::Borrowed(_)
        ));
    }
}
