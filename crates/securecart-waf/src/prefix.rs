//! A long value that a chain of transformations changes is transformed whole (a copy),
//! then searched by the chain's set, which, when the copy holds none of the set's needles,
//! is a search from the copy's start only (see [`crate::needles`]). That search mostly
//! stops within a few bytes: the copy was made for nothing. A [`PrefixSearch`] tells the
//! same from the value as it is, without the copy, for a chain of transformations that
//! read left to right ([`Transform::prefix_margin`]):
//!
//! - whether the copy would hold a needle: every needle holds one of its rare bytes
//!   ([`Needles::rare`]), which the chain can only make of its sources in the value
//!   ([`Transform::sources`]), found with a SIMD search;
//! - whether a match starts at the copy's start: the chain is run on the value's first
//!   bytes, and the set's lazy DFA is stepped from its anchored start over what the chain
//!   makes of them (less the last bytes that the rest of the value could change). Where it
//!   dies there, nothing matches; where it matches, or is still alive at their end, the
//!   value takes the usual way.
//!
//! Shoppers' reviews, 1 to 2 KiB, hold a `'` or a capital, so the command-line chains
//! change them, and hold no `;`, `&` or `|`: this saves a copy and two passes of each.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind};

use crate::needles::{self, Needles};
use crate::setsearch::NewCache;
use crate::transform::{self, Transform};

/// How many of a value's first bytes the chain is run on.
const PREFIX: usize = 64;

/// A chain's set, searched from the start of a long value's transformation without it.
pub(crate) struct PrefixSearch {
    transforms: Vec<Transform>,
    /// Each transformation's [`Transform::prefix_margin`].
    margins: Vec<usize>,
    /// The bytes the chain could make a needle's rare byte of.
    sources: aho_corasick::packed::Searcher,
    /// The set, as a lazy DFA with anchored starts, and its caches (one per thread that
    /// searches at once, as the regex engine keeps its own).
    dfa: DFA,
    caches: Pool<Cache, NewCache<Cache>>,
}

impl std::fmt::Debug for PrefixSearch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PrefixSearch")
            .field("transforms", &self.transforms)
            .finish_non_exhaustive()
    }
}

impl PrefixSearch {
    /// The search for a chain's set of `patterns` (read with `syntax`), whose needles are
    /// `needles`; `None` when a transformation does not read left to right, the sources
    /// of the needles' rare bytes are common (or the processor lacks SIMD), or the DFA
    /// would not build.
    pub(crate) fn new<P: AsRef<str>>(
        patterns: &[P],
        syntax: regex_automata::util::syntax::Config,
        transforms: &[Transform],
        needles: &Needles,
    ) -> Option<Self> {
        let margins = transforms
            .iter()
            .map(|transform| transform.prefix_margin())
            .collect::<Option<Vec<usize>>>()?;
        let mut made = [false; 256];
        for &byte in needles.rare() {
            made[usize::from(byte)] = true;
        }
        // The last transformation makes the copy: its sources first.
        for transform in transforms.iter().rev() {
            made = transform.sources(&made)?;
        }
        let sources: Vec<u8> = (0..=255u8)
            .filter(|&byte| made[usize::from(byte)])
            .collect();
        let sources = needles::rare_bytes_search(&sources)?;
        let dfa = DFA::builder()
            .syntax(syntax)
            .thompson(
                regex_automata::nfa::thompson::Config::new()
                    .which_captures(regex_automata::nfa::thompson::WhichCaptures::None),
            )
            .configure(DFA::config().match_kind(MatchKind::All))
            .build_many(patterns)
            .ok()?;
        let for_caches = dfa.clone();
        let caches: Pool<Cache, NewCache<Cache>> =
            Pool::new(Box::new(move || for_caches.create_cache()) as NewCache<Cache>);
        Some(Self {
            transforms: transforms.to_vec(),
            margins,
            sources,
            dfa,
            caches,
        })
    }

    /// Whether no expression of the set matches `value` after the chain, told without
    /// transforming all of it; `false` also when that cannot be told so.
    pub(crate) fn rules_out(&self, value: &[u8]) -> bool {
        if value.len() <= PREFIX
            || value.len() < self.sources.minimum_len()
            || self.sources.find(value).is_some()
        {
            return false;
        }
        // What the chain makes of the first bytes, each step's last bytes that the rest
        // could change left out: a prefix of what it makes of the value.
        let mut made = value[..PREFIX].to_vec();
        for (&transform, &margin) in self.transforms.iter().zip(&self.margins) {
            // (A step that changes nothing leaves the bytes where they are.)
            if let std::borrow::Cow::Owned(changed) = transform::apply(&[transform], &made) {
                made = changed;
            }
            made.truncate(made.len().saturating_sub(margin));
        }
        self.dies_within(&made)
    }

    /// Whether the set's DFA, from its anchored start at the start of a value that
    /// begins with `start`, dies within it before any match (a match is seen one byte
    /// after it ends, so a match that ends inside `start` is seen before it dies).
    fn dies_within(&self, start: &[u8]) -> bool {
        let mut cache = self.caches.get();
        let input = Input::new(start).anchored(Anchored::Yes);
        let Ok(mut state) = self.dfa.start_state_forward(&mut cache, &input) else {
            return false;
        };
        for &byte in start {
            let Ok(next) = self.dfa.next_state(&mut cache, state, byte) else {
                return false;
            };
            state = next;
            if state.is_tagged() {
                if state.is_dead() {
                    return true;
                }
                if state.is_match() || state.is_quit() {
                    return false;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transform::*;

    /// As the merged sets read their expressions.
    use crate::statement::merged_syntax as syntax;

    /// Wherever the prefix search rules a value out, the chain's set finds nothing in the
    /// value's whole transformation; checked on long values made of pieces that hide or
    /// spell commands, escapes, separators and runs of space, at every place.
    #[test]
    fn what_the_prefix_search_rules_out_the_set_does_not_match() {
        let patterns = [
            r"(?i)(?:^|[;&|`\n\r])\s*(?:cmd(?:\.exe)?\s*/[ck]|powershell|net\s+user|[a-z]+\s*[/:])",
            r"(?i)(?:[;&|`\n\r]|\$\()\s*(?:ls|cat|wget|curl|bash|sh|nc|python|perl|chmod)\b|^\s*(?:nohup|sudo)\s+\w",
        ];
        let chains: [&[Transform]; 4] = [
            &[UrlDecodeUni, RemoveNulls, RemoveShellQuotes],
            &[UrlDecodeUni, CmdLine],
            &[CompressWhitespace, Lowercase],
            &[RemoveWhitespace],
        ];
        let pieces: [&[u8]; 16] = [
            b"Lovely wool coat, warm and light. ",
            b"I'm 1.60 m (",
            b"p'o'wer^shell -enc AA ",
            b"C\"M\"D /c dir ",
            b"net  user x ",
            b"no\\hup w",
            b"sudo ",
            b"%3b ls ",
            b"%u0020",
            b"+",
            b"%2",
            b" ",
            b"\t\t",
            b"$(cat x)",
            b"\0",
            b"NeT%20UsEr ",
        ];
        let set = regex_automata::meta::Regex::builder()
            .syntax(syntax())
            .configure(regex_automata::meta::Regex::config().match_kind(MatchKind::All))
            .build_many(&patterns)
            .expect("set");
        let filler = pieces[0].repeat(4);
        let (mut ruled_out, mut matched) = (0, 0);
        for transforms in chains {
            let needles = Needles::of(&patterns, &syntax()).expect("needles");
            let search =
                PrefixSearch::new(&patterns, syntax(), transforms, &needles).expect("search");
            crate::every_string(&(0..16).collect::<Vec<u8>>(), 0..=3, |picked| {
                for spaces in [0, 2, 60, 61, 62, 63, 70] {
                    let mut value = vec![b' '; spaces];
                    for &piece in picked {
                        value.extend_from_slice(pieces[usize::from(piece)]);
                    }
                    value.extend_from_slice(&filler);
                    let whole = transform::apply(transforms, &value);
                    let matches = set.is_match(&*whole);
                    if search.rules_out(&value) {
                        assert!(
                            !matches,
                            "{transforms:?} on {:?}",
                            String::from_utf8_lossy(&value)
                        );
                        ruled_out += 1;
                    }
                    matched += usize::from(matches);
                }
            });
        }
        // Both ways are taken often.
        assert!(
            ruled_out > 5_000 && matched > 5_000,
            "{ruled_out} {matched}"
        );
    }

    #[test]
    fn chains_that_do_not_read_left_to_right_have_no_prefix_search() {
        let patterns = [r"(?:^|[;&|])\s*(?:ls|cat|wget|curl|bash|sh|nc|python|perl|chmod)\b"];
        let needles = Needles::of(&patterns, &syntax()).expect("needles");
        assert!(PrefixSearch::new(&patterns, syntax(), &[HtmlEntityDecode], &needles).is_none());
        assert!(PrefixSearch::new(&patterns, syntax(), &[NormalizePath], &needles).is_none());
        assert!(PrefixSearch::new(&patterns, syntax(), &[CmdLine], &needles).is_some());
    }
}
