//! Statements: what a rule matches (AWS WAF's match statements, nested with AND, OR and
//! NOT). A statement that matches says where, for the log.

use std::collections::HashMap;

use ipnet::IpNet;

use crate::inspect::{Field, Inspection, MAX_MEMO_CHAIN, Transformed, chain_key};
use crate::transform::Transform;

/// Where a byte match looks for its string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The whole value.
    Exactly,
    /// Its start.
    StartsWith,
    /// Its end.
    EndsWith,
    /// Anywhere.
    Contains,
    /// Anywhere, between non-word characters (or the ends).
    ContainsWord,
}

/// A size comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// At most.
    Le,
    /// More than.
    Gt,
    /// At least.
    Ge,
}

/// A match statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// A string in a field, after transformations.
    ByteMatch {
        /// Where.
        field: Field,
        /// How.
        position: Position,
        /// What (compared after the same transformations: write it as they leave it).
        search: Vec<u8>,
        /// Applied to the field first.
        transforms: Vec<Transform>,
    },
    /// A regular expression (linear time: the `regex` crate).
    Regex {
        /// Where.
        field: Field,
        /// The expression.
        regex: regex::bytes::Regex,
        /// Applied to the field first.
        transforms: Vec<Transform>,
        /// Where the web ACL holding the statement merged its expression (set by the
        /// ACL; [`Statement::regex`] leaves it empty).
        place: MergedPlace,
    },
    /// A field's size.
    Size {
        /// Where.
        field: Field,
        /// How it compares.
        comparison: Comparison,
        /// With what, in bytes.
        size: usize,
    },
    /// SQL injection (libinjection's tokenizer and fingerprints, through `libinjectionrs`).
    Sqli {
        /// Where.
        field: Field,
        /// Applied to the field first.
        transforms: Vec<Transform>,
    },
    /// Cross-site scripting (libinjection's HTML5 tokenizer, through `libinjectionrs`).
    Xss {
        /// Where.
        field: Field,
        /// Applied to the field first.
        transforms: Vec<Transform>,
    },
    /// The client's address in a set of networks.
    IpSet(Vec<IpNet>),
    /// The client's country (offline registry data, from `iptocc`) in a list.
    Geo(Vec<String>),
    /// A label an earlier rule added.
    Label(String),
    /// The `Referer` names another site than the request's `Host`: its host does not end
    /// with the Host's name (a request without either never matches).
    ForeignReferer,
    /// A key's requests past a limit over a trailing window (what is counted: the
    /// requests the scope-down statement matches, or all).
    RateBased {
        /// The limit, window, keys and counts (shared by the statement's clones).
        rate: std::sync::Arc<crate::rate::RateLimit>,
        /// What is counted.
        scope_down: Option<Box<Statement>>,
    },
    /// Every statement matches.
    And(Vec<Statement>),
    /// Any statement matches.
    Or(Vec<Statement>),
    /// The statement does not match.
    Not(Box<Statement>),
}

/// Where a statement matched: the field and a short excerpt of what matched there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The field.
    pub field: String,
    /// The start of the matched value, at most 64 bytes, as text.
    pub data: String,
}

impl Evidence {
    fn new(field: &Field, value: &[u8]) -> Self {
        Self {
            field: field.name(),
            data: String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned(),
        }
    }
}

impl Statement {
    /// A regular expression statement; `pattern` is matched on bytes (`\s`, `\w` and `(?i)`
    /// are ASCII's, and any byte may match), in linear time. The error says what is wrong
    /// with the pattern.
    pub fn regex(field: Field, pattern: &str, transforms: &[Transform]) -> Result<Self, String> {
        let regex = regex::bytes::RegexBuilder::new(pattern)
            .unicode(false)
            // A pattern's compiled size is bounded, so that no file can ask for gigabytes.
            .size_limit(1 << 20)
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Statement::Regex {
            field,
            regex,
            transforms: transforms.to_vec(),
            place: MergedPlace::default(),
        })
    }

    /// Whether the statement matches the request (with the labels added so far), and
    /// where.
    pub fn evaluate(&self, inspection: &Inspection<'_>, labels: &[String]) -> Option<Evidence> {
        self.evaluate_merged(inspection, labels, None)
    }

    /// [`Statement::evaluate`], with what one evaluation of the ACL that holds the
    /// statement knows of its merged expressions (the ACL's merge has every regular
    /// expression statement of this one).
    pub(crate) fn evaluate_merged(
        &self,
        inspection: &Inspection<'_>,
        labels: &[String],
        merged: Option<&Scan<'_>>,
    ) -> Option<Evidence> {
        match self {
            Statement::ByteMatch {
                field,
                position,
                search,
                transforms,
            } => find(inspection, field, transforms, |value| {
                matches_position(value, search, *position)
            }),
            Statement::Regex {
                field,
                regex,
                transforms,
                place,
            } => {
                // Most requests match none of an ACL's expressions, which one scan per
                // value and chain of transformations tells; a statement runs its own
                // expression only where its chain's scan found something.
                if merged.is_some_and(|merged| !merged.could_match(inspection, place)) {
                    return None;
                }
                find(inspection, field, transforms, |value| regex.is_match(value))
            }
            Statement::Size {
                field,
                comparison,
                size,
            } => {
                let actual = inspection.size(field);
                let holds = match comparison {
                    Comparison::Eq => actual == *size,
                    Comparison::Ne => actual != *size,
                    Comparison::Lt => actual < *size,
                    Comparison::Le => actual <= *size,
                    Comparison::Gt => actual > *size,
                    Comparison::Ge => actual >= *size,
                };
                holds.then(|| Evidence {
                    field: field.name(),
                    data: format!("{actual} bytes"),
                })
            }
            Statement::Sqli { field, transforms } => {
                find_transformed(inspection, field, transforms, |value| {
                    value.len() > 1
                        && could_be_sqli(value)
                        && inspection.detected(value, 0, |value| {
                            libinjectionrs::detect_sqli(value).is_injection()
                        })
                })
            }
            Statement::Xss { field, transforms } => {
                find_transformed(inspection, field, transforms, |value| {
                    value.len() > 2
                        && could_be_xss(value)
                        && inspection.detected(value, 1, |value| {
                            libinjectionrs::detect_xss(value).is_injection()
                        })
                })
            }
            Statement::IpSet(networks) => networks
                .iter()
                .any(|network| network.contains(&inspection.client))
                .then(|| Evidence {
                    field: "client".to_owned(),
                    data: inspection.client.to_string(),
                }),
            Statement::Geo(countries) => {
                let country = iptocc::country_code(inspection.client)?;
                countries
                    .iter()
                    .any(|wanted| wanted.eq_ignore_ascii_case(country))
                    .then(|| Evidence {
                        field: "client_country".to_owned(),
                        data: country.to_owned(),
                    })
            }
            Statement::Label(label) => {
                labels.iter().any(|added| added == label).then(|| Evidence {
                    field: "label".to_owned(),
                    data: label.clone(),
                })
            }
            Statement::ForeignReferer => {
                let header = |name: http::header::HeaderName| {
                    inspection
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                };
                let host = header(http::header::HOST)?;
                let host = host.rsplit_once(':').map_or(host, |(name, port)| {
                    if port.bytes().all(|byte| byte.is_ascii_digit()) {
                        name
                    } else {
                        host
                    }
                });
                let referer = header(http::header::REFERER)?;
                let after_scheme = referer.split_once("://")?.1;
                let authority = after_scheme.split(['/', '?', '#']).next()?;
                let authority = authority.rsplit_once('@').map_or(authority, |(_, at)| at);
                let referer_host = authority
                    .rsplit_once(':')
                    .filter(|(_, port)| port.bytes().all(|byte| byte.is_ascii_digit()))
                    .map_or(authority, |(name, _)| name);
                (!referer_host
                    .to_ascii_lowercase()
                    .ends_with(&host.to_ascii_lowercase()))
                .then(|| Evidence {
                    field: "header:referer".to_owned(),
                    data: referer_host.chars().take(64).collect(),
                })
            }
            Statement::RateBased { rate, scope_down } => {
                if let Some(scope_down) = scope_down {
                    scope_down.evaluate_merged(inspection, labels, merged)?;
                }
                let (over, key) = rate.hit(inspection)?;
                over.then(|| Evidence {
                    field: "rate".to_owned(),
                    data: format!("{key} past {} in {} s", rate.limit, rate.window.as_secs()),
                })
            }
            Statement::And(statements) => {
                let mut last = None;
                for statement in statements {
                    last = Some(statement.evaluate_merged(inspection, labels, merged)?);
                }
                last
            }
            Statement::Or(statements) => statements
                .iter()
                .find_map(|statement| statement.evaluate_merged(inspection, labels, merged)),
            Statement::Not(statement) => {
                match statement.evaluate_merged(inspection, labels, merged) {
                    Some(_) => None,
                    None => Some(Evidence {
                        field: "not".to_owned(),
                        data: String::new(),
                    }),
                }
            }
        }
    }
}

/// Whether libinjection's XSS detector could flag `value` at all: it flags a tag, a
/// comment or a doctype (each opened by `<`), or an attribute's value (after `=`), in any
/// of the five contexts it tries (`libinjection_is_xss`), so a value with neither byte is
/// skipped. Most ordinary text has neither, and the detector tokenizes every word of it
/// as an attribute name in the attribute contexts.
fn could_be_xss(value: &[u8]) -> bool {
    memchr::memchr2(b'<', b'=', value).is_some()
}

/// Whether libinjection's SQL injection detector could flag `value` at all. It cannot
/// flag:
/// - a number (only digits) or a single word (a letter, then letters, digits and `_`):
///   one token to its tokenizer, in the one context it tries without quotes, with no
///   comment to make it parse again as MySQL; its fingerprint is that token's type, and
///   no token alone is an injection (the test checks every word of libinjection's keyword
///   table, a word of each type, bare words and numbers);
/// - words and numbers separated by spaces, none of the words one libinjection knows
///   (nor a part of a phrase it knows, such as `GROUP BY`): each is a bare word or a
///   number, whatever its text, and no sequence of those is an injection (the test checks
///   every sequence of up to 8).
///
/// Most argument names and many values (search terms, names, categories, sort orders)
/// are such, and the detector (its keyword look-ups) is most of a benign request's WAF
/// time. The claims hold for the tokenizer and table of the `libinjectionrs` in the lock
/// file, which the tests check: an update must pass them again.
fn could_be_sqli(value: &[u8]) -> bool {
    let Some((first, rest)) = value.split_first() else {
        return false;
    };
    let number = |word: &[u8]| word.iter().all(u8::is_ascii_digit);
    let word = |first: &u8, rest: &[u8]| {
        first.is_ascii_alphabetic()
            && rest
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
    };
    if number(value) || word(first, rest) {
        return false;
    }
    let bare = |text: &[u8]| {
        text.is_empty()
            || number(text)
            || text.split_first().is_some_and(|(first, rest)| {
                word(first, rest) && text.len() < SQL_WORD_LIMIT && !sql_word(text)
            })
    };
    !value.split(|byte| *byte == b' ').all(bare)
}

/// Words this long are bare words to libinjection, looked up in no table; the prefilter
/// leaves them to it.
const SQL_WORD_LIMIT: usize = 32;

/// Whether libinjection's keyword table has `word` (any case), alone or as a part of a
/// phrase.
fn sql_word(word: &[u8]) -> bool {
    type Words = std::collections::HashSet<&'static [u8], foldhash::fast::RandomState>;
    static WORDS: std::sync::OnceLock<Words> = std::sync::OnceLock::new();
    let words = WORDS.get_or_init(|| {
        libinjectionrs::sqli::sqli_data::SQL_KEYWORDS
            .iter()
            .flat_map(|keyword| keyword.word.split(' '))
            .map(str::as_bytes)
            .collect()
    });
    let mut upper = [0u8; SQL_WORD_LIMIT];
    let Some(upper) = upper.get_mut(..word.len()) else {
        return true;
    };
    upper.copy_from_slice(word);
    upper.make_ascii_uppercase();
    words.contains(&*upper)
}

/// The first value of `field` that `test` accepts after the transformations.
fn find(
    inspection: &Inspection<'_>,
    field: &Field,
    transforms: &[Transform],
    mut test: impl FnMut(&[u8]) -> bool,
) -> Option<Evidence> {
    find_transformed(inspection, field, transforms, |value| test(value))
}

/// [`find`], with the transformed value as the memo holds it.
fn find_transformed(
    inspection: &Inspection<'_>,
    field: &Field,
    transforms: &[Transform],
    mut test: impl FnMut(&Transformed<'_>) -> bool,
) -> Option<Evidence> {
    let mut evidence = None;
    inspection.any_value(field, |value| {
        let transformed = inspection.transformed(value, transforms);
        if test(&transformed) {
            evidence = Some(Evidence::new(field, &transformed));
            true
        } else {
            false
        }
    });
    evidence
}

/// Where an ACL merged a regular expression statement: the merge (its number), the
/// chain's set and the expression's index in it.
#[derive(Debug, Clone, Default)]
pub struct MergedPlace(Option<(u64, u32, u32)>);

/// The numbers of merges, so that a statement placed by one is never read by another.
static MERGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The regular expressions of an ACL's statements, merged by chain of transformations
/// into one set each, with the fields the chain's statements read: one scan of each of
/// those values after the chain tells which of the expressions match any of them (see
/// [`Scan`]). Each merged statement holds its place (its chain and index), set by the
/// ACL, so that an evaluation finds it without a look-up. A chain of one expression is
/// merged too: the set of all shares its scan of the values the chain leaves as they
/// are. (A chain longer than the memo tells apart is not merged; neither is a set the
/// engine would not build within its limits: its statements scan by themselves, as
/// without a merge.)
#[derive(Debug, Default)]
pub(crate) struct Merged {
    chains: Vec<MergedChain>,
    /// This merge's number (0: none), which the statements' places name.
    id: u64,
    /// How many statements it placed.
    placed: usize,
    /// The chains whose set the engine would not build (their statements scan alone).
    unbuilt: usize,
    /// Every chain's expressions in one set: a value that a chain leaves as it is (most
    /// values, for most chains) is scanned once for all of them.
    all: Option<regex_automata::meta::Regex>,
}

#[derive(Debug)]
struct MergedChain {
    transforms: Vec<Transform>,
    fields: Vec<Field>,
    set: regex_automata::meta::Regex,
    /// Each of the set's expressions' index in [`Merged::all`].
    in_all: Vec<usize>,
}

/// A merged set: on bytes, ASCII classes, every pattern that matches reported (as
/// `regex::bytes::RegexSet` builds its sets), within [`MERGED_SIZE_LIMIT`].
fn merged_set<P: AsRef<str>>(patterns: &[P]) -> Option<regex_automata::meta::Regex> {
    regex_automata::meta::Regex::builder()
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(false)
                .utf8(false),
        )
        .configure(
            regex_automata::meta::Regex::config()
                .match_kind(regex_automata::MatchKind::All)
                .utf8_empty(false)
                .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
                .nfa_size_limit(Some(MERGED_SIZE_LIMIT)),
        )
        .build_many(patterns)
        .ok()
}

impl Merged {
    /// The merged sets of every regular expression statement in `statements`, whose
    /// places it sets (and clears, for a statement it does not merge).
    pub(crate) fn new(statements: &mut [&mut Statement]) -> Self {
        struct Gathered {
            transforms: Vec<Transform>,
            fields: Vec<Field>,
            patterns: Vec<String>,
        }
        let mut gathered: HashMap<u64, Gathered> = HashMap::new();
        for statement in statements.iter_mut() {
            each_regex(statement, &mut |field, regex, transforms, _| {
                if transforms.len() > MAX_MEMO_CHAIN {
                    return;
                }
                let chain = gathered
                    .entry(chain_key(transforms))
                    .or_insert_with(|| Gathered {
                        transforms: transforms.to_vec(),
                        fields: Vec::new(),
                        patterns: Vec::new(),
                    });
                if !chain.fields.contains(field) {
                    chain.fields.push(field.clone());
                }
                if !chain.patterns.iter().any(|known| known == regex.as_str()) {
                    chain.patterns.push(regex.as_str().to_owned());
                }
            });
        }
        let mut merged = Self {
            id: MERGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ..Self::default()
        };
        let mut index_of: HashMap<u64, usize> = HashMap::new();
        let mut chain_patterns: Vec<Vec<String>> = Vec::new();
        let mut all: Vec<String> = Vec::new();
        for (key, chain) in gathered {
            let Some(set) = merged_set(&chain.patterns) else {
                merged.unbuilt += 1;
                continue;
            };
            index_of.insert(key, merged.chains.len());
            let in_all = chain
                .patterns
                .iter()
                .map(|pattern| {
                    all.iter()
                        .position(|known| known == pattern)
                        .unwrap_or_else(|| {
                            all.push(pattern.clone());
                            all.len() - 1
                        })
                })
                .collect();
            merged.chains.push(MergedChain {
                transforms: chain.transforms,
                fields: chain.fields,
                set,
                in_all,
            });
            chain_patterns.push(chain.patterns);
        }
        if merged.chains.len() > 1 {
            merged.all = merged_set(&all);
            if merged.all.is_none() {
                merged.unbuilt += 1;
            }
        }
        let id = merged.id;
        let mut placed = 0;
        for statement in statements.iter_mut() {
            each_regex(statement, &mut |_, regex, transforms, place| {
                *place = MergedPlace(None);
                if transforms.len() > MAX_MEMO_CHAIN {
                    return;
                }
                let Some(&index) = index_of.get(&chain_key(transforms)) else {
                    return;
                };
                let Some(pattern) = chain_patterns[index]
                    .iter()
                    .position(|known| known == regex.as_str())
                else {
                    return;
                };
                *place = MergedPlace(Some((id, index as u32, pattern as u32)));
                placed += 1;
            });
        }
        merged.placed = placed;
        merged
    }

    /// How many statements are merged into how many sets, and how many sets could not be
    /// built (a chain's, or the one of all of them; for tests).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.placed, self.chains.len(), self.unbuilt)
    }
}

/// The compiled size a merged set may take (each expression alone may take 1 MiB). Its
/// lazy DFA's cache keeps the engine's default (2 MiB per set and thread at most).
const MERGED_SIZE_LIMIT: usize = 16 << 20;

/// What one evaluation knows of an ACL's merged expressions: for each chain, once a
/// statement asked, which of its expressions match some value of its fields.
#[derive(Debug)]
pub(crate) struct Scan<'m> {
    merged: &'m Merged,
    found: Vec<std::cell::OnceCell<regex_automata::PatternSet>>,
    /// Which of all the chains' expressions match a value as it is (`None`: none), by
    /// the value's address and length (one of the request's own values).
    as_is: std::cell::RefCell<
        HashMap<(usize, usize), Option<regex_automata::PatternSet>, foldhash::fast::RandomState>,
    >,
}

impl<'m> Scan<'m> {
    pub(crate) fn new(merged: &'m Merged) -> Self {
        Self {
            merged,
            found: (0..merged.chains.len())
                .map(|_| std::cell::OnceCell::new())
                .collect(),
            as_is: std::cell::RefCell::default(),
        }
    }

    /// Adds to `found` what `set` finds in `value`.
    fn scan(
        set: &regex_automata::meta::Regex,
        value: &[u8],
        found: &mut regex_automata::PatternSet,
    ) {
        // Most values match none: finding that out stops at nothing, and is cheaper than
        // the search for every match.
        let input = regex_automata::Input::new(value);
        if set.is_match(input.clone()) {
            set.which_overlapping_matches(&input, found);
        }
    }

    /// Whether a statement's regular expression, reading through `transforms`, could
    /// match the request: not when it is merged and its chain's scan did not find it.
    fn could_match(&self, inspection: &Inspection<'_>, place: &MergedPlace) -> bool {
        let Some((id, index, pattern)) = place.0 else {
            return true;
        };
        // A statement placed by another merge (taken from another ACL) scans alone.
        if id != self.merged.id {
            return true;
        }
        let (index, pattern) = (index as usize, pattern as usize);
        let chain = &self.merged.chains[index];
        let found = self.found[index].get_or_init(|| {
            let mut found = regex_automata::PatternSet::new(chain.set.pattern_len());
            for field in &chain.fields {
                inspection.any_value(field, |value| {
                    match (
                        inspection.transformed(value, &chain.transforms),
                        &self.merged.all,
                    ) {
                        (Transformed::Same(_), Some(all)) => {
                            let mut as_is = self.as_is.borrow_mut();
                            let matches = as_is
                                .entry((value.as_ptr() as usize, value.len()))
                                .or_insert_with(|| {
                                    let input = regex_automata::Input::new(value);
                                    all.is_match(input.clone()).then(|| {
                                        let mut matches =
                                            regex_automata::PatternSet::new(all.pattern_len());
                                        all.which_overlapping_matches(&input, &mut matches);
                                        matches
                                    })
                                });
                            if let Some(matches) = matches {
                                for (local, &global) in chain.in_all.iter().enumerate() {
                                    if matches
                                        .contains(regex_automata::PatternID::new_unchecked(global))
                                    {
                                        found.insert(regex_automata::PatternID::new_unchecked(
                                            local,
                                        ));
                                    }
                                }
                            }
                        }
                        (transformed, _) => Self::scan(&chain.set, &transformed, &mut found),
                    }
                    found.is_full()
                });
            }
            found
        });
        found.contains(regex_automata::PatternID::new_unchecked(pattern))
    }
}

/// Calls `each` with every regular expression statement in `statement` (through NOT,
/// AND, OR and rate-based scope-downs): its field, expression, transformations and place.
fn each_regex(
    statement: &mut Statement,
    each: &mut impl FnMut(&Field, &regex::bytes::Regex, &[Transform], &mut MergedPlace),
) {
    match statement {
        Statement::Regex {
            field,
            regex,
            transforms,
            place,
        } => each(field, regex, transforms, place),
        Statement::RateBased {
            scope_down: Some(scope_down),
            ..
        } => each_regex(scope_down, each),
        Statement::Not(statement) => each_regex(statement, each),
        Statement::And(statements) | Statement::Or(statements) => {
            for statement in statements {
                each_regex(statement, each);
            }
        }
        _ => {}
    }
}

fn matches_position(value: &[u8], search: &[u8], position: Position) -> bool {
    match position {
        Position::Exactly => value == search,
        Position::StartsWith => value.starts_with(search),
        Position::EndsWith => value.ends_with(search),
        Position::Contains => !search.is_empty() && memchr::memmem::find(value, search).is_some(),
        Position::ContainsWord => {
            let word = |byte: Option<&u8>| {
                byte.is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
            };
            !search.is_empty()
                && memchr::memmem::find_iter(value, search).any(|at| {
                    !word(at.checked_sub(1).and_then(|before| value.get(before)))
                        && !word(value.get(at + search.len()))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Statement, could_be_sqli, could_be_xss};
    use crate::inspect::Inspection;

    #[test]
    fn a_referer_is_foreign_when_it_names_another_host() {
        let foreign = |host: Option<&str>, referer: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            if let Some(host) = host {
                headers.insert("host", host.parse().expect("value"));
            }
            if let Some(referer) = referer {
                headers.insert("referer", referer.parse().expect("value"));
            }
            let inspection = Inspection::new(
                "GET",
                "/",
                None,
                &headers,
                b"",
                false,
                "127.0.0.1".parse().expect("address"),
            );
            Statement::ForeignReferer
                .evaluate(&inspection, &[])
                .is_some()
        };
        let shop = Some("shop.example:8443");
        assert!(!foreign(shop, Some("https://shop.example/cart")));
        assert!(!foreign(shop, Some("https://www.shop.example:8443/?q=1")));
        assert!(foreign(shop, Some("https://shop.example.attacker.test/")));
        assert!(foreign(
            shop,
            Some("http://user@attacker.test/shop.example")
        ));
        assert!(
            !foreign(shop, None),
            "no Referer is another statement's business"
        );
        assert!(!foreign(None, Some("https://attacker.test/")));
    }

    #[test]
    fn the_sqli_detector_flags_no_single_word_or_number() {
        // Every word of the detector's keyword table (each keyword, function, operator,
        // type... it knows), in both cases: a single word is one token of that type.
        let mut words = 0;
        let mut types = std::collections::BTreeSet::new();
        for keyword in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            let word = keyword.word.as_bytes();
            if could_be_sqli(word) {
                continue;
            }
            words += 1;
            types.insert(char::from(keyword.token_type));
            for word in [word.to_vec(), word.to_ascii_lowercase()] {
                assert!(
                    !libinjectionrs::detect_sqli(&word).is_injection(),
                    "{}",
                    String::from_utf8_lossy(&word)
                );
            }
        }
        assert!(words > 500, "only {words} words of the table");
        let types: String = types.into_iter().collect();
        assert!(
            "&BEUfkotv".chars().all(|kind| types.contains(kind)),
            "the words are of the types {types}"
        );
        // Bare words and numbers of any length, and what the prefilter lets through.
        for value in [
            "women",
            "per_page",
            "x9_",
            "2",
            "24",
            "0123456789012345678901234567890123456789",
            "a_word_longer_than_the_thirty_two_bytes_of_a_token",
        ] {
            assert!(!could_be_sqli(value.as_bytes()), "{value}");
            assert!(!libinjectionrs::detect_sqli(value.as_bytes()).is_injection());
        }
        for value in [
            "1 or 1",
            "_union",
            "1e5",
            "0x1f",
            "a.b",
            "1'",
            "a-- ",
            "1union",
            "red or blue",
            "sort by price",
            "1  union select 2",
            "a\tb",
        ] {
            assert!(could_be_sqli(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn the_sqli_detector_flags_no_sequence_of_bare_words_and_numbers() {
        // Every sequence of up to 8 bare words (n) and numbers (1): the tokens a value of
        // words libinjection does not know, and of numbers, is made of.
        let words = [
            "red", "wool", "coat", "size", "ada", "brien", "x9", "per_page",
        ];
        let numbers = ["2", "10", "0", "2026"];
        let mut checked = 0;
        for length in 1..=8u32 {
            for kinds in 0..1u32 << length {
                let value: Vec<&str> = (0..length)
                    .map(|at| {
                        let pick = kinds as usize * 31 + at as usize * 7;
                        if kinds >> at & 1 == 1 {
                            numbers[pick % numbers.len()]
                        } else {
                            words[pick % words.len()]
                        }
                    })
                    .collect();
                for separator in [" ", "  "] {
                    let value = value.join(separator);
                    assert!(!could_be_sqli(value.as_bytes()), "{value}");
                    assert!(
                        !libinjectionrs::detect_sqli(value.as_bytes()).is_injection(),
                        "{value}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 2 * 510);
        // Words of the table, and parts of its phrases, are left to the detector.
        for value in ["red or blue", "group shoes", "shoes by size", "natural fit"] {
            assert!(could_be_sqli(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn the_xss_detector_flags_nothing_without_a_tag_or_an_attribute_value() {
        // Random strings of the characters XSS is made of: whatever the detector flags
        // has `<` or `=`, so skipping the others changes no verdict.
        let alphabet = b"<>=\"'` /!-?:;()&#[]abcdehijlmnoprstvxyz";
        let mut seed: u64 = 0x5eed;
        let mut flagged = 0;
        for _ in 0..50_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let length = (seed >> 59) as usize + 2;
            let value: Vec<u8> = (0..length)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            if libinjectionrs::detect_xss(&value).is_injection() {
                flagged += 1;
                assert!(could_be_xss(&value), "{}", String::from_utf8_lossy(&value));
            }
        }
        assert!(flagged > 100, "the sample flagged only {flagged}");
        for text in [
            "Lovely wool coat, warm and light (5/5!)",
            "javascript alert(1)",
            "onerror alert",
        ] {
            assert!(!could_be_xss(text.as_bytes()));
            assert!(!libinjectionrs::detect_xss(text.as_bytes()).is_injection());
        }
    }
}
