//! libinjection's SQL injection verdict (`libinjection_is_sqli`), the same as
//! `libinjectionrs` gives it, at a fraction of its cost.
//!
//! `libinjectionrs` looks each word up in its table of 9,352 keywords and fingerprints by
//! a binary search, after copying the word into a new capitalised `String`; the fold does
//! the same with each pair of words it tries to merge (`GROUP BY`), after a `format!`.
//! On a benign review those look-ups were two thirds of the detector's time, and the
//! detector a fifth of the WAF's. Its tokenizer takes a look-up of our own
//! (`SqliTokenizer::with_lookup_fn`), but its state makes its tokenizer itself, so this
//! module holds the rest of the detector over that tokenizer and that table: the fold of
//! the tokens into at most five (`libinjection_sqli_fold`), the fingerprint, the
//! blacklist and the whitelist (`libinjection_sqli_not_whitelist`). It is a port of
//! `libinjectionrs` 0.1.1's, itself libinjection's (both BSD-3-Clause), rule for rule and
//! in the same order, so that it can be read beside them; what differs is only that
//! words are capitalised on the stack and found in a hash table built once.
//!
//! The tests check that it gives `libinjectionrs`'s verdict on every text of up to 4
//! bytes over SQL's signs, on generated statements of SQL's words and signs, and on
//! injections; the fuzz target `sqli` (`scripts/fuzz sqli`) checks it on anything.

use libinjectionrs::sqli::sqli_data;
use libinjectionrs::sqli::{SqliFlags, SqliTokenizer, Token, TokenType as T};

/// The most tokens a fingerprint has (`LIBINJECTION_SQLI_MAX_TOKENS`).
const MAX_TOKENS: usize = 5;

/// libinjection's flags (`FLAG_*`; `SqliFlags` hides its bits: a test checks these).
const QUOTE_NONE: u32 = 1;
const QUOTE_SINGLE: u32 = 1 << 1;
const QUOTE_DOUBLE: u32 = 1 << 2;
const SQL_ANSI: u32 = 1 << 3;
const SQL_MYSQL: u32 = 1 << 4;

/// The longest word the table is looked up with on the stack: longer than any of its
/// words (a test checks), so a longer one is a bare word, looked up in no table.
pub(crate) const WORD_LIMIT: usize = 32;

/// Whether libinjection flags `input` as SQL injection: `libinjectionrs`'s
/// `SqliState::new(input, SqliFlags::FLAG_NONE).detect()`. Like libinjection, it reads
/// the input as it is, then as if a quote came before it (where it holds one), in ANSI
/// SQL, then in MySQL's where comments may read otherwise.
pub fn is_sqli(input: &[u8]) -> bool {
    if input.is_empty() {
        return false;
    }
    let mut fold = Fold::new(input);
    if fold.flags(QUOTE_NONE | SQL_ANSI) {
        return true;
    }
    if fold.reparse_as_mysql() && fold.flags(QUOTE_NONE | SQL_MYSQL) {
        return true;
    }
    if memchr::memchr(b'\'', input).is_some() {
        if fold.flags(QUOTE_SINGLE | SQL_ANSI) {
            return true;
        }
        if fold.reparse_as_mysql() && fold.flags(QUOTE_SINGLE | SQL_MYSQL) {
            return true;
        }
    }
    memchr::memchr(b'"', input).is_some() && fold.flags(QUOTE_DOUBLE | SQL_MYSQL)
}

/// The type libinjection's table gives `word` (any case; a bare word when it has none).
fn lookup(word: &[u8]) -> T {
    type Table = std::collections::HashMap<&'static [u8], T, foldhash::fast::FixedState>;
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        // Each word with the type `libinjectionrs`'s own look-up gives it.
        sqli_data::SQL_KEYWORDS
            .iter()
            .map(|keyword| {
                (
                    keyword.word.as_bytes(),
                    sqli_data::lookup_word(keyword.word),
                )
            })
            .collect()
    });
    let Some((upper, len)) = capitals(word) else {
        return T::Bareword;
    };
    table.get(&upper[..len]).copied().unwrap_or(T::Bareword)
}

/// Whether libinjection's table has `word` (any case), alone or as a part of a phrase
/// (`GROUP` of `GROUP BY`); a word too long for the look-up counts as known (for
/// `statement::could_be_sqli`, which then leaves the value to the detector).
pub(crate) fn known_word(word: &[u8]) -> bool {
    type Words = std::collections::HashSet<&'static [u8], foldhash::fast::FixedState>;
    static WORDS: std::sync::OnceLock<Words> = std::sync::OnceLock::new();
    let words = WORDS.get_or_init(|| {
        sqli_data::SQL_KEYWORDS
            .iter()
            .flat_map(|keyword| keyword.word.split(' '))
            .map(str::as_bytes)
            .collect()
    });
    let Some((upper, len)) = capitals(word) else {
        return true;
    };
    words.contains(&upper[..len])
}

/// `word` in capitals on the stack, and its length; `None` when it is longer than
/// [`WORD_LIMIT`].
fn capitals(word: &[u8]) -> Option<([u8; WORD_LIMIT], usize)> {
    let mut upper = [0u8; WORD_LIMIT];
    upper.get_mut(..word.len())?.copy_from_slice(word);
    upper[..word.len()].make_ascii_uppercase();
    Some((upper, word.len()))
}

/// The tokenizer's look-up.
fn lookup_str(word: &str) -> T {
    lookup(word.as_bytes())
}

/// A token's text as `libinjectionrs` compares it (`Token::value_as_str`): `None` for
/// bytes that are not UTF-8, which it reads as `<binary>` and so as no word it knows.
fn text(token: &Token) -> Option<&[u8]> {
    let bytes = &token.val[..token.len.min(token.val.len())];
    std::str::from_utf8(bytes).ok().map(str::as_bytes)
}

/// Whether the token's text is `word` (capitals), in any case (`cstrcasecmp(..) == 0`).
fn is(token: &Token, word: &[u8]) -> bool {
    text(token).is_some_and(|text| text.eq_ignore_ascii_case(word))
}

fn is_unary(token: &Token) -> bool {
    token.token_type == T::Operator
        && text(token).is_some_and(|text| match text {
            [sign] => matches!(sign, b'+' | b'-' | b'!' | b'~'),
            [b'!', b'!'] => true,
            [_, _, _] => text.eq_ignore_ascii_case(b"NOT"),
            _ => false,
        })
}

fn is_arithmetic(token: &Token) -> bool {
    token.token_type == T::Operator
        && token.len == 1
        && matches!(token.val[0], b'*' | b'/' | b'-' | b'+' | b'%')
}

/// The types a word merge reads (`syntax_merge_words`): the first token's, and the
/// second's (which may also be a logic operator).
fn mergeable(token_type: T, second: bool) -> bool {
    matches!(
        token_type,
        T::Keyword
            | T::Bareword
            | T::Operator
            | T::Union
            | T::Function
            | T::Expression
            | T::Tsql
            | T::SqlType
    ) || (second && token_type == T::LogicOperator)
}

/// The tokenizer as the fold reads it: each token counted, the end noted (`more`), and
/// the last comment read set aside rather than folded.
struct Reader<'a, 's> {
    tokenizer: SqliTokenizer<'a>,
    more: bool,
    read: &'s mut usize,
    last_comment: Token,
}

impl Reader<'_, '_> {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokenizer.next_token();
        match &token {
            Some(_) => *self.read += 1,
            None => self.more = false,
        }
        token
    }

    /// Reads tokens into `v` from `pos` until `pos` reaches `until`, the input ends, or a
    /// sixth token is held; a comment is set aside (a token after it forgets it).
    fn fill(&mut self, v: &mut [Token], pos: &mut usize, until: usize) {
        while self.more && *pos <= MAX_TOKENS && *pos < until {
            if let Some(token) = self.next() {
                if token.token_type == T::Comment {
                    self.last_comment = token;
                } else {
                    self.last_comment.token_type = T::None;
                    v[*pos] = token;
                    *pos += 1;
                }
            }
        }
    }

    /// The tokenizer's counts of MySQL's comments (`--` without a space, and `#`).
    fn comment_stats(&self) -> (i32, i32) {
        (
            self.tokenizer.stats_comment_ddx,
            self.tokenizer.stats_comment_hash,
        )
    }
}

/// The fold of one input, taken again with each set of flags.
struct Fold<'a> {
    input: &'a [u8],
    /// The tokens being folded (`tokenvec`: five, and a sixth read ahead to tell the
    /// fifth's type; eight places, as libinjection has).
    vec: [Token; MAX_TOKENS + 3],
    /// How many of `vec`'s first tokens the fingerprint is of.
    count: usize,
    fingerprint: [u8; 8],
    stats_tokens: usize,
    comment_ddx: i32,
    comment_hash: i32,
}

impl<'a> Fold<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            vec: std::array::from_fn(|_| Token::new()),
            count: 0,
            fingerprint: [0; 8],
            stats_tokens: 0,
            comment_ddx: 0,
            comment_hash: 0,
        }
    }

    /// Whether the input read with `flags` has a blacklisted fingerprint the whitelist
    /// does not clear.
    fn flags(&mut self, flags: u32) -> bool {
        self.count = 0;
        self.fingerprint = [0; 8];
        self.stats_tokens = 0;
        self.comment_ddx = 0;
        self.comment_hash = 0;
        let folded = self.fold(SqliFlags::new(flags));
        self.take_fingerprint(folded);
        self.blacklisted() && self.not_whitelisted()
    }

    /// Whether the last reading saw MySQL's comments (`reparse_as_mysql`).
    fn reparse_as_mysql(&self) -> bool {
        self.comment_ddx != 0 || self.comment_hash != 0
    }

    /// `libinjection_sqli_fold`: folds the tokens into `vec`, sets `count`, and returns
    /// how many tokens it folded to (the fingerprint's length, before its tokens of no
    /// type are left out).
    fn fold(&mut self, flags: SqliFlags) -> usize {
        let lookup: &dyn Fn(&str) -> T = &lookup_str;
        let mut reader = Reader {
            tokenizer: SqliTokenizer::new(self.input, flags).with_lookup_fn(lookup),
            more: true,
            read: &mut self.stats_tokens,
            last_comment: Token::new(),
        };
        // Skip the comments, left parentheses, types and unary operators it starts with.
        while reader.more {
            if let Some(token) = reader.next() {
                let skipped = matches!(
                    token.token_type,
                    T::Comment | T::LeftParenthesis | T::SqlType
                ) || is_unary(&token);
                self.vec[0] = token;
                if !skipped {
                    break;
                }
            }
        }
        if !reader.more {
            (self.comment_ddx, self.comment_hash) = reader.comment_stats();
            return 0;
        }
        let v = &mut self.vec;
        let ty = |v: &[Token], at: usize| v[at].token_type;
        let mut pos = 1;
        let mut left = 0;
        loop {
            // Five tokens: a few shapes are folded further.
            if pos >= MAX_TOKENS {
                let shape = [ty(v, 0), ty(v, 1), ty(v, 2), ty(v, 3), ty(v, 4)];
                let refold = matches!(
                    shape,
                    [
                        T::Number,
                        T::Operator | T::Comma,
                        T::LeftParenthesis,
                        T::Number,
                        T::RightParenthesis
                    ] | [
                        T::Bareword,
                        T::Operator,
                        T::LeftParenthesis,
                        T::Bareword | T::Number,
                        T::RightParenthesis
                    ] | [
                        T::Number,
                        T::RightParenthesis,
                        T::Comma,
                        T::LeftParenthesis,
                        T::Number
                    ] | [
                        T::Bareword,
                        T::RightParenthesis,
                        T::Operator,
                        T::LeftParenthesis,
                        T::Bareword
                    ]
                );
                if refold {
                    if pos > MAX_TOKENS {
                        v[1] = v[MAX_TOKENS].clone();
                        pos = 2;
                    } else {
                        pos = 1;
                    }
                    left = 0;
                }
            }
            if !reader.more || left >= MAX_TOKENS {
                left = pos;
                break;
            }
            // Up to two tokens.
            reader.fill(v, &mut pos, left + 2);
            if pos - left < 2 {
                left = pos;
                continue;
            }
            let (a, b) = (ty(v, left), ty(v, left + 1));
            // The two-token folds, the first that applies.
            if a == T::String && b == T::String || a == T::Semicolon && b == T::Semicolon {
                pos -= 1;
                continue;
            } else if matches!(a, T::Operator | T::LogicOperator)
                && (is_unary(&v[left + 1]) || b == T::SqlType)
            {
                pos -= 1;
                left = 0;
                continue;
            } else if a == T::LeftParenthesis && is_unary(&v[left + 1])
                || Self::merge_words(v, left)
            {
                // `( -`: the unary operator goes; `GROUP` `BY`: one keyword (a merge
                // is tried only where the first does not apply).
                pos -= 1;
                left = left.saturating_sub(1);
                continue;
            } else if a == T::Semicolon
                && b == T::Function
                && v[left + 1].len >= 2
                && v[left + 1].val[..2].eq_ignore_ascii_case(b"IF")
            {
                // `; IF`: Transact-SQL's statement, not the function.
                v[left + 1].token_type = T::Tsql;
                continue;
            } else if matches!(a, T::Bareword | T::Variable)
                && b == T::LeftParenthesis
                && [
                    &b"USER_ID"[..],
                    b"USER_NAME",
                    b"DATABASE",
                    b"PASSWORD",
                    b"USER",
                    b"CURRENT_USER",
                    b"CURRENT_DATE",
                    b"CURRENT_TIME",
                    b"CURRENT_TIMESTAMP",
                    b"LOCALTIME",
                    b"LOCALTIMESTAMP",
                ]
                .iter()
                .any(|word| is(&v[left], word))
            {
                v[left].token_type = T::Function;
                continue;
            } else if a == T::Keyword && (is(&v[left], b"IN") || is(&v[left], b"NOT IN")) {
                v[left].token_type = if b == T::LeftParenthesis {
                    T::Operator
                } else {
                    T::Bareword
                };
                continue;
            } else if a == T::Operator && (is(&v[left], b"LIKE") || is(&v[left], b"NOT LIKE")) {
                if b == T::LeftParenthesis {
                    v[left].token_type = T::Function;
                }
                // (No `continue`: on to the three tokens, as libinjection does.)
            } else if a == T::SqlType
                && matches!(
                    b,
                    T::Bareword
                        | T::Number
                        | T::SqlType
                        | T::LeftParenthesis
                        | T::Function
                        | T::Variable
                        | T::String
                )
            {
                v[left] = v[left + 1].clone();
                pos -= 1;
                left = 0;
                continue;
            } else if a == T::Collate && b == T::Bareword {
                // A collation with a `_` is a type.
                if text(&v[left + 1]).is_some_and(|text| text.contains(&b'_')) {
                    v[left + 1].token_type = T::SqlType;
                    left = 0;
                }
                // (No `continue`.)
            } else if a == T::Backslash {
                if is_arithmetic(&v[left + 1]) {
                    // Transact-SQL reads `\%1` as `0 % 1`.
                    v[left].token_type = T::Number;
                } else {
                    v[left] = v[left + 1].clone();
                    pos -= 1;
                }
                left = 0;
                continue;
            } else if a == T::LeftParenthesis && b == T::LeftParenthesis
                || a == T::RightParenthesis && b == T::RightParenthesis
            {
                pos -= 1;
                left = 0;
                continue;
            } else if a == T::LeftBrace && b == T::Bareword {
                // MySQL's `{ ``.``.id }`: blacklisted whole.
                if v[left + 1].len == 0 {
                    v[left + 1].token_type = T::Evil;
                    self.count = left + 2;
                    // (Its comment statistics stay as they were reset.)
                    return left + 2;
                }
                // ODBC's `{foo expr}`: the `{ foo` is dropped.
                left = 0;
                pos -= 2;
                continue;
            } else if b == T::RightBrace {
                pos -= 1;
                left = 0;
                continue;
            }
            // A third token.
            reader.fill(v, &mut pos, left + 3);
            if pos - left < 3 {
                left = pos;
                continue;
            }
            let (a, b, c) = (ty(v, left), ty(v, left + 1), ty(v, left + 2));
            // The three-token folds, the first that applies.
            if a == T::Number && b == T::Operator && c == T::Number
                || a == T::Operator && b != T::LeftParenthesis && c == T::Operator
                || a == T::LogicOperator && c == T::LogicOperator
                || a == T::Variable
                    && b == T::Operator
                    && matches!(c, T::Variable | T::Number | T::Bareword)
                || matches!(a, T::Bareword | T::Number)
                    && b == T::Operator
                    && matches!(c, T::Number | T::Bareword)
                || matches!(a, T::Bareword | T::Number | T::Variable | T::String)
                    && b == T::Operator
                    && v[left + 1].len == 2
                    && v[left + 1].val[..2] == *b"::"
                    && c == T::SqlType
                || matches!(a, T::Bareword | T::Number | T::String | T::Variable)
                    && b == T::Comma
                    && matches!(c, T::Number | T::Bareword | T::String | T::Variable)
                || a == T::Bareword && b == T::Dot && c == T::Bareword
            {
                pos -= 2;
                left = 0;
                continue;
            } else if matches!(a, T::Expression | T::Group | T::Comma)
                && is_unary(&v[left + 1])
                && c == T::LeftParenthesis
                || matches!(a, T::Keyword | T::Expression | T::Group)
                    && is_unary(&v[left + 1])
                    && matches!(
                        c,
                        T::Number | T::Bareword | T::Variable | T::String | T::Function
                    )
            {
                // `SELECT + (`, `select - 1`: the unary operator goes.
                v[left + 1] = v[left + 2].clone();
                pos -= 1;
                left = 0;
                continue;
            } else if a == T::Comma
                && is_unary(&v[left + 1])
                && matches!(c, T::Number | T::Bareword | T::Variable | T::String)
            {
                // `1,-1`: `,1`, then back up to fold `1,1`.
                v[left + 1] = v[left + 2].clone();
                left = 0;
                // (At least three tokens are held.)
                pos -= 3;
                continue;
            } else if a == T::Comma && is_unary(&v[left + 1]) && c == T::Function
                || a == T::Expression && b == T::Dot && c == T::Bareword
            {
                // `1,-sin(1)`: `1,sin(1)`; `select . `foo``: `select `foo``.
                v[left + 1] = v[left + 2].clone();
                pos -= 1;
                left = 0;
                continue;
            } else if a == T::Function
                && b == T::LeftParenthesis
                && c != T::RightParenthesis
                && is(&v[left], b"USER")
            {
                // `USER()` takes no argument: `user(foo)` is no function.
                v[left].token_type = T::Bareword;
            }
            left += 1;
        }
        // A sixth token may have been read to tell the fifth's type.
        let left = left.min(MAX_TOKENS);
        // PHP's magic back-quote comment: an empty, unclosed bare word in back quotes.
        if left > 2 {
            let last = &mut v[left - 1];
            if last.token_type == T::Bareword
                && last.str_open == b'`'
                && last.len == 0
                && last.str_close == 0
            {
                last.token_type = T::Comment;
            }
        }
        // The fingerprint's tokens: those with a type, then the last comment.
        let mut count = 0;
        for at in 0..left {
            if v[at].token_type != T::None {
                v.swap(count, at);
                count += 1;
            }
        }
        let mut folded = left;
        if left < MAX_TOKENS && reader.last_comment.token_type == T::Comment {
            v[count] = reader.last_comment.clone();
            count += 1;
            folded += 1;
        }
        (self.comment_ddx, self.comment_hash) = reader.comment_stats();
        self.count = count;
        folded
    }

    /// `syntax_merge_words`: whether the tokens at `left` and after it make one word or
    /// phrase of the table (`GROUP BY`, `NOT IN`), which then replaces the first.
    fn merge_words(v: &mut [Token], left: usize) -> bool {
        let (first, second) = (&v[left], &v[left + 1]);
        if !mergeable(first.token_type, false) || !mergeable(second.token_type, true) {
            return false;
        }
        let (one, two) = (first.len, second.len);
        // The merge and its ending NUL fit in a token.
        if one + two + 1 >= WORD_LIMIT {
            return false;
        }
        // Words `libinjectionrs` reads as `<binary>` are known in no merge.
        let (Some(one_text), Some(two_text)) = (text(first), text(second)) else {
            return false;
        };
        let mut merged = [0u8; WORD_LIMIT];
        merged[..one].copy_from_slice(one_text);
        merged[one] = b' ';
        merged[one + 1..one + 1 + two].copy_from_slice(two_text);
        let merged = &merged[..one + 1 + two];
        let found = lookup(merged);
        if found == T::Bareword {
            return false;
        }
        let first = &mut v[left];
        first.token_type = found;
        first.val[..merged.len()].copy_from_slice(merged);
        first.len = merged.len();
        true
    }

    /// The fingerprint of the `folded` tokens' types; an evil token makes it `X` alone.
    fn take_fingerprint(&mut self, folded: usize) {
        let count = folded.min(self.count).min(self.fingerprint.len());
        for (at, token) in self.vec[..count].iter().enumerate() {
            // (A token of no type is never kept; `libinjectionrs` would write `?`.)
            self.fingerprint[at] = match token.token_type {
                T::None => b'?',
                other => other.to_char() as u8,
            };
        }
        self.count = count;
        if self.fingerprint.contains(&b'X') {
            self.fingerprint = [0; 8];
            self.fingerprint[0] = b'X';
            if count > 0 {
                let mut evil = Token::new();
                evil.token_type = T::Evil;
                evil.len = 1;
                evil.val[0] = b'X';
                self.vec[0] = evil;
                self.count = 1;
            }
        }
    }

    fn fingerprint(&self) -> &[u8] {
        let len = self
            .fingerprint
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(self.fingerprint.len());
        &self.fingerprint[..len]
    }

    /// Whether the fingerprint is in libinjection's blacklist: in its table as `0` and
    /// the fingerprint in capitals, of the type "fingerprint".
    fn blacklisted(&self) -> bool {
        let fingerprint = self.fingerprint();
        if fingerprint.is_empty() {
            return false;
        }
        let mut key = [b'0'; 9];
        key[1..=fingerprint.len()].copy_from_slice(fingerprint);
        lookup(&key[..=fingerprint.len()]) == T::Fingerprint
    }

    /// `libinjection_sqli_not_whitelist`: whether a blacklisted fingerprint stays an
    /// injection after the checks that clear the common false positives.
    fn not_whitelisted(&self) -> bool {
        let fingerprint = self.fingerprint();
        let tokens = &self.vec[..self.count];
        if fingerprint.len() > 1
            && fingerprint.last() == Some(&b'c')
            && std::str::from_utf8(self.input).is_ok()
            && memchr::memmem::find(&self.input.to_ascii_lowercase(), b"sp_password").is_some()
        {
            return true;
        }
        match fingerprint.len() {
            2 if tokens.len() >= 2 => self.two_tokens(fingerprint, tokens),
            3 if tokens.len() >= 3 => Self::three_tokens(fingerprint, tokens, self.stats_tokens),
            _ => true,
        }
    }

    /// The whitelist of two-token fingerprints ("very small injections, which make them
    /// hard to tell from normal input").
    fn two_tokens(&self, fingerprint: &[u8], tokens: &[Token]) -> bool {
        if fingerprint[1] == b'U' {
            // `1 union` alone is not an injection; with folding or more tokens it is.
            return self.stats_tokens != 2;
        }
        // A second token starting with `#`: too many false positives.
        if tokens[1].val[0] == b'#' {
            return false;
        }
        // After a bare word, only a `/*` comment is SQL.
        if tokens[0].token_type == T::Bareword
            && tokens[1].token_type == T::Comment
            && tokens[1].val[0] != b'/'
        {
            return false;
        }
        if tokens[0].token_type == T::Number && tokens[1].token_type == T::Comment {
            if tokens[1].val[0] == b'/' || self.stats_tokens > 2 {
                return true;
            }
            // libinjection reads the byte after the number at the number's length
            // rather than its end (a bug `libinjectionrs` keeps, and so this).
            let after = tokens[0].len;
            return match self.input.get(after) {
                // A space (or a byte past ASCII, as a C `char`): `1234 --`.
                Some(&byte) if (byte as i8) <= 32 => true,
                Some(b'/') => self.input.get(after + 1) == Some(&b'*'),
                Some(b'-') => self.input.get(after + 1) == Some(&b'-'),
                _ => false,
            };
        }
        // A scan ending with `--` is one; `1-- foo` is not.
        !(tokens[1].len > 2 && tokens[1].val[0] == b'-')
    }

    /// The whitelist of three-token fingerprints.
    fn three_tokens(fingerprint: &[u8], tokens: &[Token], stats_tokens: usize) -> bool {
        if fingerprint == b"sos" || fingerprint == b"s&s" {
            // `...foo" + "bar...`: an injection; other strings joined are not.
            return tokens[0].str_open == 0
                && tokens[2].str_close == 0
                && tokens[0].str_close == tokens[2].str_open;
        }
        if matches!(fingerprint, b"s&n" | b"n&1" | b"1&1" | b"1&v" | b"1&s") && stats_tokens == 3 {
            // `sexy and 17`, not `sexy and 17<18`.
            return false;
        }
        // A keyword in the middle: only MySQL's `INTO OUTFILE` or `INTO DUMPFILE`.
        !(tokens[1].token_type == T::Keyword
            && (tokens[1].len < 5 || !tokens[1].val.starts_with(b"INTO")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `libinjectionrs`'s verdict, its state's `detect` (which `is_sqli` ports), checked
    /// to be its `detect_sqli`'s (which takes one more fingerprint for its result).
    fn reference(input: &[u8]) -> bool {
        let verdict = libinjectionrs::sqli::SqliState::new(input, SqliFlags::FLAG_NONE).detect();
        assert_eq!(
            verdict,
            libinjectionrs::detect_sqli(input).is_injection(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        verdict
    }

    /// `is_sqli(input)`, having checked first that each of the readings it may take
    /// folds `input` to `libinjectionrs`'s fingerprint, with as many tokens read and the
    /// same comment statistics.
    fn checked(input: &[u8]) -> bool {
        let mut fold = Fold::new(input);
        for flags in [
            QUOTE_NONE | SQL_ANSI,
            QUOTE_NONE | SQL_MYSQL,
            QUOTE_SINGLE | SQL_ANSI,
            QUOTE_SINGLE | SQL_MYSQL,
            QUOTE_DOUBLE | SQL_MYSQL,
        ] {
            let mut state = libinjectionrs::sqli::SqliState::new(input, SqliFlags::new(flags));
            let fingerprint = state.get_fingerprint();
            fold.flags(flags);
            let context = || format!("{:?} read with {flags}", String::from_utf8_lossy(input));
            assert_eq!(
                fold.fingerprint(),
                fingerprint
                    .as_bytes()
                    .split(|&b| b == 0)
                    .next()
                    .unwrap_or_default(),
                "{}",
                context()
            );
            assert_eq!(fold.stats_tokens, state.stats_tokens, "{}", context());
            assert_eq!(
                (fold.comment_ddx, fold.comment_hash),
                (state.stats_comment_ddx, state.stats_comment_hash),
                "{}",
                context()
            );
        }
        is_sqli(input)
    }

    /// `libinjectionrs`'s verdict on `input`, which `checked` must give too.
    fn agrees(input: &[u8]) -> bool {
        let verdict = reference(input);
        assert_eq!(
            checked(input),
            verdict,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        verdict
    }

    #[test]
    fn the_flags_are_libinjections() {
        assert_eq!(SqliFlags::new(QUOTE_NONE), SqliFlags::FLAG_QUOTE_NONE);
        assert_eq!(SqliFlags::new(QUOTE_SINGLE), SqliFlags::FLAG_QUOTE_SINGLE);
        assert_eq!(SqliFlags::new(QUOTE_DOUBLE), SqliFlags::FLAG_QUOTE_DOUBLE);
        assert_eq!(SqliFlags::new(SQL_ANSI), SqliFlags::FLAG_SQL_ANSI);
        assert_eq!(SqliFlags::new(SQL_MYSQL), SqliFlags::FLAG_SQL_MYSQL);
    }

    /// The hash table gives every word, in any case, the type `libinjectionrs`'s binary
    /// search gives it, and words longer than the stack's are none of its.
    #[test]
    fn the_look_up_is_libinjectionrss() {
        for keyword in sqli_data::SQL_KEYWORDS {
            assert!(keyword.word.len() < WORD_LIMIT, "{}", keyword.word);
            assert!(keyword.word.is_ascii(), "{}", keyword.word);
            // What `libinjectionrs` merges a word it reads as `<binary>` into is none.
            assert!(!keyword.word.contains("<BINARY>"), "{}", keyword.word);
            for word in [
                keyword.word.to_string(),
                keyword.word.to_ascii_lowercase(),
                format!("{}x", keyword.word),
            ] {
                assert_eq!(
                    lookup(word.as_bytes()),
                    sqli_data::lookup_word(&word),
                    "{word}"
                );
            }
        }
    }

    /// The same verdicts as `libinjectionrs` on every text of up to 4 bytes over SQL's
    /// signs and quotes.
    #[test]
    fn short_texts_get_libinjectionrss_verdicts() {
        let mut flagged = 0;
        crate::every_string(b"1' o=-#/*\"(;", 0..=4, &mut |value: &[u8]| {
            flagged += usize::from(agrees(value));
        });
        assert!(flagged > 300, "{flagged}");
    }

    /// The same verdicts on statements made of SQL's words, signs, strings, numbers and
    /// comments, in the order a seeded generator strings them (the folds' rules each need
    /// a few tokens of given types in a row).
    #[test]
    fn generated_statements_get_libinjectionrss_verdicts() {
        const PARTS: &[&str] = &[
            "1",
            "0x1f",
            "1.5e3",
            "'a'",
            "\"b\"",
            "`c`",
            "x",
            "users",
            "@v",
            "@@version",
            "select",
            "union",
            "all",
            "from",
            "where",
            "and",
            "or",
            "not",
            "in",
            "like",
            "not in",
            "not like",
            "group",
            "by",
            "order",
            "into",
            "outfile",
            "user",
            "database",
            "sleep",
            "if",
            "char",
            "collate",
            "utf8_bin",
            "int",
            "cast",
            "as",
            "exec",
            "waitfor",
            "delay",
            "(",
            ")",
            ",",
            ";",
            ".",
            "{",
            "}",
            "=",
            "<",
            ">",
            "+",
            "-",
            "!",
            "~",
            "!!",
            "*",
            "/",
            "%",
            "\\",
            "::",
            "||",
            "&&",
            "--",
            "-- x",
            "#",
            "/*",
            "*/",
            "/*!",
            " ",
            " ",
            " ",
            "'",
            "\"",
            "sp_password",
            "\u{a0}",
            "\u{ff}",
            "é",
        ];
        let mut state: u64 = 0x5ec0_4ca7;
        let mut random = |below: usize| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
        };
        let (mut flagged, mut value) = (0, String::new());
        for _ in 0..60_000 {
            value.clear();
            for _ in 0..1 + random(9) {
                value.push_str(PARTS[random(PARTS.len())]);
                if random(3) > 0 {
                    value.push(' ');
                }
            }
            flagged += usize::from(agrees(value.as_bytes()));
        }
        assert!(flagged > 3000, "{flagged}");
    }

    /// The same fingerprints and verdicts on the fold's rarer ways: the evil `{ ``` ``,
    /// PHP's back-quote comment, tokens `libinjectionrs` reads as `<binary>` (not UTF-8)
    /// in merges, names and collations, a byte past ASCII after a number (a C `char`
    /// below 0), `sp_password` in text that is not UTF-8, the five-token shapes folded
    /// again, long words cut at a dot, and a backslash before an operator; and on every
    /// text of up to 3 bytes over the signs and bytes the first test leaves out.
    #[test]
    fn the_folds_rarer_ways_get_libinjectionrss_verdicts() {
        let inputs: &[&[u8]] = &[
            b"select { ``.``.id }",
            b"{ `` x",
            b"1 union select `",
            b"1 union select ` x",
            b"\xff union select 1",
            b"group\xff by 1",
            b"1 group by\xff",
            b"user\xff(1)",
            b"1 coll\xe9 x_y",
            b"1 collate x_\xff",
            b"1\x80--",
            b"1\xa0-- x",
            b"1 -- sp_password\xff",
            b"1 -- SP_PASSWORD",
            b"1-(1)-1",
            b"x-(y)",
            b"1),(1",
            b"x)-(y",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.union select 1",
            b"\\%1 union select 1",
            b"\\1 union select 1",
            b"1; if 1=1 waitfor delay '0:0:5'",
            b"1::int",
            b"x in (1) or 1=1",
            b"x in 1",
            b"1 like(1)",
        ];
        for input in inputs {
            agrees(input);
        }
        crate::every_string(b"`{}\\.,):@\xff\xa0#", 0..=3, &mut |value: &[u8]| {
            agrees(value);
        });
    }

    #[test]
    fn injections_are_flagged_and_prose_is_not() {
        for injection in [
            "1' or '1'='1",
            "1 union select password from users--",
            "admin'--",
            "1; drop table orders",
            "\" or \"\"=\"",
            "1 and sleep(5)#",
            "1' and 1=1 into outfile '/tmp/x",
        ] {
            assert!(agrees(injection.as_bytes()), "{injection}");
        }
        let review = "Lovely wool coat, warm and light. The sleeves are a little long for me \
            (I'm 1.60 m), but the shop's tailor fixed that. Would buy again - 5/5! ";
        assert!(!agrees(review.as_bytes()));
    }
}
