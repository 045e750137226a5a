//! Needles: bytes and pairs of bytes that a merged set's every match holds, unless the
//! match starts where the value does. A value without any of them can only match from its
//! start, which an anchored search tells after a few bytes rather than a scan of all of
//! them. The look for the needles is a table walk, more than twice as fast as the lazy
//! DFA's scan, or, where each needle holds a rare byte, a SIMD search for those bytes
//! (`aho-corasick`'s Teddy), ten times faster again; it pays on long text (a review, a
//! description), where a set for command lines finds none of `;&|` and is not run past
//! the first bytes.
//!
//! The needles come from each expression's syntax tree ([`required`]): a literal needs
//! its rarest pair of bytes, a class one of its bytes, a concatenation what its rarest
//! part needs, an alternation what any branch needs, and `^` nothing at all (a match of
//! it starts at the start). Rarity is guessed from the bytes' frequencies in text
//! ([`frequency`]); a wrong guess costs time, never a match. This is the prefilter of
//! literals the regex engine builds for itself where expressions begin with one, found
//! anywhere in them instead (as Hyperscan and RE2's `FilteredRE2` do with literals).

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// The bytes and pairs of bytes of a set of expressions, as a table of every pair: a
/// byte is needed after whatever byte comes before it.
#[derive(Debug)]
pub(crate) struct Needles {
    /// One bit per pair of bytes (the first byte's row of 256 bits, the second's bit in
    /// it): 8 KiB.
    pairs: Box<[u64; 1024]>,
    /// A SIMD search for the rarer byte of each needle (see [`Needles::in_value`]), when
    /// those bytes are rare enough and the processor has the instructions.
    rare_bytes: Option<aho_corasick::packed::Searcher>,
    /// Those bytes: every needle holds one.
    rare: Vec<u8>,
}

/// One needle.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Needle {
    Byte(u8),
    Pair(u8, u8),
}

/// What every match of an expression holds, unless it starts where the value does: one
/// of the needles (an empty list: no match starts elsewhere). `None`: nothing is known.
type Required = Option<Vec<Needle>>;

/// Needles more common than this (the sum of their frequencies: about how many are
/// found per byte of text) are not looked for: most values would hold one, and the look
/// would be time spent before the scan rather than instead of it.
const MOST_COMMON: f64 = 0.02;

/// A class of more bytes than this is not split into pairs with its neighbours.
const PAIRED_CLASS: usize = 4;

/// The needles' rarer bytes are searched for with SIMD when they are no more common than
/// this (per byte of text): each one found is a look at its neighbours.
const MOST_COMMON_RARE_BYTES: f64 = 0.03;

/// How many of the rare bytes found are looked at (and one more per 32 bytes of the
/// value) before the rest of the value is walked instead.
const RARE_LOOKS: usize = 16;

/// A SIMD search for any of `bytes`, if they are rare enough in text for each found to
/// be worth a look (and the processor has the instructions).
pub(crate) fn rare_bytes_search(bytes: &[u8]) -> Option<aho_corasick::packed::Searcher> {
    if bytes.iter().map(|&byte| frequency(byte)).sum::<f64>() > MOST_COMMON_RARE_BYTES {
        return None;
    }
    aho_corasick::packed::Config::new()
        .builder()
        .extend(bytes.iter().map(|&byte| [byte]))
        .build()
}

impl Needle {
    /// The byte every occurrence of the needle holds that text holds least often.
    fn rarer_byte(self) -> u8 {
        match self {
            Needle::Byte(byte) => byte,
            Needle::Pair(first, second) if frequency(first) <= frequency(second) => first,
            Needle::Pair(_, second) => second,
        }
    }
}

impl Needles {
    /// The needles of `patterns`, as a merged set reads them; `None` when one of them
    /// needs none (`\w+`), or the needles are too common to pay for their look.
    pub(crate) fn of<P: AsRef<str>>(
        patterns: &[P],
        syntax: &regex_automata::util::syntax::Config,
    ) -> Option<Self> {
        let mut needles = Self {
            pairs: Box::new([0u64; 1024]),
            rare_bytes: None,
            rare: Vec::new(),
        };
        let mut bytes = [false; 256];
        let mut rare = [false; 256];
        let mut common = 0.0;
        for pattern in patterns {
            let hir = regex_automata::util::syntax::parse_with(pattern.as_ref(), syntax).ok()?;
            for needle in required(&hir)? {
                rare[usize::from(needle.rarer_byte())] = true;
                match needle {
                    Needle::Byte(byte) if !bytes[usize::from(byte)] => {
                        bytes[usize::from(byte)] = true;
                        (0..=255).for_each(|first| needles.set(first, byte));
                    }
                    Needle::Pair(first, second) if !needles.has(first, second) => {
                        needles.set(first, second);
                    }
                    _ => continue,
                }
                common += rarity(&[needle]);
            }
            // (Most sets of many expressions stop here, before their every expression
            // is parsed again.)
            if common > MOST_COMMON {
                return None;
            }
        }
        needles.rare = (0..=255).filter(|&byte| rare[usize::from(byte)]).collect();
        needles.rare_bytes = rare_bytes_search(&needles.rare);
        Some(needles)
    }

    /// A byte of each needle (its rarer): a text without any holds none of them.
    pub(crate) fn rare(&self) -> &[u8] {
        &self.rare
    }

    fn bit(first: u8, second: u8) -> usize {
        usize::from(first) << 8 | usize::from(second)
    }

    fn set(&mut self, first: u8, second: u8) {
        let bit = Self::bit(first, second);
        self.pairs[bit >> 6] |= 1 << (bit & 63);
    }

    fn has(&self, first: u8, second: u8) -> bool {
        let bit = Self::bit(first, second);
        self.pairs[bit >> 6] & 1 << (bit & 63) != 0
    }

    /// Whether `value` holds one of the needles. (Its first byte is paired with a NUL
    /// before it: at worst a needle too many is found, which costs the scan it would
    /// have cost anyway.)
    ///
    /// Every needle holds its rarer byte, so in a value long enough for the SIMD search
    /// only the places of those bytes are looked at: each could be a needle's byte, or
    /// the first or second byte of a pair.
    pub(crate) fn in_value(&self, value: &[u8]) -> bool {
        if let Some(rare_bytes) = &self.rare_bytes
            && value.len() >= rare_bytes.minimum_len()
        {
            // A text full of those bytes (chosen by a client) would make each its own
            // look: past a few per byte, the rest is walked.
            let most = RARE_LOOKS + value.len() / 32;
            for (looked, found) in rare_bytes.find_iter(value).enumerate() {
                let at = found.start();
                let byte = value[at];
                let before = at.checked_sub(1).map_or(0, |before| value[before]);
                if self.has(before, byte)
                    || value
                        .get(at + 1)
                        .is_some_and(|&after| self.has(byte, after))
                {
                    return true;
                }
                if looked >= most {
                    return self.walk(byte, &value[at + 1..]);
                }
            }
            return false;
        }
        self.walk(0, value)
    }

    /// Whether `value`, after `first`, holds one of the needles: a look at each byte.
    fn walk(&self, mut first: u8, value: &[u8]) -> bool {
        for &byte in value {
            if self.has(first, byte) {
                return true;
            }
            first = byte;
        }
        false
    }
}

/// What every match of `hir` holds, unless it starts at the value's start (see
/// [`Required`]).
fn required(hir: &Hir) -> Required {
    match hir.kind() {
        HirKind::Empty => None,
        HirKind::Literal(literal) => match &*literal.0 {
            [] => None,
            [byte] => Some(vec![Needle::Byte(*byte)]),
            bytes => bytes
                .windows(2)
                .map(|pair| vec![Needle::Pair(pair[0], pair[1])])
                .min_by(|one, other| rarity(one).total_cmp(&rarity(other))),
        },
        HirKind::Class(class) => {
            let bytes = class_bytes(class)?;
            (!bytes.is_empty()).then(|| bytes.into_iter().map(Needle::Byte).collect())
        }
        // A match of `^` is at the start; one of a line's start is at the start or after
        // a line's end (the needle is before the match, in the value).
        HirKind::Look(Look::Start) => Some(Vec::new()),
        HirKind::Look(Look::StartLF) => Some(vec![Needle::Byte(b'\n')]),
        HirKind::Look(Look::StartCRLF) => Some(vec![Needle::Byte(b'\n'), Needle::Byte(b'\r')]),
        HirKind::Look(_) => None,
        HirKind::Repetition(repetition) if repetition.min > 0 => required(&repetition.sub),
        HirKind::Repetition(_) => None,
        HirKind::Capture(capture) => required(&capture.sub),
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                for needle in required(branch)? {
                    if !all.contains(&needle) {
                        all.push(needle);
                    }
                }
            }
            Some(all)
        }
        HirKind::Concat(parts) => {
            // Each part's own needles, and the pairs two neighbouring parts make where
            // one always ends with, and the next always begins with, one of few bytes.
            let mut candidates: Vec<Vec<Needle>> = parts.iter().filter_map(required).collect();
            for neighbours in parts.windows(2) {
                let (Some(ends), Some(begins)) =
                    (edge(&neighbours[0], true), edge(&neighbours[1], false))
                else {
                    continue;
                };
                candidates.push(
                    ends.iter()
                        .flat_map(|&first| {
                            begins
                                .iter()
                                .map(move |&second| Needle::Pair(first, second))
                        })
                        .collect(),
                );
            }
            candidates
                .into_iter()
                .min_by(|one, other| rarity(one).total_cmp(&rarity(other)))
        }
    }
}

/// The few bytes a match of `hir` always ends with (`last`) or begins with: of a literal,
/// or of a class of at most [`PAIRED_CLASS`] bytes.
fn edge(hir: &Hir, last: bool) -> Option<Vec<u8>> {
    match hir.kind() {
        HirKind::Literal(literal) => {
            let byte = if last {
                literal.0.last()
            } else {
                literal.0.first()
            };
            byte.map(|byte| vec![*byte])
        }
        HirKind::Class(class) => class_bytes(class).filter(|bytes| bytes.len() <= PAIRED_CLASS),
        HirKind::Capture(capture) => edge(&capture.sub, last),
        _ => None,
    }
}

/// The bytes of a class, as a merged set reads it (on bytes: a class of characters
/// beyond ASCII is left alone).
fn class_bytes(class: &Class) -> Option<Vec<u8>> {
    match class {
        Class::Bytes(class) => Some(
            class
                .ranges()
                .iter()
                .flat_map(|range| range.start()..=range.end())
                .collect(),
        ),
        Class::Unicode(class) => {
            let mut bytes = Vec::new();
            for range in class.ranges() {
                let start = u8::try_from(u32::from(range.start())).ok()?;
                let end = u8::try_from(u32::from(range.end())).ok()?;
                if !end.is_ascii() {
                    return None;
                }
                bytes.extend(start..=end);
            }
            Some(bytes)
        }
    }
}

/// About how many of the needles a byte of text holds.
fn rarity(needles: &[Needle]) -> f64 {
    needles
        .iter()
        .map(|needle| match *needle {
            Needle::Byte(byte) => frequency(byte),
            Needle::Pair(first, second) => frequency(first) * frequency(second),
        })
        .sum()
}

/// A guess at how often `byte` comes in the text a shop's requests carry: English
/// letters by their frequency, capitals, digits and the usual punctuation less, other
/// bytes rarely.
fn frequency(byte: u8) -> f64 {
    const LETTERS: [f64; 26] = [
        8.2, 1.5, 2.8, 4.3, 12.7, 2.2, 2.0, 6.1, 7.0, 0.15, 0.77, 4.0, 2.4, 6.7, 7.5, 1.9, 0.095,
        6.0, 6.3, 9.1, 2.8, 0.98, 2.4, 0.15, 2.0, 0.074,
    ];
    match byte {
        b' ' => 0.15,
        b'a'..=b'z' => LETTERS[usize::from(byte - b'a')] / 100.0 * 0.7,
        b'A'..=b'Z' => LETTERS[usize::from(byte - b'A')] / 100.0 * 0.07,
        b'0'..=b'9' => 0.01,
        b'.' | b',' | b'-' | b'\'' | b'/' | b':' | b'_' | b'@' | b'(' | b')' | b'!' | b'?' => 0.005,
        b'"' | b'=' | b'&' | b'+' | b'%' | b'#' | b'*' | b';' => 0.002,
        0x21..=0x7e => 0.001,
        _ => 0.0005,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the merged sets read their expressions.
    use crate::statement::merged_syntax as syntax;

    /// Where an expression's needles are missing from a value, the expression matches the
    /// value exactly where it matches from the value's start: checked on every value of up
    /// to four bytes over an alphabet of the expressions' bytes.
    #[test]
    fn without_its_needles_an_expression_matches_only_from_the_start() {
        let patterns = [
            r"(?:^|[;&|])\s*(?:ls|cat)\b",
            r"(?i)\bif\s+exist|for %",
            r"^x|y;",
            r"(?m)^ab",
            r"a(?:b|^c)",
            r"\s*^a;",
            r"(?:ab)+c",
            r"(?:ab)*;",
            r"[ab]c",
            r"(?i)Ab",
            r"x{2,}",
            r"(?:x|^)(?:y|$)",
            r"a\b;|;b",
        ];
        let alphabet = b"abcxy;& \nIifFls%";
        let mut checked = 0;
        for pattern in patterns {
            let needles = Needles::of(&[pattern], &syntax());
            let Some(needles) = needles else {
                continue;
            };
            let regex = regex_automata::meta::Regex::builder()
                .syntax(syntax())
                .build(pattern)
                .expect("pattern");
            crate::every_string(alphabet, 0..=4, |value| {
                if needles.in_value(value) {
                    return;
                }
                let anchored =
                    regex_automata::Input::new(value).anchored(regex_automata::Anchored::Yes);
                assert_eq!(
                    regex.is_match(value),
                    regex.is_match(anchored),
                    "{pattern} on {:?}",
                    String::from_utf8_lossy(value)
                );
                checked += 1;
            });
        }
        assert!(checked > 200_000, "{checked}");
    }

    /// The SIMD search for the needles' rare bytes finds a needle exactly where the walk
    /// of every byte does: in long values holding every string of up to 3 bytes, among
    /// bytes that are no needle, and among rare bytes that are no needle either (past the
    /// looks it takes before walking the rest).
    #[test]
    fn the_search_for_rare_bytes_finds_what_the_walk_finds() {
        let patterns = [
            r"(?:^|[;&|`\n\r]|\$\()\s*(?:ls|cat)\b",
            r"(?i)\bif\s+exist|for %",
            r"x(?:y|^z)",
            r"(?:ab)*;",
            r"\$\{[a-z]+\}|`id`",
        ];
        let alphabet = b"axyz$({};`&|\n%fF";
        let mut searched = 0;
        for pattern in patterns {
            let needles = Needles::of(&[pattern], &syntax()).expect("needles");
            let Some(rare_bytes) = &needles.rare_bytes else {
                continue;
            };
            // A rare byte that is no needle alone (of a pair's), if there is one.
            let rare = (0..=255u8).find(|&byte| {
                rare_bytes.find([byte; 64]).is_some() && !needles.walk(0, &[byte; 64])
            });
            for filler in std::iter::once(b'o').chain(rare) {
                for (before, after) in [(1, 40), (20, 20), (40, 1), (200, 200)] {
                    crate::every_string(alphabet, 0..=3, |middle| {
                        let value =
                            [vec![filler; before], middle.to_vec(), vec![filler; after]].concat();
                        assert_eq!(
                            needles.in_value(&value),
                            needles.walk(0, &value),
                            "{pattern} on {:?}",
                            String::from_utf8_lossy(&value)
                        );
                        searched += 1;
                    });
                }
            }
        }
        // (Four of the five search: the first needs `ls` or `ca`, whose rarer bytes are
        // common.)
        assert!(searched > 100_000, "{searched}");
    }

    #[test]
    fn the_rarest_part_is_needed_and_common_needles_are_not_looked_for() {
        let of = |pattern: &str| Needles::of(&[pattern], &syntax());
        // A separator, not a command's letters.
        let separated = of(r"(?:^|[;&|])\s*(?:ls|cat|whoami)\b").expect("needles");
        assert!(!separated.in_value(b"a lovely coat, warm and light"));
        assert!(separated.in_value(b"x; ls"));
        // Pairs of a word, in either case, without their neighbours.
        let word = of(r"(?i)\bunion\s+select").expect("needles");
        assert!(word.in_value(b"UNION SELECT"));
        assert!(word.in_value(b"union select"));
        assert!(!word.in_value(b"a coat"));
        // Anchored: no needle at all.
        assert!(!of(r"^\s*\(\s*\)\s*\{").expect("needles").in_value(b"() {"));
        // Nothing needed, or needles in most text.
        assert!(of(r"\w+").is_none());
        assert!(of(r"x|\s").is_none());
        assert!(of(r"e").is_none());
    }
}
