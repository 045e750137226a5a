//! The search of a merged set of expressions (see `statement::Merged`): every expression
//! that matches a value, in one walk of one lazy DFA, and, for a value that DFA gives up
//! on, in a walk of each of a few smaller sets.
//!
//! A lazy DFA builds the states a text leads it to and keeps them in a cache. Ordinary
//! text leads the sets of the default ACL through a few hundred states, which each value
//! then reuses: a 2 KiB review of plain words is walked in about 3 µs. Text that mixes
//! punctuation at random leads a set of many expressions to a new state at nearly every
//! byte (the states are the combinations of how far each expression has got): its cache
//! fills, is cleared, fills again, and the regex engine's own `meta::Regex` then gives the
//! search up to its NFA simulation. With the default ACL's set of 68 expressions, walking
//! 2 KiB of random printable bytes took 20 to 30 ms that way; in sets of four
//! expressions, whose DFAs have few states each, seventeen walks took 0.45 ms. So a
//! search that the whole set's DFA gives up on is made again in parts; a search of
//! ordinary text costs what it did. (`examples/evaluate.rs`, 2026-11-27: a different
//! 2 KiB form of random printable bytes each time, 22.8 ms per evaluation before, 0.68 ms
//! since; the benchmark's form 18 µs both times.)
//!
//! The DFA gives up when its cache is full and it walked fewer than
//! [`MIN_BYTES_PER_STATE`] bytes per state it built since the cache was last cleared (the
//! regex engine's own rule for its lazy DFAs, with more bytes per state). It then keeps
//! its cache as it is, so that the next search of such text gives up at its first new
//! state rather than after filling the cache again; after [`GIVE_UPS_BEFORE_RESET`] of
//! those, the cache is emptied, so that the states ordinary text needs are built again
//! once an attack is over.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::pool::Pool;
use regex_automata::{Input, MatchKind, PatternID, PatternSet};

/// The most expressions of a part.
const PART: usize = 4;

/// The cache a lazy DFA of a whole set may fill before it is cleared (there is one cache
/// per thread searching at once: a thread takes its own, or one kept for others): twice
/// the regex engine's default, for the states of a shop's varied text (reviews of
/// thousands of different words settled in about 1 MiB for the default ACL's largest
/// set).
const CACHE_CAPACITY: usize = 4 << 20;

/// Below this many bytes walked per state built, a search that had to clear its cache
/// gives up (see the module's documentation).
const MIN_BYTES_PER_STATE: usize = 100;

/// How many searches a cache's DFA gives up before the cache is emptied.
const GIVE_UPS_BEFORE_RESET: u32 = 256;

/// A lazy DFA cache, and how many searches gave up since it was emptied.
struct Lazy {
    cache: Cache,
    gave_up: u32,
}

/// What makes each thread's cache of a pool (`regex_automata::util::pool::Pool`), as the
/// regex engine keeps its own.
pub(crate) type NewCache<T> =
    Box<dyn Fn() -> T + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// A merged set's search (see the module's documentation).
pub(crate) struct SetSearch {
    whole: DFA,
    caches: Pool<Lazy, NewCache<Lazy>>,
    /// The same expressions, [`PART`] at a time, each part with the number of its first
    /// expression in the whole.
    parts: Vec<(regex_automata::meta::Regex, usize)>,
    patterns: usize,
}

impl std::fmt::Debug for SetSearch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SetSearch")
            .field("patterns", &self.patterns)
            .field("parts", &self.parts.len())
            .finish_non_exhaustive()
    }
}

impl SetSearch {
    /// The search of `patterns`, read with `syntax`, each compiled within `size_limit`;
    /// `None` when one of them does not compile so.
    pub(crate) fn new<P: AsRef<str>>(
        patterns: &[P],
        syntax: regex_automata::util::syntax::Config,
        size_limit: usize,
    ) -> Option<Self> {
        let thompson = regex_automata::nfa::thompson::Config::new()
            .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
            .utf8(false)
            .nfa_size_limit(Some(size_limit));
        let whole = DFA::builder()
            .syntax(syntax)
            .thompson(thompson)
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(CACHE_CAPACITY)
                    .minimum_cache_clear_count(Some(0))
                    .minimum_bytes_per_state(Some(MIN_BYTES_PER_STATE)),
            )
            .build_many(patterns)
            .ok()?;
        let parts = patterns
            .chunks(PART)
            .enumerate()
            .map(|(at, part)| {
                regex_automata::meta::Regex::builder()
                    .syntax(syntax)
                    .configure(
                        regex_automata::meta::Regex::config()
                            .match_kind(MatchKind::All)
                            .utf8_empty(false)
                            .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
                            .nfa_size_limit(Some(size_limit)),
                    )
                    .build_many(part)
                    .ok()
                    .map(|part| (part, at * PART))
            })
            .collect::<Option<Vec<_>>>()?;
        let for_caches = whole.clone();
        let caches: Pool<Lazy, NewCache<Lazy>> = Pool::new(Box::new(move || Lazy {
            cache: for_caches.create_cache(),
            gave_up: 0,
        }) as NewCache<Lazy>);
        Some(Self {
            whole,
            caches,
            parts,
            patterns: patterns.len(),
        })
    }

    /// How many expressions the set holds.
    pub(crate) fn pattern_len(&self) -> usize {
        self.patterns
    }

    /// Adds to `found` (of at least [`SetSearch::pattern_len`]) each expression that
    /// matches in `input`; whether any does. Most values match none, which a search that
    /// stops at the first match tells before the search for every match.
    pub(crate) fn search(&self, input: &Input<'_>, found: &mut PatternSet) -> bool {
        let mut lazy = self.caches.get();
        let first = input.clone().earliest(true);
        match self.whole.try_search_fwd(&mut lazy.cache, &first) {
            Ok(None) => return false,
            Ok(Some(_)) => {
                if self
                    .whole
                    .try_which_overlapping_matches(&mut lazy.cache, input, found)
                    .is_ok()
                {
                    return true;
                }
            }
            // Given up: see the module's documentation.
            Err(_) => {}
        }
        lazy.gave_up += 1;
        if lazy.gave_up == GIVE_UPS_BEFORE_RESET {
            lazy.cache.reset(&self.whole);
            lazy.gave_up = 0;
        }
        drop(lazy);
        self.search_parts(input, found)
    }

    /// [`SetSearch::search`], part by part.
    fn search_parts(&self, input: &Input<'_>, found: &mut PatternSet) -> bool {
        let mut matched = false;
        let mut each = PatternSet::new(PART);
        for (part, first) in &self.parts {
            if !part.is_match(input.clone()) {
                continue;
            }
            matched = true;
            each.clear();
            part.which_overlapping_matches(input, &mut each);
            for pattern in each.iter() {
                found.insert(PatternID::new_unchecked(first + pattern.as_usize()));
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax() -> regex_automata::util::syntax::Config {
        crate::statement::merged_syntax()
    }

    fn found(search: &SetSearch, text: &[u8]) -> Vec<usize> {
        let mut found = PatternSet::new(search.pattern_len());
        search.search(&Input::new(text), &mut found);
        found.iter().map(|pattern| pattern.as_usize()).collect()
    }

    #[test]
    fn the_parts_find_what_the_whole_finds() {
        let patterns = [
            r"(?i)\bunion\b\s+select\b",
            r"<script",
            r"\bon[a-z]+\s*=",
            r"'\s*or\s*'",
            r"\.\./",
            r"(?i)etc/passwd",
            r"\$\{jndi:",
            r";\s*(?:cat|ls)\b",
            r"[\r\n]",
        ];
        let search = SetSearch::new(&patterns, syntax(), 1 << 20).expect("built");
        assert_eq!(search.parts.len(), 3);
        let texts: [&[u8]; 5] = [
            b"a plain review of a warm coat",
            b"1 UNION select 2; cat x",
            b"<script onload = x>../etc/passwd",
            b"x' or 'y ${jndi:ldap}\n",
            b"",
        ];
        for text in texts {
            let mut whole = PatternSet::new(search.pattern_len());
            search.search(&Input::new(text), &mut whole);
            let mut parts = PatternSet::new(search.pattern_len());
            search.search_parts(&Input::new(text), &mut parts);
            assert_eq!(
                whole.iter().collect::<Vec<_>>(),
                parts.iter().collect::<Vec<_>>(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(found(&search, b"1 UNION select 2; cat x"), [0, 7]);
        assert_eq!(found(&search, b"a plain review"), Vec::<usize>::new());
    }

    /// Letters at random, from `seed`.
    fn letters(seed: u64, length: usize) -> Vec<u8> {
        let mut seed = seed;
        (0..length)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"abcdefghijklmnopqrstuvwxyz"[(seed >> 33) as usize % 26]
            })
            .collect()
    }

    /// Expressions that each follow a count of their own: their states multiply. Each
    /// ends with `end`.
    fn counting(end: Option<char>) -> Vec<String> {
        (b'a'..=b'h')
            .map(|letter| {
                let letter = char::from(letter);
                format!("{letter}[^;]{{0,60}}{}", end.unwrap_or(letter))
            })
            .collect()
    }

    /// After an attack, the whole set's DFA gives up at once on what needs a new state
    /// (its cache is full), until enough searches gave up: then its cache is emptied, and
    /// ordinary text is walked by it again.
    #[test]
    fn the_cache_is_emptied_after_enough_give_ups() {
        // Nothing matches: every search walks its whole text.
        let search = SetSearch::new(&counting(Some('#')), syntax(), 8 << 20).expect("built");
        let mut found = PatternSet::new(search.pattern_len());
        search.search(&Input::new(&letters(7, 100_000)[..]), &mut found);
        {
            let lazy = search.caches.get();
            assert_eq!(lazy.gave_up, 1);
            assert!(lazy.cache.memory_usage() > CACHE_CAPACITY / 2);
        }
        for seed in 1..u64::from(GIVE_UPS_BEFORE_RESET) {
            let gave_up = search.caches.get().gave_up;
            assert_eq!(gave_up, seed as u32, "each search of new text gives up");
            search.search(&Input::new(&letters(1000 + seed, 40)[..]), &mut found);
        }
        let mut lazy = search.caches.get();
        assert_eq!(lazy.gave_up, 0);
        assert!(lazy.cache.memory_usage() < CACHE_CAPACITY / 2);
        assert!(
            search
                .whole
                .try_search_fwd(&mut lazy.cache, &Input::new("a plain review"))
                .is_ok()
        );
    }

    /// Text that makes a new state of nearly every byte: the whole set's DFA gives up on
    /// it, and the parts find its matches all the same.
    #[test]
    fn text_the_whole_gives_up_on_is_searched_in_parts() {
        let search = SetSearch::new(&counting(None), syntax(), 8 << 20).expect("built");
        let text = letters(7, 100_000);
        let mut cache = search.whole.create_cache();
        let input = Input::new(&text[..]);
        assert!(
            search.whole.try_search_fwd(&mut cache, &input).is_err(),
            "the whole set's DFA does not give up on this text"
        );
        // Every expression matches (each letter comes back within 60 bytes).
        assert_eq!(found(&search, &text), (0..8).collect::<Vec<_>>());
    }
}
