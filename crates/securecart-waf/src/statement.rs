//! Statements: what a rule matches (AWS WAF's match statements, nested with AND, OR and
//! NOT). A statement that matches says where, for the log.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::inspect::{Field, Inspection, MAX_MEMO_CHAIN, Transformed, chain_key};
use crate::needles::Needles;
use crate::prefix::PrefixSearch;
use crate::setsearch::SetSearch;
use crate::transform::{self, Traits, Transform};

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
    IpSet {
        /// The networks.
        networks: Vec<IpNet>,
        /// Where the address is read, if not from the connection.
        forwarded: Option<ForwardedIp>,
    },
    /// The client's country (offline registry data, from `iptocc`) in a list.
    Geo {
        /// Two-letter codes.
        countries: Vec<String>,
        /// Where the address is read, if not from the connection (its first address).
        forwarded: Option<ForwardedIp>,
    },
    /// A label an earlier rule added; a key that ends with `:` is a namespace, matching
    /// every label in it (AWS WAF's label match scopes `LABEL` and `NAMESPACE`).
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
    /// A statement over the body, the headers or the cookies that answers by itself for
    /// a request with more of them than the inspection reads (AWS WAF's oversize handling
    /// `MATCH` or `NO_MATCH`; `CONTINUE`, the statement alone, inspects what is read, as
    /// any statement does: see [`crate::inspect::Limited`]).
    OnOversize {
        /// Whether a request past the limit matches (`MATCH`) or not (`NO_MATCH`).
        matches: bool,
        /// The part whose limit it answers for: its statement's field's
        /// ([`Field::limited`]).
        limited: crate::inspect::Limited,
        /// The statement.
        statement: Box<Statement>,
    },
}

/// Where an IP set or geo match reads the client's address when the edge is behind
/// another proxy: a header such as `X-Forwarded-For` (AWS WAF's `ForwardedIPConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedIp {
    /// The header.
    pub header: http::HeaderName,
    /// Which of its addresses an IP set reads (a geo match reads the first).
    pub position: IpPosition,
    /// Whether a request whose header has no address where one is read matches (AWS
    /// WAF's fallback behaviour `MATCH`) or not. A request without the header never
    /// matches, as on AWS WAF, which then does not apply the statement.
    pub fallback_matches: bool,
}

/// Which addresses of a forwarded header an IP set reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPosition {
    /// The first (the client, as the first proxy saw it).
    First,
    /// The last (the address the proxy before the edge saw).
    Last,
    /// Any of the last ten.
    Any,
}

/// How many of a forwarded header's addresses `IpPosition::Any` reads (AWS WAF's limit).
const MAX_FORWARDED: usize = 10;

impl ForwardedIp {
    /// The address an IP set reads at its position, or with [`IpPosition::Any`] the
    /// first of the header's last [`MAX_FORWARDED`] entries that `wanted` accepts (its
    /// lines joined; an entry may carry a port; the last ones, which the proxies nearest
    /// the edge wrote, since a client may put anything before them). `Ok(None)` without
    /// the header: as on AWS WAF, the statement is then not applied at all. `Err`: no
    /// address where one is read, for the fallback to decide.
    fn address(
        &self,
        inspection: &Inspection<'_>,
        position: IpPosition,
        wanted: impl Fn(&IpAddr) -> bool,
    ) -> Result<Option<IpAddr>, ()> {
        let entries = forwarded_entries(inspection, &self.header);
        if entries.is_empty() {
            return Ok(None);
        }
        let read = match position {
            IpPosition::First => entries.first().copied().flatten(),
            IpPosition::Last => entries.last().copied().flatten(),
            IpPosition::Any => {
                let last = &entries[entries.len().saturating_sub(MAX_FORWARDED)..];
                let mut valid = last.iter().copied().flatten().peekable();
                valid.peek().ok_or(())?;
                return Ok(valid.find(|address| wanted(address)));
            }
        };
        read.map(Some).ok_or(())
    }

    /// What a request whose address cannot be read gets.
    fn fallback(&self, wanted: bool) -> Option<Evidence> {
        self.fallback_matches.then(|| {
            Evidence::if_wanted(wanted, || Evidence {
                field: "forwarded_ip".to_owned(),
                data: format!("no address in {}", self.header),
            })
        })
    }
}

/// The entries of a forwarded header (`X-Forwarded-For: client, proxy1, proxy2`), its
/// lines joined, each an address ([`forwarded_address`]) or not (`None`); none without
/// the header.
pub(crate) fn forwarded_entries(
    inspection: &Inspection<'_>,
    header: &http::HeaderName,
) -> Vec<Option<IpAddr>> {
    let mut entries = Vec::new();
    for line in inspection.headers().get_all(header) {
        let text = String::from_utf8_lossy(line.as_bytes());
        entries.extend(text.split(',').map(|entry| forwarded_address(entry.trim())));
    }
    entries
}

/// An address as a forwarded header gives it: `203.0.113.9`, `203.0.113.9:51234`,
/// `2001:db8::1` or `[2001:db8::1]:51234`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|at| at.ip()))
}

/// Whether a label match's key matches a label: the label itself, or, for a key ending
/// with `:`, any label in that namespace (`securecart:managed:sql-injection:` matches
/// `securecart:managed:sql-injection:SC-SQLI-001`).
pub fn label_matches(key: &str, label: &str) -> bool {
    if key.ends_with(':') {
        label.len() > key.len() && label.starts_with(key)
    } else {
        label == key
    }
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

    /// `made()` where the evidence is wanted; else an empty one, which allocates nothing
    /// (a statement within an AND but its last, within a NOT, or a rate-based statement's
    /// scope-down matches for nothing to show).
    fn if_wanted(wanted: bool, made: impl FnOnce() -> Self) -> Self {
        if wanted {
            made()
        } else {
            Self {
                field: String::new(),
                data: String::new(),
            }
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

    /// What must hold of the request for the statement to match, if it can be told
    /// cheaply: one of its merged expressions found, or a value its detector could flag
    /// at all. A rule whose gate stays shut need not be walked. An OR needs one of its
    /// statements' gates (so all must have one), an AND any one of its statements' (but
    /// none when it holds a rate-based statement, which must count every request it
    /// sees); an oversize handling that does not match a request past its part's limit
    /// its statement's (one that does has none: such a request opens no gate); a NOT, a
    /// rate-based statement and the other statements have none.
    pub(crate) fn gate(&self, merged: &Merged) -> Option<Vec<Opening>> {
        let detectable = |field: &Field, transforms: &[Transform], detector| {
            let field = merged.fields.iter().position(|known| known == field)?;
            Some(vec![Opening::Detectable {
                field: field as u32,
                triggers: transform::triggers(transforms),
                detector,
            }])
        };
        match self {
            Statement::Regex {
                place: MergedPlace(Some((id, index, pattern))),
                ..
            } if *id == merged.id && merged.id != 0 => Some(vec![Opening::Found {
                chain: *index,
                pattern: *pattern,
            }]),
            Statement::Sqli { field, transforms } if merged.id != 0 => {
                detectable(field, transforms, SQLI)
            }
            Statement::Xss { field, transforms } if merged.id != 0 => {
                detectable(field, transforms, XSS)
            }
            Statement::Or(statements) => {
                let mut gate = Vec::new();
                for statement in statements {
                    for opening in statement.gate(merged)? {
                        if !gate.contains(&opening) {
                            gate.push(opening);
                        }
                    }
                }
                (!gate.is_empty()).then_some(gate)
            }
            Statement::And(statements) if !statements.iter().any(Statement::counts) => statements
                .iter()
                .filter_map(|statement| statement.gate(merged))
                .min_by_key(Vec::len),
            // One that does not match a request past its part's limit matches only where
            // its statement does; one that does has no gate (such a request opens none).
            Statement::OnOversize {
                matches: false,
                statement,
                ..
            } => statement.gate(merged),
            _ => None,
        }
    }

    /// Whether the statement holds a rate-based statement, which counts the requests it
    /// sees, and so must see each of them.
    fn counts(&self) -> bool {
        match self {
            Statement::RateBased { .. } => true,
            Statement::Not(statement) | Statement::OnOversize { statement, .. } => {
                statement.counts()
            }
            Statement::And(statements) | Statement::Or(statements) => {
                statements.iter().any(Statement::counts)
            }
            _ => false,
        }
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
        self.matches(inspection, labels, merged, true)
    }

    /// [`Statement::evaluate_merged`], with the evidence only if `wanted` (else an empty
    /// one when the statement matches).
    fn matches(
        &self,
        inspection: &Inspection<'_>,
        labels: &[String],
        merged: Option<&Scan<'_>>,
        wanted: bool,
    ) -> Option<Evidence> {
        match self {
            Statement::ByteMatch {
                field,
                position,
                search,
                transforms,
            } => find(inspection, field, transforms, wanted, |value| {
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
                find(inspection, field, transforms, wanted, |value| {
                    regex.is_match(value)
                })
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
                holds.then(|| {
                    Evidence::if_wanted(wanted, || Evidence {
                        field: field.name(),
                        data: format!("{actual} bytes"),
                    })
                })
            }
            Statement::Sqli { field, transforms } => {
                find_transformed(inspection, field, transforms, wanted, |value| {
                    detects(inspection, value, SQLI)
                })
            }
            Statement::Xss { field, transforms } => {
                find_transformed(inspection, field, transforms, wanted, |value| {
                    detects(inspection, value, XSS)
                })
            }
            Statement::IpSet {
                networks,
                forwarded,
            } => {
                let inside =
                    |address: &IpAddr| networks.iter().any(|network| network.contains(address));
                let (field, found) = match forwarded {
                    None => (
                        "client",
                        inside(&inspection.client).then_some(inspection.client),
                    ),
                    Some(forwarded) => {
                        match forwarded.address(inspection, forwarded.position, inside) {
                            Err(()) => return forwarded.fallback(wanted),
                            Ok(address) => ("forwarded_ip", address.filter(inside)),
                        }
                    }
                };
                found.map(|address| {
                    Evidence::if_wanted(wanted, || Evidence {
                        field: field.to_owned(),
                        data: address.to_string(),
                    })
                })
            }
            Statement::Geo {
                countries,
                forwarded,
            } => {
                let address = match forwarded {
                    None => inspection.client,
                    Some(forwarded) => {
                        match forwarded.address(inspection, IpPosition::First, |_| true) {
                            Ok(Some(address)) => address,
                            Ok(None) => return None,
                            Err(()) => return forwarded.fallback(wanted),
                        }
                    }
                };
                let country = iptocc::country_code(address)?;
                countries
                    .iter()
                    .any(|listed| listed.eq_ignore_ascii_case(country))
                    .then(|| {
                        Evidence::if_wanted(wanted, || Evidence {
                            field: "client_country".to_owned(),
                            data: country.to_owned(),
                        })
                    })
            }
            Statement::Label(key) => {
                labels
                    .iter()
                    .find(|added| label_matches(key, added))
                    .map(|added| {
                        Evidence::if_wanted(wanted, || Evidence {
                            field: "label".to_owned(),
                            data: added.clone(),
                        })
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
                .then(|| {
                    Evidence::if_wanted(wanted, || Evidence {
                        field: "header:referer".to_owned(),
                        data: referer_host.chars().take(64).collect(),
                    })
                })
            }
            Statement::RateBased { rate, scope_down } => {
                if let Some(scope_down) = scope_down {
                    scope_down.matches(inspection, labels, merged, false)?;
                }
                match rate.hit(inspection)? {
                    crate::rate::Hit::Counted { over, key } => over.then(|| {
                        Evidence::if_wanted(wanted, || Evidence {
                            field: "rate".to_owned(),
                            data: format!(
                                "{key} past {} in {} s",
                                rate.limit,
                                rate.window.as_secs()
                            ),
                        })
                    }),
                    crate::rate::Hit::Fallback { header } => {
                        Some(Evidence::if_wanted(wanted, || Evidence {
                            field: "forwarded_ip".to_owned(),
                            data: format!("no address in {header}"),
                        }))
                    }
                }
            }
            // The last statement's evidence is the AND's.
            Statement::And(statements) => {
                let (last, before) = statements.split_last()?;
                for statement in before {
                    statement.matches(inspection, labels, merged, false)?;
                }
                last.matches(inspection, labels, merged, wanted)
            }
            Statement::Or(statements) => statements
                .iter()
                .find_map(|statement| statement.matches(inspection, labels, merged, wanted)),
            Statement::Not(statement) => match statement.matches(inspection, labels, merged, false)
            {
                Some(_) => None,
                None => Some(Evidence::if_wanted(wanted, || Evidence {
                    field: "not".to_owned(),
                    data: String::new(),
                })),
            },
            Statement::OnOversize {
                matches,
                limited,
                statement,
            } => {
                if !inspection.oversize(*limited) {
                    return statement.matches(inspection, labels, merged, wanted);
                }
                matches.then(|| {
                    // Named so that a log shows it (a match in `cookies` is redacted).
                    Evidence::if_wanted(wanted, || Evidence {
                        field: "oversize".to_owned(),
                        data: limited.name().to_owned(),
                    })
                })
            }
        }
    }
}

/// The detectors' numbers, as [`Inspection::detected`] and [`Opening::Detectable`]
/// name them.
const SQLI: u8 = 0;
const XSS: u8 = 1;

/// Whether the detector numbered `detector` could flag `value` at all (as the
/// statements ask, before asking the detector).
fn could_detect(detector: u8, value: &[u8]) -> bool {
    if detector == SQLI {
        value.len() > 1 && could_be_sqli(value)
    } else {
        value.len() > 2 && could_be_xss(value)
    }
}

/// Whether `detector` flags `value`: [`could_detect`] first, then libinjection, whose
/// verdict the inspection remembers per value. A long value's prefilter is remembered
/// with the verdict (walking the whole of a long text again costs more than the memo's
/// look-up); a short one's is cheaper than the look-up, and comes before it.
fn detects(inspection: &Inspection<'_>, value: &Transformed<'_>, detector: u8) -> bool {
    let libinjection = |value: &[u8]| {
        if detector == SQLI {
            // `detect_sqli`'s verdict (see `sqli`), without the fingerprint it then takes
            // once more (tokenizing the value again) for its result, which a rule does
            // not read.
            crate::sqli::is_sqli(value)
        } else {
            libinjectionrs::detect_xss(value).is_injection()
        }
    };
    if value.len() < crate::inspect::MEMO_FROM {
        could_detect(detector, value) && inspection.detected(value, detector, libinjection)
    } else {
        inspection.detected(value, detector, |value| {
            could_detect(detector, value) && libinjection(value)
        })
    }
}

/// One way a statement's gate may open (see [`Statement::gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// The merged expression `pattern` of `chain` was found.
    Found { chain: u32, pattern: u32 },
    /// The merge's field `field` has a value that the transformations (of these
    /// triggers) may change, or one the detector could flag as it is.
    Detectable {
        field: u32,
        triggers: Traits,
        detector: u8,
    },
}

/// A rule's gate (see [`Statement::gate`]), as evaluations read it: its openings, and,
/// when they all wait on merged expressions of chains numbered below 64, those chains as
/// bits. Most requests find nothing in most chains, and a gate whose chains have all
/// been scanned and found nothing is shut without a look at each of its openings.
#[derive(Debug)]
pub(crate) struct Gate {
    openings: Vec<Opening>,
    chains: Option<u64>,
}

impl Gate {
    pub(crate) fn new(openings: Vec<Opening>) -> Self {
        let chains = openings
            .iter()
            .try_fold(0u64, |chains, opening| match *opening {
                Opening::Found { chain, .. } if chain < u64::BITS => Some(chains | 1 << chain),
                _ => None,
            });
        Self { openings, chains }
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

/// Whether libinjection's SQL injection detector could flag `value` at all. It flags a
/// value only when, in one of the contexts it tries, the types of its first tokens (its
/// fingerprint) are in its blacklist, and no blacklisted fingerprint is made only of bare
/// words (`n`), numbers (`1`), strings (`s`) and commas (a test checks the table). So it
/// cannot flag:
/// - a number (only digits) or a single word (a letter, then letters, digits and `_`):
///   one token, and no token alone is an injection (the test checks every word of
///   libinjection's keyword table, a word of each type, bare words and numbers);
/// - a value of only letters, digits, `_`, spaces, commas and apostrophes whose every
///   word (a run of letters, digits and `_`) is a number or starts with a letter, and is
///   none libinjection knows (nor a part of a phrase it knows, such as `GROUP BY`): in
///   each context (as it is, or as if a quote came before it) its tokens are words,
///   numbers, commas, and strings between apostrophes (`O'Brien`, `1 Main St, Apt 2`,
///   `red wool coat`; a test checks the fingerprints of every sequence of up to 6 such
///   words, numbers, commas and words with apostrophes, in every context);
/// - an e-mail address of words and numbers, the part before the `@` starting with a
///   letter, and neither it nor what comes before any of its dots a word libinjection
///   knows: one word and one variable to it (`nv`; the test checks the fingerprints of
///   every address of up to 2 parts before the `@` and 3 after it, over 8 parts).
///
/// Most argument names and many values (search terms, names, addresses, e-mail
/// addresses, categories, sort orders) are such, and the detector (a tokenizer, a
/// keyword look-up per word, and up to five folds) costs many times this walk. The
/// claims hold for the tokenizer and table of the `libinjectionrs` in the lock file
/// (whose verdicts `sqli::is_sqli` gives), which the tests check: an update must pass
/// them again.
fn could_be_sqli(value: &[u8]) -> bool {
    use crate::sqli::known_word as sql_word;
    let in_word = |byte: &u8| byte.is_ascii_alphanumeric() || *byte == b'_';
    let number = |word: &[u8]| word.iter().all(u8::is_ascii_digit);
    let word = |text: &[u8]| {
        text.split_first()
            .is_some_and(|(first, rest)| first.is_ascii_alphabetic() && rest.iter().all(in_word))
    };
    // One token, whatever it is.
    if number(value) || word(value) {
        return false;
    }
    let bare = |text: &[u8]| {
        text.is_empty()
            || number(text)
            || (word(text) && text.len() < crate::sqli::WORD_LIMIT && !sql_word(text))
    };
    // Word by word, up to the first word libinjection knows or byte outside the
    // alphabet: in most text that is a few words in.
    let mut rest = value;
    let plain = loop {
        let end = rest
            .iter()
            .position(|byte| !in_word(byte))
            .unwrap_or(rest.len());
        if !bare(&rest[..end]) {
            break false;
        }
        match rest[end..].split_first() {
            None => break true,
            Some((b' ' | b',' | b'\'', after)) => rest = after,
            Some(_) => break false,
        }
    };
    if plain {
        return false;
    }
    // An e-mail address: `ada.lovelace@example.com`. Its tokens are the part before the
    // `@`, one word for libinjection, and the rest, one variable: `nv`. The word starts
    // with a letter (`1.eor` would be a number, then `or`), and neither it nor what comes
    // before any of its dots (which libinjection looks up too: `sys.stragg`) is a word it
    // knows.
    let Some(at) = memchr::memchr(b'@', value) else {
        return true;
    };
    let (name, domain) = (&value[..at], &value[at + 1..]);
    let known_before_a_dot = memchr::memchr_iter(b'.', name).any(|dot| sql_word(&name[..dot]));
    let plain = |text: &[u8], least: usize| {
        let mut parts = 0;
        text.split(|byte| *byte == b'.').all(|part| {
            parts += 1;
            !part.is_empty() && part.iter().all(in_word)
        }) && parts >= least
    };
    !(name.first().is_some_and(u8::is_ascii_alphabetic)
        && plain(name, 1)
        && plain(domain, 2)
        && !known_before_a_dot
        && !sql_word(name))
}

/// The first value of `field` that `test` accepts after the transformations.
fn find(
    inspection: &Inspection<'_>,
    field: &Field,
    transforms: &[Transform],
    wanted: bool,
    mut test: impl FnMut(&[u8]) -> bool,
) -> Option<Evidence> {
    find_transformed(inspection, field, transforms, wanted, |value| test(value))
}

/// [`find`], with the transformed value as the memo holds it.
fn find_transformed(
    inspection: &Inspection<'_>,
    field: &Field,
    transforms: &[Transform],
    wanted: bool,
    mut test: impl FnMut(&Transformed<'_>) -> bool,
) -> Option<Evidence> {
    let mut evidence = None;
    inspection.any_value(field, |value| {
        let transformed = inspection.transformed(value, transforms);
        if test(&transformed) {
            evidence = Some(Evidence::if_wanted(wanted, || {
                Evidence::new(field, &transformed)
            }));
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
/// ACL, so that an evaluation finds it without a look-up.
///
/// Most values are left as they are by most chains (a chain changes a value only where
/// the value holds what one of its transformations acts on: see
/// [`transform::Traits`]). Such values are scanned once, as they are, by their field's
/// set: every expression some statement reads the field with, whatever its chain
/// (fields read with the same expressions share one). A field's own set, rather than one
/// of every expression, keeps an expression meant for one header (`^\s*0*[1-9]` for
/// `Content-Length`) from matching other fields' values, which would make their scans
/// look for every match. A value a chain changes is scanned by the chain's own set. No
/// transformation of a merged chain makes a value longer (chains with `utf8_to_unicode` or
/// `md5`, which may, are not merged), so a value shorter than a set's shortest match is
/// not scanned. An expression read after a last lowercasing is merged blind to case,
/// without the lowercasing (see [`merged_as`]).
///
/// (A chain longer than the memo tells apart is not merged; neither is a set the engine
/// would not build within its limits: its statements scan by themselves, as without a
/// merge. Nor is an expression that matches the empty text, such as `^` for "the header
/// is there": it matches every value, so in a set it would make each scan look for
/// every match; alone it answers at once.)
#[derive(Debug, Default)]
pub(crate) struct Merged {
    chains: Vec<MergedChain>,
    /// This merge's number (0: none), which the statements' places name.
    id: u64,
    /// How many statements it placed.
    placed: usize,
    /// The sets the engine would not build: a chain's (its statements scan alone), or a
    /// field group's (the chains scan its values themselves; see [`share_sets`] for the
    /// groups that share one).
    unbuilt: usize,
    /// Every chain's fields, each once (the chains name them by their place here).
    fields: Vec<Field>,
    /// Each field's group, by the field's place.
    group_of: Vec<usize>,
    groups: Vec<FieldGroup>,
    /// The fields (of the first 64) whose group has no set, as bits: no scan tells which
    /// expressions their values match, and the chains read their values themselves.
    unscanned: u64,
    /// How many distinct expressions the chains hold: the numbering the groups' and
    /// chains' `in_all` share.
    all: usize,
}

#[derive(Debug)]
struct MergedChain {
    transforms: Vec<Transform>,
    /// The traits of the values its transformations may change.
    triggers: Traits,
    /// The length of its expressions' shortest match: a shorter value cannot match after
    /// the chain, since its transformations never make a value longer.
    shortest: usize,
    /// Its fields' places in [`Merged::fields`].
    fields: Vec<usize>,
    /// The same places as bits, when they are all below 64 (see [`Scan::found`]).
    field_bits: Option<u64>,
    set: SetSearch,
    /// What every match of the set holds unless it starts at the value's start.
    needles: Option<Needles>,
    /// The set's search of a long value's transformation without it, when the chain
    /// reads left to right.
    prefix: Option<PrefixSearch>,
    /// Each of the set's expressions' number among all of the merge's.
    in_all: Vec<usize>,
}

/// Fields read with the same expressions, and the set of them.
#[derive(Debug)]
struct FieldGroup {
    /// `None` when the engine would not build it (or the fields are read by no
    /// expression, only by detectors). Groups that read mostly the same expressions
    /// share one set of all of theirs (see [`share_sets`]).
    set: Option<Arc<SharedSet>>,
    /// What every match of the group's own expressions holds unless it starts at the
    /// value's start.
    needles: Option<Needles>,
    /// The length of the shortest match of the group's own expressions.
    shortest: usize,
    /// The group's own expressions, by their number among all of the merge's, when
    /// its set holds others too: what else the set finds is not the group's.
    own: Option<Found>,
}

/// A set of expressions that one or more field groups scan their values with.
#[derive(Debug)]
struct SharedSet<R = SetSearch> {
    set: R,
    /// Each of the set's expressions' number among all of the merge's.
    in_all: Vec<usize>,
}

/// How much of a group's expressions a shared set must already hold for the group to
/// join it.
const SHARE_FROM: f64 = 0.75;

/// Field groups that read mostly the same expressions (by their numbers among all of a
/// merge's), gathered to share one set. In the default ACL the arguments' names and
/// values, the body's fields and the cookies each read 52 to 57 expressions, most of
/// them the same, and the path, the user agent, the referer and all headers 13 to 35
/// of those: eight groups share one set of 68, built and kept once rather than eight
/// times. The default ACL builds in 190 ms rather than 255, and `examples/evaluate.rs`
/// peaks at 34 MB rather than 42 (each set keeps a lazy DFA of its own per thread). The
/// benchmark's GET and form cost what they did to evaluate (their values walk as many
/// states, in one DFA rather than several; a match of another group's expression costs
/// a search for the matches, which the group then drops). A group joins a set that
/// already holds [`SHARE_FROM`] of its expressions, the larger groups placed first, so
/// a set may grow by each group that joins it. Returns each shared set's expressions
/// (sorted) and each group's set.
fn share_sets(groups: &[Vec<usize>]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&group| std::cmp::Reverse(groups[group].len()));
    let mut shared: Vec<Vec<usize>> = Vec::new();
    let mut set_of = vec![0; groups.len()];
    for group in order {
        let own = &groups[group];
        let joins = shared.iter().position(|set| {
            let held = own
                .iter()
                .filter(|pattern| set.binary_search(pattern).is_ok())
                .count();
            !own.is_empty() && held as f64 >= SHARE_FROM * own.len() as f64
        });
        set_of[group] = match joins {
            Some(at) => {
                let set = &mut shared[at];
                set.extend(own.iter().copied());
                set.sort_unstable();
                set.dedup();
                at
            }
            None => {
                shared.push(own.clone());
                shared.len() - 1
            }
        };
    }
    (shared, set_of)
}

/// Each field group's set (see [`share_sets`]), built by `build` from the expressions'
/// texts (`all`, by number), and which of its matches are the group's own (`None`: all
/// of them), with the group's expressions; and how many sets would not build. A shared
/// set too large to build leaves each of its groups to build a set of its own, as
/// without sharing.
fn group_sets<R>(
    groups: Vec<Vec<usize>>,
    all: &[String],
    build: impl Fn(&[&str]) -> Option<R>,
) -> (GroupSets<R>, usize) {
    let texts = |in_all: &[usize]| -> Vec<&str> {
        in_all.iter().map(|&index| all[index].as_str()).collect()
    };
    let (shared, set_of) = share_sets(&groups);
    let members = |set: usize| set_of.iter().filter(|&&of| of == set).count();
    let mut unbuilt = 0;
    let sets: Vec<Option<Arc<SharedSet<R>>>> = shared
        .into_iter()
        .enumerate()
        .map(|(at, in_all)| {
            if in_all.is_empty() {
                return None;
            }
            let set = build(&texts(&in_all));
            // The groups of a shared set that would not build try their own below.
            if set.is_none() && members(at) == 1 {
                unbuilt += 1;
            }
            set.map(|set| Arc::new(SharedSet { set, in_all }))
        })
        .collect();
    let groups = groups
        .into_iter()
        .enumerate()
        .map(|(group, in_all)| {
            let set = sets[set_of[group]].clone().or_else(|| {
                if in_all.is_empty() || members(set_of[group]) == 1 {
                    return None;
                }
                let set = build(&texts(&in_all));
                unbuilt += usize::from(set.is_none());
                set.map(|set| {
                    Arc::new(SharedSet {
                        set,
                        in_all: in_all.clone(),
                    })
                })
            });
            let own = set
                .as_ref()
                .filter(|set| set.in_all.len() > in_all.len())
                .map(|_| {
                    let mut own = Found::new(all.len());
                    for &pattern in &in_all {
                        own.insert(regex_automata::PatternID::new_unchecked(pattern));
                    }
                    own
                });
            (set, own, in_all)
        })
        .collect();
    (groups, unbuilt)
}

/// Each group's set, the group's own matches among its set's, and its expressions.
type GroupSets<R> = Vec<(Option<Arc<SharedSet<R>>>, Option<Found>, Vec<usize>)>;

/// A merged set: on bytes, ASCII classes, every pattern that matches reported (as
/// `regex::bytes::RegexSet` builds its sets), within [`MERGED_SIZE_LIMIT`].
fn merged_set<P: AsRef<str>>(patterns: &[P]) -> Option<SetSearch> {
    SetSearch::new(patterns, merged_syntax(), MERGED_SIZE_LIMIT)
}

/// How the merged sets read their expressions.
pub(crate) fn merged_syntax() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
}

/// The length of the shortest text `pattern` matches, as a merged set reads it (0 when
/// that is unknown: the syntax tree says nothing both for an expression that matches
/// nothing and for one that repeats, maybe zero times, something that matches nothing,
/// such as `/admin[a&&b]*`, which matches `/admin`).
fn shortest(pattern: &str) -> usize {
    regex_automata::util::syntax::parse_with(pattern, &merged_syntax())
        .ok()
        .and_then(|hir| hir.properties().minimum_len())
        .unwrap_or(0)
}

/// The shortest match of the expressions numbered `in_all`, each's in `shortest_of`.
fn shortest_among(shortest_of: &[usize], in_all: &[usize]) -> usize {
    in_all
        .iter()
        .map(|&index| shortest_of[index])
        .min()
        .unwrap_or(usize::MAX)
}

/// Whether `pattern`, as a merged set reads it, is blind to ASCII case: it matches
/// somewhere in a text exactly where it matches somewhere in the text lowercased (every
/// letter it names, it names in both cases, as `(?i)` writes them).
fn case_blind(pattern: &str) -> bool {
    use regex_automata::util::syntax::parse_with;
    use regex_syntax::hir::{Class, HirKind};
    fn blind(hir: &regex_syntax::hir::Hir) -> bool {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => true,
            HirKind::Literal(literal) => !literal.0.iter().any(u8::is_ascii_alphabetic),
            HirKind::Class(Class::Bytes(class)) => {
                let holds = |byte: u8| {
                    class
                        .ranges()
                        .iter()
                        .any(|range| (range.start()..=range.end()).contains(&byte))
                };
                (b'a'..=b'z').all(|lower| holds(lower) == holds(lower.to_ascii_uppercase()))
            }
            HirKind::Class(Class::Unicode(_)) => false,
            HirKind::Repetition(repetition) => blind(&repetition.sub),
            HirKind::Capture(capture) => blind(&capture.sub),
            HirKind::Concat(hirs) | HirKind::Alternation(hirs) => hirs.iter().all(blind),
        }
    }
    parse_with(pattern, &merged_syntax()).is_ok_and(|hir| blind(&hir))
}

/// The chain and expression a statement is merged as. An expression read after a last
/// lowercasing is merged blind to case, and without the lowercasing: it finds at least
/// what it found (whatever matches in a lowercased text matches, blind to case, in the
/// text), and most values are then left as they are by the chain. (Unless the expression
/// turns blindness off somewhere, `(?-i)`: then it is merged as it is.) Its long counted
/// repetitions are merged unbounded (see [`loosened`]).
fn merged_as<'s>(regex: &'s str, transforms: &'s [Transform]) -> (&'s [Transform], Cow<'s, str>) {
    if let Some((Transform::Lowercase, before)) = transforms.split_last() {
        let blind = format!("(?i:{regex})");
        if case_blind(&blind) {
            return (before, loosened(Cow::Owned(blind)));
        }
    }
    (transforms, loosened(Cow::Borrowed(regex)))
}

/// A counted repetition of more than this many is merged unbounded (see [`loosened`]).
const MOST_MERGED_COUNT: u32 = 16;

/// `pattern` with each counted repetition of more than [`MOST_MERGED_COUNT`] unbounded
/// (`[^;]{0,100}` as `[^;]{0,}`): what it matches and more, for a merged set, whose
/// findings only open the way to a statement's own expression.
///
/// A lazy DFA follows a counted repetition with a state for each count of each of its
/// starts under way. In a set of many expressions, text that starts such repetitions
/// over and over (`select` ... `from` in `\bselect\b[^;]{0,100}\bfrom\b`, which any
/// text can hold) makes a new state of nearly every byte: the engine's cache fills,
/// and after a few clears it gives the search up to its NFA simulation, a thousand times
/// slower. Measured on 2026-11-27 with the default ACL: 20 ms to evaluate a 2 KiB form
/// of shop and SQL words, 80 ms for 8 KiB, against 15 µs for a review of plain text.
fn loosened(pattern: Cow<'_, str>) -> Cow<'_, str> {
    use regex_syntax::hir::{Capture, Hir, HirKind, Repetition};
    fn loosen(hir: &Hir) -> Option<Hir> {
        match hir.kind() {
            HirKind::Repetition(repetition) => {
                let long = repetition
                    .max
                    .is_some_and(|max| max > MOST_MERGED_COUNT && max > repetition.min);
                let sub = loosen(&repetition.sub);
                (long || sub.is_some()).then(|| {
                    Hir::repetition(Repetition {
                        max: if long { None } else { repetition.max },
                        sub: Box::new(sub.unwrap_or_else(|| (*repetition.sub).clone())),
                        ..*repetition
                    })
                })
            }
            HirKind::Capture(capture) => loosen(&capture.sub).map(|sub| {
                Hir::capture(Capture {
                    index: capture.index,
                    name: capture.name.clone(),
                    sub: Box::new(sub),
                })
            }),
            HirKind::Concat(parts) => loosen_all(parts).map(Hir::concat),
            HirKind::Alternation(branches) => loosen_all(branches).map(Hir::alternation),
            HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => None,
        }
    }
    fn loosen_all(hirs: &[Hir]) -> Option<Vec<Hir>> {
        let loosened: Vec<Option<Hir>> = hirs.iter().map(loosen).collect();
        loosened.iter().any(Option::is_some).then(|| {
            loosened
                .into_iter()
                .zip(hirs)
                .map(|(loosened, hir)| loosened.unwrap_or_else(|| hir.clone()))
                .collect()
        })
    }
    let Some(hir) = regex_automata::util::syntax::parse_with(&pattern, &merged_syntax())
        .ok()
        .as_ref()
        .and_then(loosen)
    else {
        return pattern;
    };
    // The syntax tree's printing has no brackets for a repetition of a repetition
    // (`(?:x{1,40})?` would come out as `x+?`, read back lazy, and not optional): what
    // does not read back as the same tree is merged as it was.
    let printed = hir.to_string();
    match regex_automata::util::syntax::parse_with(&printed, &merged_syntax()) {
        Ok(read) if read == hir => Cow::Owned(printed),
        _ => pattern,
    }
}

/// Whether a statement's expression joins a merge (see [`Merged`]).
fn mergeable(regex: &regex::bytes::Regex, transforms: &[Transform]) -> bool {
    transforms.len() <= MAX_MEMO_CHAIN
        && !transforms.iter().any(|transform| transform.lengthens())
        && !regex.is_match(b"")
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
        // In the order met, so that a merge is built the same way each time.
        let mut gathered: Vec<(u64, Gathered)> = Vec::new();
        // Which expressions each field is read with.
        let mut reads: Vec<(Field, Vec<String>)> = Vec::new();
        for statement in statements.iter_mut() {
            each_regex(statement, &mut |field, regex, transforms, _| {
                if !mergeable(regex, transforms) {
                    return;
                }
                let (transforms, pattern) = merged_as(regex.as_str(), transforms);
                let key = chain_key(transforms);
                let at = gathered
                    .iter()
                    .position(|(known, _)| *known == key)
                    .unwrap_or_else(|| {
                        gathered.push((
                            key,
                            Gathered {
                                transforms: transforms.to_vec(),
                                fields: Vec::new(),
                                patterns: Vec::new(),
                            },
                        ));
                        gathered.len() - 1
                    });
                let chain = &mut gathered[at].1;
                if !chain.fields.contains(field) {
                    chain.fields.push(field.clone());
                }
                if !chain.patterns.iter().any(|known| *known == pattern) {
                    chain.patterns.push(pattern.clone().into_owned());
                }
                let at = reads
                    .iter()
                    .position(|(known, _)| known == field)
                    .unwrap_or_else(|| {
                        reads.push((field.clone(), Vec::new()));
                        reads.len() - 1
                    });
                if !reads[at].1.iter().any(|known| *known == pattern) {
                    reads[at].1.push(pattern.into_owned());
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
        // Each expression's shortest match, by its number.
        let mut shortest_of: Vec<usize> = Vec::new();
        for (key, chain) in gathered {
            let Some(set) = merged_set(&chain.patterns) else {
                merged.unbuilt += 1;
                continue;
            };
            index_of.insert(key, merged.chains.len());
            let in_all: Vec<usize> = chain
                .patterns
                .iter()
                .map(|pattern| {
                    all.iter()
                        .position(|known| known == pattern)
                        .unwrap_or_else(|| {
                            all.push(pattern.clone());
                            shortest_of.push(shortest(pattern));
                            all.len() - 1
                        })
                })
                .collect();
            let fields = chain
                .fields
                .into_iter()
                .map(|field| {
                    merged
                        .fields
                        .iter()
                        .position(|known| *known == field)
                        .unwrap_or_else(|| {
                            merged.fields.push(field);
                            merged.fields.len() - 1
                        })
                })
                .collect();
            let transforms = chain.transforms;
            let needles = Needles::of(&chain.patterns, &merged_syntax());
            let prefix = needles.as_ref().and_then(|needles| {
                PrefixSearch::new(&chain.patterns, merged_syntax(), &transforms, needles)
            });
            merged.chains.push(MergedChain {
                triggers: transform::triggers(&transforms),
                shortest: shortest_among(&shortest_of, &in_all),
                transforms,
                fields,
                field_bits: None,
                set,
                needles,
                prefix,
                in_all,
            });
            chain_patterns.push(chain.patterns);
        }
        merged.all = all.len();
        // The fields detectors read, for their gates (see [`Statement::gate`]).
        for statement in statements.iter() {
            each_detector(statement, &mut |field| {
                if !merged.fields.contains(field) {
                    merged.fields.push(field.clone());
                }
            });
        }
        // Fields read with the same expressions share a group, whose set holds them.
        let mut group_keys: Vec<Vec<usize>> = Vec::new();
        for field in &merged.fields {
            let mut read: Vec<usize> = reads
                .iter()
                .find(|(known, _)| known == field)
                .map(|(_, patterns)| {
                    patterns
                        .iter()
                        .filter_map(|pattern| all.iter().position(|known| known == pattern))
                        .collect()
                })
                .unwrap_or_default();
            read.sort_unstable();
            let group = group_keys
                .iter()
                .position(|known| *known == read)
                .unwrap_or_else(|| {
                    group_keys.push(read);
                    group_keys.len() - 1
                });
            merged.group_of.push(group);
        }
        let (groups, unbuilt) = group_sets(group_keys, &all, |patterns| merged_set(patterns));
        merged.groups = groups
            .into_iter()
            .map(|(set, own, in_all)| {
                let patterns: Vec<&str> = in_all.iter().map(|&index| all[index].as_str()).collect();
                FieldGroup {
                    needles: set
                        .as_ref()
                        .and_then(|_| Needles::of(&patterns, &merged_syntax())),
                    set,
                    shortest: shortest_among(&shortest_of, &in_all),
                    own,
                }
            })
            .collect();
        merged.unbuilt += unbuilt;
        merged.unscanned = (0..merged.fields.len().min(64))
            .filter(|&field| merged.groups[merged.group_of[field]].set.is_none())
            .fold(0, |bits, field| bits | 1 << field);
        for chain in &mut merged.chains {
            chain.field_bits = chain
                .fields
                .iter()
                .try_fold(0u64, |bits, &field| (field < 64).then(|| bits | 1 << field));
        }
        let id = merged.id;
        let mut placed = 0;
        for statement in statements.iter_mut() {
            each_regex(statement, &mut |_, regex, transforms, place| {
                *place = MergedPlace(None);
                if !mergeable(regex, transforms) {
                    return;
                }
                let (transforms, pattern) = merged_as(regex.as_str(), transforms);
                let Some(&index) = index_of.get(&chain_key(transforms)) else {
                    return;
                };
                let Some(pattern) = chain_patterns[index]
                    .iter()
                    .position(|known| *known == pattern)
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

    /// How many statements are merged into how many chains' sets, and how many sets
    /// could not be built (a chain's, or a field group's; for tests).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.placed, self.chains.len(), self.unbuilt)
    }
}

/// The compiled size a merged set may take (each expression alone may take 1 MiB). Its
/// lazy DFA's cache is `setsearch.rs`'s.
const MERGED_SIZE_LIMIT: usize = 16 << 20;

/// Which of a merge's expressions (numbered as all of them) match something.
type Found = regex_automata::PatternSet;

/// What one evaluation knows of an ACL's merged expressions: for each chain, once a
/// statement asked, which of its expressions match some value of its fields.
#[derive(Debug)]
pub(crate) struct Scan<'m> {
    merged: &'m Merged,
    found: Vec<std::cell::OnceCell<ChainFound>>,
    /// For each of the merge's fields, once a chain asked: its values' traits and which
    /// expressions of its group match its values as they are.
    fields: Vec<std::cell::OnceCell<FieldScan>>,
    /// Each scanned field's values' traits, in the order the field gives its values (see
    /// [`FieldScan::values`]): the chains that read the field read them here rather than
    /// walking each value again.
    value_traits: std::cell::RefCell<Vec<Traits>>,
    /// The chains (numbered below 64) scanned and found to match nothing, as bits.
    found_nothing: std::cell::Cell<u64>,
    /// Of the scanned fields numbered below 64, as bits: those scanned, those whose
    /// values as they are match some expression of their group, and, for each trait
    /// (by its bit), those with a value that has it.
    scanned: std::cell::Cell<u64>,
    matched: std::cell::Cell<u64>,
    with_trait: [std::cell::Cell<u64>; Traits::BITS],
    /// What a set finds in one value (before a group's own expressions are taken, or
    /// before a chain adds them to what it found).
    scratch: std::cell::RefCell<Option<regex_automata::PatternSet>>,
}

/// A [`Scan`]'s buffers, emptied and kept by each thread for its next evaluation: a scan
/// needs a cell per chain and per field of its merge, which for the default ACL take
/// more than a kilobyte, and glibc serves an allocation of that size from its shared
/// bins, consolidating its small freed chunks first, at every evaluation.
struct ScanBuffers {
    found: Vec<std::cell::OnceCell<ChainFound>>,
    fields: Vec<std::cell::OnceCell<FieldScan>>,
    value_traits: Vec<Traits>,
    scratch: Option<regex_automata::PatternSet>,
}

impl ScanBuffers {
    const EMPTY: Self = Self {
        found: Vec::new(),
        fields: Vec::new(),
        value_traits: Vec::new(),
        scratch: None,
    };

    /// More values' traits than this are not kept for the next scan (a request with
    /// thousands of arguments would hold on to their room).
    const MOST_VALUES_KEPT: usize = 1024;
}

thread_local! {
    static SPARE_SCAN: std::cell::Cell<ScanBuffers> = const {
        std::cell::Cell::new(ScanBuffers::EMPTY)
    };
}

/// How many recent searches each thread remembers (see [`recalled`]).
const RECENT_SLOTS: usize = 1024;
/// The longest value whose search is remembered: short values (hosts, paths, header
/// values, search terms, form fields) come again from request to request; long ones
/// (reviews, documents) seldom do, and would cost their copy.
const RECENT_LONGEST: usize = 128;

/// A search the thread made lately: what, in which value, and what it found.
#[derive(Default)]
struct Recent {
    hash: u64,
    what: (u64, u64),
    value: Vec<u8>,
    found: Vec<u32>,
}

// What is recalled is never kept by the inspection's own memo (which would have been
// filled on the search's way): see `Inspection`'s `MEMO_FROM`.
const _: () = assert!(RECENT_LONGEST < crate::inspect::MEMO_FROM);

thread_local! {
    static RECENT: std::cell::RefCell<Vec<Recent>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// The slots' hash, seeded at random: which values share a slot is not known outside.
    static RECENT_HASH: foldhash::fast::RandomState = foldhash::fast::RandomState::default();
}

/// Calls `each` with every expression (by its number) that search `what` finds in
/// `value`: the thread's answer to that search in that value when it made it lately,
/// else `search`'s, then remembered (one slot per hash, the last one in it kept). A
/// search is a pure function of what it is, `(merge, set or chain and field)`, and the
/// value, and a merge's number is never used again, so a remembered answer is the
/// search's own; a request repeats most of the last ones' short values (its host, path
/// and headers), whose searches this spares: a GET's evaluation took a third less time with
/// the caches as the network's work leaves them (see `bench/README.md`). Nothing is
/// allocated once the slots are filled (their buffers are reused).
fn recalled(
    what: (u64, u64),
    value: &[u8],
    search: impl FnOnce() -> Vec<u32>,
    mut each: impl FnMut(u32),
) {
    if value.len() > RECENT_LONGEST {
        search().into_iter().for_each(each);
        return;
    }
    let Ok(hash) = RECENT_HASH.try_with(|state| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = state.build_hasher();
        hasher.write_u64(what.0);
        hasher.write_u64(what.1);
        hasher.write(value);
        hasher.finish()
    }) else {
        // (The thread is ending.)
        search().into_iter().for_each(each);
        return;
    };
    let slot = (hash as usize) % RECENT_SLOTS;
    let remembered = RECENT.try_with(|recent| {
        let recent = recent.borrow();
        match recent.get(slot) {
            Some(entry) if entry.hash == hash && entry.what == what && entry.value == value => {
                entry.found.iter().copied().for_each(&mut each);
                true
            }
            _ => false,
        }
    });
    if remembered == Ok(true) {
        return;
    }
    // (Searched outside the borrow: nothing in a search recalls, but the order is safe
    // whatever it does.)
    let found = search();
    found.iter().copied().for_each(&mut each);
    let _ = RECENT.try_with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.is_empty() {
            recent.resize_with(RECENT_SLOTS, Recent::default);
        }
        let entry = &mut recent[slot];
        entry.hash = hash;
        entry.what = what;
        entry.value.clear();
        entry.value.extend_from_slice(value);
        entry.found.clone_from(&found);
    });
}

impl Drop for Scan<'_> {
    fn drop(&mut self) {
        let mut found = std::mem::take(&mut self.found);
        let mut fields = std::mem::take(&mut self.fields);
        let mut value_traits = self.value_traits.take();
        found.clear();
        fields.clear();
        value_traits.clear();
        if value_traits.capacity() > ScanBuffers::MOST_VALUES_KEPT {
            value_traits = Vec::new();
        }
        let buffers = ScanBuffers {
            found,
            fields,
            value_traits,
            scratch: self.scratch.take(),
        };
        // (Not kept when the thread is ending.)
        let _ = SPARE_SCAN.try_with(|spare| spare.set(buffers));
    }
}

/// Which of a chain's expressions were found in a request (nothing is allocated until
/// one is: most requests match none).
#[derive(Debug, Default)]
struct ChainFound(Option<regex_automata::PatternSet>);

impl ChainFound {
    fn contains(&self, pattern: usize) -> bool {
        self.0
            .as_ref()
            .is_some_and(|found| found.contains(regex_automata::PatternID::new_unchecked(pattern)))
    }

    fn is_full(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(regex_automata::PatternSet::is_full)
    }

    /// The set to add to, of a chain of `patterns` expressions.
    fn set(&mut self, patterns: usize) -> &mut regex_automata::PatternSet {
        self.0
            .get_or_insert_with(|| regex_automata::PatternSet::new(patterns))
    }
}

/// A field's values as they are, scanned by its group's set.
#[derive(Debug)]
struct FieldScan {
    /// The union of its values' traits: a chain that leaves them all as they are reads
    /// the field through [`FieldScan::matches`] alone.
    traits: Traits,
    /// Where each value's own traits are in [`Scan::value_traits`].
    values: std::ops::Range<usize>,
    /// Which expressions match one of its values (`None`: none).
    matches: Option<Found>,
    /// For each detector, once a gate asked: whether one of its values as it is could
    /// be flagged by it at all (see [`could_be_sqli`]).
    detectable: [std::cell::OnceCell<bool>; 2],
}

impl<'m> Scan<'m> {
    pub(crate) fn new(merged: &'m Merged) -> Self {
        // The buffers the thread's last scan left, empty (none when the thread is
        // ending, or when another scan on it is under way).
        let ScanBuffers {
            mut found,
            mut fields,
            value_traits,
            scratch,
        } = SPARE_SCAN
            .try_with(|spare| spare.replace(ScanBuffers::EMPTY))
            .unwrap_or(ScanBuffers::EMPTY);
        found.resize_with(merged.chains.len(), std::cell::OnceCell::new);
        fields.resize_with(merged.fields.len(), std::cell::OnceCell::new);
        Self {
            merged,
            found,
            fields,
            value_traits: std::cell::RefCell::new(value_traits),
            found_nothing: std::cell::Cell::new(0),
            scanned: std::cell::Cell::new(0),
            matched: std::cell::Cell::new(0),
            with_trait: Default::default(),
            scratch: std::cell::RefCell::new(scratch),
        }
    }

    /// The expressions of `set` that match `value`, by their number in it.
    fn search_ids(&self, set: &SetSearch, needles: Option<&Needles>, value: &[u8]) -> Vec<u32> {
        let input = search_input(needles, value);
        let mut scratch = self.scratch.borrow_mut();
        let matched = Self::scratch_for(&mut scratch, set);
        if !set.search(&input, matched) {
            return Vec::new();
        }
        matched.iter().map(|pattern| pattern.as_u32()).collect()
    }

    /// The scratch set, empty, for `set`'s expressions.
    fn scratch_for<'s>(
        scratch: &'s mut Option<regex_automata::PatternSet>,
        set: &SetSearch,
    ) -> &'s mut regex_automata::PatternSet {
        if scratch
            .as_ref()
            .is_none_or(|local| local.capacity() < set.pattern_len())
        {
            *scratch = Some(regex_automata::PatternSet::new(set.pattern_len()));
        }
        let local = scratch.as_mut().expect("made above");
        local.clear();
        local
    }

    /// Which expressions of `group`'s set match `value` (`None`: none, or the group has
    /// no set). A short value is looked up among the thread's recent answers first (see
    /// [`recalled`]), unless it may be a credential (`private`), which is not kept.
    fn scan_group(&self, group: usize, value: &[u8], private: bool) -> Option<Found> {
        let FieldGroup {
            set: Some(_),
            shortest,
            ..
        } = &self.merged.groups[group]
        else {
            return None;
        };
        if value.len() < *shortest {
            return None;
        }
        let mut matches: Option<Found> = None;
        let each = |pattern: u32| {
            matches
                .get_or_insert_with(|| Found::new(self.merged.all))
                .insert(regex_automata::PatternID::new_unchecked(pattern as usize));
        };
        if private {
            self.search_group(group, value).into_iter().for_each(each);
        } else {
            recalled(
                (self.merged.id, group as u64),
                value,
                || self.search_group(group, value),
                each,
            );
        }
        matches
    }

    /// [`Scan::scan_group`]'s search itself: the group's own expressions that match, by
    /// their number among all of the merge's.
    fn search_group(&self, group: usize, value: &[u8]) -> Vec<u32> {
        let FieldGroup {
            set: Some(shared),
            needles,
            own,
            ..
        } = &self.merged.groups[group]
        else {
            return Vec::new();
        };
        let SharedSet { set, in_all } = &**shared;
        let mut found = self.search_ids(set, needles.as_ref(), value);
        // By their number among all of the merge's, the group's own only.
        found.retain_mut(|pattern| {
            *pattern = in_all[*pattern as usize] as u32;
            own.as_ref().is_none_or(|own| {
                own.contains(regex_automata::PatternID::new_unchecked(*pattern as usize))
            })
        });
        found
    }

    /// The scan of the merge's field `index` by its group's set.
    fn field(&self, inspection: &Inspection<'_>, index: usize) -> &FieldScan {
        self.fields[index].get_or_init(|| {
            let mut value_traits = self.value_traits.borrow_mut();
            let start = value_traits.len();
            let mut scan = FieldScan {
                traits: Traits::default(),
                values: start..start,
                matches: None,
                detectable: Default::default(),
            };
            let group = self.merged.group_of[index];
            inspection.any_value(&self.merged.fields[index], |value| {
                let traits = inspection.traits(value);
                value_traits.push(traits);
                scan.traits = scan.traits.union(traits);
                let private = inspection.is_credential_value(&self.merged.fields[index], value);
                if let Some(matches) = self.scan_group(group, value, private) {
                    match &mut scan.matches {
                        None => scan.matches = Some(matches),
                        Some(union) => {
                            for pattern in matches.iter() {
                                union.insert(pattern);
                            }
                        }
                    }
                }
                false
            });
            scan.values.end = value_traits.len();
            if index < 64 {
                let bit = 1 << index;
                self.scanned.set(self.scanned.get() | bit);
                if scan.matches.is_some() {
                    self.matched.set(self.matched.get() | bit);
                }
                for each in scan.traits.bits() {
                    let with = &self.with_trait[each as usize];
                    with.set(with.get() | bit);
                }
            }
            scan
        })
    }

    /// Whether some field of `chain` could add to what it finds: one whose values as
    /// they are match some of the merge's expressions, one with a value the chain may
    /// change, or one no group scans (`true` when that is not told by bits).
    fn chain_may_find(&self, inspection: &Inspection<'_>, chain: &MergedChain) -> bool {
        let Some(fields) = chain.field_bits else {
            return true;
        };
        let mut unscanned = fields & !self.merged.unscanned & !self.scanned.get();
        while unscanned != 0 {
            self.field(inspection, unscanned.trailing_zeros() as usize);
            unscanned &= unscanned - 1;
        }
        let changed = chain
            .triggers
            .bits()
            .fold(0, |bits, each| bits | self.with_trait[each as usize].get());
        fields & (self.matched.get() | changed | self.merged.unscanned) != 0
    }

    /// Adds to `found` (a chain's set) the chain's expressions among `matches`.
    fn add_found(chain: &MergedChain, matches: &Found, found: &mut ChainFound) {
        for (local, &global) in chain.in_all.iter().enumerate() {
            if matches.contains(regex_automata::PatternID::new_unchecked(global)) {
                found
                    .set(chain.in_all.len())
                    .insert(regex_automata::PatternID::new_unchecked(local));
            }
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
        self.found(inspection, index as usize)
            .contains(pattern as usize)
    }

    /// Whether a statement with this [`Statement::gate`] could match the request.
    pub(crate) fn opens(&self, inspection: &Inspection<'_>, gate: &Gate) -> bool {
        if gate
            .chains
            .is_some_and(|chains| chains & !self.found_nothing.get() == 0)
        {
            return false;
        }
        gate.openings.iter().any(|opening| match *opening {
            Opening::Found { chain, pattern } => self
                .found(inspection, chain as usize)
                .contains(pattern as usize),
            Opening::Detectable {
                field,
                triggers,
                detector,
            } => {
                let scan = self.field(inspection, field as usize);
                // A value the chain may change is for the detector itself to judge.
                scan.traits.meets(triggers)
                    || *scan.detectable[usize::from(detector)].get_or_init(|| {
                        inspection.any_value(&self.merged.fields[field as usize], |value| {
                            could_detect(detector, value)
                        })
                    })
            }
        })
    }

    /// Which of chain `index`'s expressions match some value of its fields after it,
    /// scanned at the first question.
    fn found(&self, inspection: &Inspection<'_>, index: usize) -> &ChainFound {
        let chain = &self.merged.chains[index];
        self.found[index].get_or_init(|| {
            let mut found = ChainFound::default();
            // Most chains find nothing in most requests, which the fields' scans tell.
            let fields = if self.chain_may_find(inspection, chain) {
                chain.fields.as_slice()
            } else {
                &[]
            };
            for &field in fields {
                if found.is_full() {
                    break;
                }
                let group = self.merged.group_of[field];
                // Most fields' values are all left as they are by most chains: the
                // group's one scan of them answers for every such chain.
                let scan = self.merged.groups[group]
                    .set
                    .is_some()
                    .then(|| self.field(inspection, field));
                // What the field's values match as they are answers for those the
                // chain leaves so (at most it names some expressions too many: enough
                // to tell where to look).
                if let Some(scan) = scan
                    && let Some(matches) = &scan.matches
                {
                    Self::add_found(chain, matches, &mut found);
                }
                if scan.is_some_and(|scan| !scan.traits.meets(chain.triggers)) {
                    continue;
                }
                // Some values the chain may change: each changed one is scanned by the
                // chain's own set (fewer expressions: a faster scan). The field's scan
                // kept each value's traits, in the order `any_value` gives them again.
                // (Borrowed while the values are walked: nothing in the walk may scan a
                // field, which would borrow them mutably.)
                let value_traits = self.value_traits.borrow();
                let mut known = scan.map(|scan| value_traits[scan.values.clone()].iter());
                inspection.any_value(&self.merged.fields[field], |value| {
                    let traits = match known.as_mut().and_then(Iterator::next) {
                        // A value the chain leaves as it is: the field's scan answered.
                        Some(traits) if !traits.meets(chain.triggers) => return false,
                        Some(&traits) => traits,
                        None => inspection.traits(value),
                    };
                    if value.len() < chain.shortest {
                        return false;
                    }
                    // A long value the chain changes may be ruled out without its copy.
                    if let Some(prefix) = &chain.prefix
                        && value.len() >= crate::inspect::MEMO_FROM
                        && traits.meets(chain.triggers)
                        && prefix.rules_out(value)
                    {
                        return false;
                    }
                    // What the chain's set finds in the value's transformation: recalled,
                    // for a short value the thread saw lately (in this field: whether a
                    // value left as it is was scanned depends on it), unless the value
                    // may be a credential, which is not kept.
                    let search = || {
                        let transformed =
                            inspection.transformed_as(value, traits, &chain.transforms);
                        if !matches!(transformed, Transformed::Same(_)) || scan.is_none() {
                            self.search_ids(&chain.set, chain.needles.as_ref(), &transformed)
                        } else {
                            Vec::new()
                        }
                    };
                    let each = |pattern: u32| {
                        found
                            .set(chain.set.pattern_len())
                            .insert(regex_automata::PatternID::new_unchecked(pattern as usize));
                    };
                    if inspection.is_credential_value(&self.merged.fields[field], value) {
                        search().into_iter().for_each(each);
                    } else {
                        recalled(
                            (
                                self.merged.id,
                                1 << 63 | (index as u64) << 32 | field as u64,
                            ),
                            value,
                            search,
                            each,
                        );
                    }
                    found.is_full()
                });
            }
            if found.0.is_none() && index < u64::BITS as usize {
                self.found_nothing
                    .set(self.found_nothing.get() | 1 << index);
            }
            found
        })
    }
}

/// The search of a merged set in `value`: from its start only, when it holds none of the
/// set's needles (no match can start elsewhere: see [`Needles`]).
fn search_input<'v>(needles: Option<&Needles>, value: &'v [u8]) -> regex_automata::Input<'v> {
    let input = regex_automata::Input::new(value);
    if needles.is_some_and(|needles| !needles.in_value(value)) {
        input.anchored(regex_automata::Anchored::Yes)
    } else {
        input
    }
}

/// Calls `each` with every regular expression statement in `statement` (through NOT,
/// AND, OR, oversize handling and rate-based scope-downs): its field, expression,
/// transformations and place.
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
        Statement::Not(statement) | Statement::OnOversize { statement, .. } => {
            each_regex(statement, each)
        }
        Statement::And(statements) | Statement::Or(statements) => {
            for statement in statements {
                each_regex(statement, each);
            }
        }
        _ => {}
    }
}

/// Calls `each` with the field of every detector statement (SQL injection, XSS) in
/// `statement`, through NOT, AND, OR, oversize handling and rate-based scope-downs.
fn each_detector(statement: &Statement, each: &mut impl FnMut(&Field)) {
    match statement {
        Statement::Sqli { field, .. } | Statement::Xss { field, .. } => each(field),
        Statement::RateBased {
            scope_down: Some(scope_down),
            ..
        }
        | Statement::Not(scope_down)
        | Statement::OnOversize {
            statement: scope_down,
            ..
        } => each_detector(scope_down, each),
        Statement::And(statements) | Statement::Or(statements) => {
            for statement in statements {
                each_detector(statement, each);
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

    #[test]
    fn credentials_are_not_kept_among_recent_searches() {
        let acl = crate::managed::default_acl();
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "shop.test".parse().expect("header"));
        headers.insert(
            "cookie",
            "session=d41d8cd98f00b204e9800998ecf8427e"
                .parse()
                .expect("header"),
        );
        headers.insert(
            "authorization",
            "Bearer dG9rZW4tdGhhdC1pcy1zZWNyZXQ"
                .parse()
                .expect("header"),
        );
        let inspection = crate::Inspection::new(
            "GET",
            "/api/catalog/products",
            Some("q=red+wool+coat"),
            &headers,
            b"",
            false,
            "127.0.0.1".parse().expect("address"),
        );
        assert!(!acl.evaluate(&inspection).blocked);
        let kept = |needle: &[u8]| {
            super::RECENT.with(|recent| {
                recent.borrow().iter().any(|entry| {
                    entry
                        .value
                        .windows(needle.len())
                        .any(|window| window == needle)
                })
            })
        };
        // The search term and the host are kept; the session and the token are not.
        assert!(kept(b"red wool coat"));
        assert!(kept(b"shop.test"));
        assert!(!kept(b"d41d8cd98f00b204e9800998ecf8427e"));
        assert!(!kept(b"dG9rZW4tdGhhdC1pcy1zZWNyZXQ"));
    }

    #[test]
    fn recent_searches_are_recalled_only_for_the_same_search_and_value() {
        use std::cell::Cell;
        let searched = Cell::new(0);
        let ask = |what: (u64, u64), value: &[u8], answer: Vec<u32>| -> Vec<u32> {
            let mut found = Vec::new();
            super::recalled(
                what,
                value,
                || {
                    searched.set(searched.get() + 1);
                    answer
                },
                |pattern| found.push(pattern),
            );
            found
        };
        // (Numbers no merge takes: the thread's slots are shared with other tests'.)
        let what = (u64::MAX, 7);
        assert_eq!(ask(what, b"red wool coat", vec![3, 9]), [3, 9]);
        assert_eq!(searched.get(), 1);
        // Recalled: the search is not made again.
        assert_eq!(ask(what, b"red wool coat", vec![]), [3, 9]);
        assert_eq!(searched.get(), 1);
        // Another value, another search of it, or another merge: searched.
        assert_eq!(ask(what, b"red wool coats", vec![]), [] as [u32; 0]);
        assert_eq!(ask((u64::MAX, 8), b"red wool coat", vec![1]), [1]);
        assert_eq!(
            ask((u64::MAX - 1, 7), b"red wool coat", vec![]),
            [] as [u32; 0]
        );
        assert_eq!(searched.get(), 4);
        // A long value is searched each time.
        let long = vec![b'a'; super::RECENT_LONGEST + 1];
        assert_eq!(ask(what, &long, vec![2]), [2]);
        assert_eq!(ask(what, &long, vec![2]), [2]);
        assert_eq!(searched.get(), 6);
        // Many values later, the first is searched again or recalled, never mistaken.
        for n in 0..4 * super::RECENT_SLOTS {
            ask(what, format!("value {n}").as_bytes(), vec![]);
        }
        assert!(matches!(
            &ask(what, b"red wool coat", vec![3, 9])[..],
            [3, 9]
        ));
    }
    use super::{Statement, could_be_sqli, could_be_xss, group_sets, loosened, share_sets};
    use crate::inspect::Inspection;
    use std::borrow::Cow;

    /// Whether `statement` matches a GET of `/search?q=...` from `client`.
    fn matches_search(statement: &Statement, query: &str, client: &str) -> bool {
        let headers = http::HeaderMap::new();
        let inspection = Inspection::new(
            "GET",
            "/search",
            Some(query),
            &headers,
            b"",
            false,
            client.parse().expect("address"),
        );
        statement.evaluate(&inspection, &[]).is_some()
    }

    /// Behind another proxy, IP sets and geo matches read a header's addresses: the first,
    /// the last or any, with a port or without, and the fallback when there is none to read.
    #[test]
    fn forwarded_ip_sets_and_geo_matches_read_the_header() {
        use super::{ForwardedIp, IpPosition};
        let forwarded = |position, fallback_matches| {
            Some(ForwardedIp {
                header: http::HeaderName::from_static("x-forwarded-for"),
                position,
                fallback_matches,
            })
        };
        let set = |position, fallback| Statement::IpSet {
            networks: vec!["203.0.113.0/24".parse().expect("network")],
            forwarded: forwarded(position, fallback),
        };
        let matches = |statement: &Statement, lines: &[&str]| {
            let mut headers = http::HeaderMap::new();
            for line in lines {
                headers.append("x-forwarded-for", line.parse().expect("value"));
            }
            // The connection's address is inside the set: it must not count.
            let inspection = Inspection::new(
                "GET",
                "/",
                None,
                &headers,
                b"",
                false,
                "203.0.113.1".parse().expect("address"),
            );
            statement.evaluate(&inspection, &[]).is_some()
        };
        use IpPosition::{Any, First, Last};
        // (statement, header lines, matches)
        let cases = [
            (set(First, false), &["203.0.113.9, 10.0.0.1"][..], true),
            (set(First, false), &["10.0.0.1, 203.0.113.9"], false),
            (set(Last, false), &["10.0.0.1, 203.0.113.9"], true),
            (set(Last, false), &["10.0.0.1", "203.0.113.9:51234"], true),
            (set(Any, false), &["10.0.0.1, 10.0.0.2, 203.0.113.9"], true),
            (set(Any, false), &["10.0.0.1, 10.0.0.2"], false),
            (
                set(First, false),
                &["[2001:db8::1]:443, 203.0.113.9"],
                false,
            ),
            // No header: never a match, whatever the fallback (AWS WAF does not apply
            // the statement); no address where one is read: the fallback decides.
            (set(First, false), &[], false),
            (set(First, true), &[], false),
            (set(Any, true), &[], false),
            (set(First, true), &["unknown, 203.0.113.9"], true),
            (set(Last, true), &["203.0.113.9, unknown"], true),
            // Only the entry read needs to be an address.
            (set(First, false), &["203.0.113.9, unknown"], true),
            (set(Any, false), &["unknown, 203.0.113.9"], true),
            (set(Any, true), &["unknown, nobody"], true),
            (set(Any, false), &["unknown, nobody"], false),
            // Any of the last ten: entries a client put before them are not read.
            (
                set(Any, false),
                &[
                    "203.0.113.9, 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9, 10.0.0.10",
                ],
                false,
            ),
            (
                set(Any, false),
                &[
                    "10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9, 10.0.0.10, 203.0.113.9",
                ],
                true,
            ),
        ];
        for (statement, lines, expected) in cases {
            assert_eq!(
                matches(&statement, lines),
                expected,
                "{statement:?} {lines:?}"
            );
        }
        // A geo match reads the first address (1.1.1.0/24 is registered in Australia).
        let geo = |fallback| Statement::Geo {
            countries: vec!["AU".to_owned()],
            forwarded: forwarded(First, fallback),
        };
        assert!(matches(&geo(false), &["1.1.1.1, 10.0.0.1"]));
        assert!(!matches(&geo(false), &["10.0.0.1, 1.1.1.1"]));
        assert!(!matches(&geo(false), &[]));
        assert!(!matches(&geo(true), &[]));
        assert!(matches(&geo(true), &["unknown"]));
    }

    /// A label match's key is a label, or, ending with `:`, a namespace of them.
    #[test]
    fn a_label_match_names_a_label_or_a_namespace() {
        let added = [
            "securecart:managed:sql-injection:SC-SQLI-003".to_owned(),
            "shop:trusted".to_owned(),
        ];
        // (key, whether it matches one of the labels added)
        for (key, expected) in [
            ("securecart:managed:sql-injection:SC-SQLI-003", true),
            ("securecart:managed:sql-injection:", true),
            ("securecart:managed:", true),
            ("securecart:managed:sql-injection", false),
            ("securecart:managed:xss:", false),
            ("shop:trusted", true),
            ("shop:", true),
            ("shop:trusted:", false),
            ("shop", false),
        ] {
            let headers = http::HeaderMap::new();
            let inspection = Inspection::new(
                "GET",
                "/",
                None,
                &headers,
                b"",
                false,
                "127.0.0.1".parse().expect("address"),
            );
            let found = Statement::Label(key.to_owned()).evaluate(&inspection, &added);
            assert_eq!(found.is_some(), expected, "{key}");
        }
    }

    /// JSON fields scope a detector to a part of the document, read as JSON whatever the
    /// body's type; a broken document is read whole.
    #[test]
    fn json_fields_scope_statements_to_keys_values_and_pointers() {
        use super::Field;
        let field = |name: &str| Field::parse(name).expect(name);
        let sqli = Statement::Sqli {
            field: field("json_values:/query"),
            transforms: Vec::new(),
        };
        let operator_key =
            Statement::regex(field("json_keys"), r"^\$(?:where|ne|gt)$", &[]).expect("pattern");
        let matches = |statement: &Statement, content_type: &str, body: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("content-type", content_type.parse().expect("value"));
            let inspection = Inspection::new(
                "POST",
                "/api/search",
                None,
                &headers,
                body.as_bytes(),
                false,
                "127.0.0.1".parse().expect("address"),
            );
            statement.evaluate(&inspection, &[]).is_some()
        };
        for (statement, content_type, body, found) in [
            (
                &sqli,
                "application/json",
                r#"{"query": "1' OR '1'='1"}"#,
                true,
            ),
            (&sqli, "text/plain", r#"{"query": "1' OR '1'='1"}"#, true),
            (
                &sqli,
                "application/json",
                r#"{"note": "1' OR '1'='1"}"#,
                false,
            ),
            (
                &sqli,
                "application/json",
                r#"{"query": "O'Brien's wool coat"}"#,
                false,
            ),
            (
                &sqli,
                "application/json",
                r#"{"query": "1' OR '1'='1""#,
                true,
            ),
            (
                &operator_key,
                "application/json",
                r#"{"user": {"$ne": null}}"#,
                true,
            ),
            (
                &operator_key,
                "application/json",
                r#"{"user": "$ne"}"#,
                false,
            ),
        ] {
            assert_eq!(matches(statement, content_type, body), found, "{body}");
        }
    }

    /// A web ACL of one rule, `statement`, that blocks (its expressions merged, its
    /// gate in force, as any ACL's).
    fn blocking(statement: Statement) -> crate::WebAcl {
        crate::WebAcl::new(
            vec![crate::Rule {
                id: "oversize".to_owned(),
                priority: 0,
                statement,
                action: crate::RuleAction::Block,
                labels: Vec::new(),
                response: None,
                score: 0,
            }],
            false,
        )
    }

    /// The same for the cookies and the headers past their limits (the first 200, and
    /// 8 KiB of the `Cookie` lines or of the other headers): `continue` reads the first
    /// ones, and so misses an injection past them, which `match` blocks; a request within
    /// the limits is read whole. Alone and through a web ACL (merged, gated).
    #[test]
    fn oversize_handling_answers_for_cookies_and_headers_past_their_limits() {
        use crate::inspect::{Field, MOST_INSPECTED};
        // Over `field`, with its part's oversize handling, if any.
        let statement = |field: &str, handling: Option<bool>| {
            let field = Field::parse(field).expect("field");
            let limited = field.limited().expect("a field with a limit");
            let attack = Statement::regex(field, r"(?i)union\s+select", &[]).expect("pattern");
            match handling {
                None => attack,
                Some(matches) => Statement::OnOversize {
                    matches,
                    limited,
                    statement: Box::new(attack),
                },
            }
        };
        // Many plain cookies, then the injection: the 201st cookie.
        let many = (0..MOST_INSPECTED)
            .map(|at| format!("c{at}=plain"))
            .chain(["last=1 union select 2".to_owned()])
            .collect::<Vec<_>>()
            .join("; ");
        let few = "c0=plain; last=1 union select 2";
        let plain_many = (0..=MOST_INSPECTED)
            .map(|at| format!("c{at}=plain"))
            .collect::<Vec<_>>()
            .join("; ");
        // A long header, then the injection in a header past 8 KiB.
        let long = "z".repeat(9_000);
        // (field, handling, header, its value, matches)
        let (many, plain_many, long) = (many.as_str(), plain_many.as_str(), long.as_str());
        let cases = [
            ("cookies", None, "cookie", few, true),
            ("cookies", None, "cookie", many, false),
            ("cookies", Some(true), "cookie", many, true),
            ("cookies", Some(true), "cookie", plain_many, true),
            ("cookies", Some(false), "cookie", many, false),
            ("cookies", Some(false), "cookie", few, true),
            ("cookie:last", Some(true), "cookie", many, true),
            ("cookie:last", None, "cookie", few, true),
            ("headers", None, "x-long", long, false),
            ("headers", Some(true), "x-long", long, true),
            ("headers", Some(false), "x-short", "a", true),
        ];
        let client = "127.0.0.1".parse().expect("address");
        for (index, (field, handling, name, value, expected)) in cases.into_iter().enumerate() {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::HeaderName::from_static(name),
                value.parse().expect("value"),
            );
            headers.insert("x-after", "1 union select 2".parse().expect("value"));
            let inspection = Inspection::new("GET", "/", None, &headers, b"", false, client);
            assert_eq!(
                statement(field, handling)
                    .evaluate(&inspection, &[])
                    .is_some(),
                expected,
                "case {index}"
            );
            assert_eq!(
                blocking(statement(field, handling))
                    .evaluate(&inspection)
                    .blocked,
                expected,
                "case {index} in an ACL"
            );
        }
    }

    /// AWS WAF's oversize handling: a statement over the body answers `match` or
    /// `no_match` for a body past the inspection limit, and inspects the body as any
    /// statement does otherwise; in a web ACL, whose merged expressions shut the gates of
    /// rules none of whose expressions were found, too.
    #[test]
    fn oversize_handling_answers_for_a_body_past_the_limit() {
        use super::Field;
        let body = Field::parse("body").expect("field");
        let attack =
            || Statement::regex(body.clone(), r"(?i)union\s+select", &[]).expect("pattern");
        let on = |matches| Statement::OnOversize {
            matches,
            limited: crate::inspect::Limited::Body,
            statement: Box::new(attack()),
        };
        let inspect = |text: &'static [u8], oversize: bool| {
            let mut headers = http::HeaderMap::new();
            headers.insert("content-type", "text/plain".parse().expect("value"));
            (headers, text, oversize)
        };
        // (statement, body, oversize, matches)
        let cases = [
            (attack(), &b"1 union select 2"[..], true, true),
            (attack(), b"a plain note", true, false),
            (on(true), b"a plain note", true, true),
            (on(true), b"a plain note", false, false),
            (on(true), b"1 union select 2", false, true),
            (on(false), b"1 union select 2", true, false),
            (on(false), b"1 union select 2", false, true),
        ];
        for (index, (statement, text, oversize, expected)) in cases.into_iter().enumerate() {
            let (headers, text, oversize) = inspect(text, oversize);
            let client = "127.0.0.1".parse().expect("address");
            let inspection =
                Inspection::new("POST", "/notes", None, &headers, text, oversize, client);
            assert_eq!(
                statement.evaluate(&inspection, &[]).is_some(),
                expected,
                "case {index}"
            );
            // The same through a web ACL (merged, gated), blocking on a match.
            assert_eq!(
                blocking(statement).evaluate(&inspection).blocked,
                expected,
                "case {index} in an ACL"
            );
        }
    }

    #[test]
    fn ip_sets_geo_matches_and_whole_words_match_what_they_say() {
        use super::{Field, Position};
        // IP sets of both families: a network holds its addresses, and only those.
        let set = Statement::IpSet {
            networks: vec![
                "2001:db8:40::/48".parse().expect("network"),
                "127.0.40.0/24".parse().expect("network"),
            ],
            forwarded: None,
        };
        for (client, inside) in [
            ("2001:db8:40::1", true),
            ("2001:db8:40:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:db8:41::1", false),
            // (A dual-stack listener's IPv4 client, as an IPv4-mapped address: itself.)
            ("::ffff:127.0.40.1", true),
            ("127.0.40.255", true),
            ("127.0.41.1", false),
        ] {
            assert_eq!(matches_search(&set, "q=a", client), inside, "{client}");
        }
        // Geo match by the client's country (1.1.1.0/24 is registered in Australia);
        // loopback is in no country.
        let geo = Statement::Geo {
            countries: vec!["AU".to_owned(), "NZ".to_owned()],
            forwarded: None,
        };
        assert!(matches_search(&geo, "q=a", "1.1.1.1"));
        assert!(!matches_search(&geo, "q=a", "127.0.0.1"));
        assert!(!matches_search(
            &Statement::Geo {
                countries: vec!["US".to_owned()],
                forwarded: None,
            },
            "q=a",
            "1.1.1.1"
        ));
        // A whole word: bounded by what is not a letter, digit or underscore.
        let word = Statement::ByteMatch {
            field: Field::AllQueryArguments,
            position: Position::ContainsWord,
            search: b"admin".to_vec(),
            transforms: Vec::new(),
        };
        for (query, found) in [
            ("q=admin", true),
            // (Arguments are read decoded.)
            ("q=the%20admin%20page", true),
            ("q=the admin-page", true),
            ("q=sysadmin", false),
            ("q=admin_panel", false),
            ("q=admins", false),
            ("q=sysadmin,admin", true),
        ] {
            assert_eq!(matches_search(&word, query, "127.0.0.1"), found, "{query}");
        }
    }

    #[test]
    fn long_counts_are_merged_unbounded_and_match_at_least_what_they_did() {
        let select = r"(?i)\bselect\b[^;]{0,100}\bfrom\b";
        let bytes = |pattern: &str| {
            regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .build()
                .expect("compiles")
        };
        let cases = [
            (select, true),
            (r"on[a-z]{3,50}=", true),
            (r"`[^`]{1,200}`", true),
            (r"(?:x[^)]{0,40}\))+", true),
            // A repetition of a repetition prints without brackets: merged as it was.
            (r"a(?:b{1,40})?c", false),
            // Short counts and exact ones stay: they cost the DFA little.
            (r"\d{1,3}\.\d{1,3}", false),
            (r"[0-9a-f]{64}", false),
            (r"a+b*", false),
        ];
        for (pattern, changes) in cases {
            let merged = loosened(Cow::Borrowed(pattern));
            assert_eq!(
                matches!(merged, Cow::Owned(_)),
                changes,
                "{pattern} as {merged}"
            );
            let (exact, loose) = (bytes(pattern), bytes(&merged));
            let texts: [&[u8]; 9] = [
                b"ac",
                b"abbc",
                b"SELECT name FROM users",
                b"select a lot of things, many more than a hundred bytes of them, before the one word that ends it all at last: from",
                b"onmouseover=",
                b"`id`",
                b"x1)x2)",
                b"10.0",
                b"aab",
            ];
            for text in texts {
                assert!(
                    !exact.is_match(text) || loose.is_match(text),
                    "{merged} misses {}",
                    String::from_utf8_lossy(text)
                );
            }
            if changes {
                assert!(
                    !merged.contains("100") && !merged.contains("200"),
                    "{merged}"
                );
            }
        }
        // The long text's `from` is more than 100 bytes after its `select`: only the
        // loosened expression finds it (the statement's own expression then says no).
        let far = b"select a lot of things, many more than a hundred bytes of them, before the one word that ends it all at last: from";
        assert!(!bytes(select).is_match(far));
        assert!(bytes(&loosened(Cow::Borrowed(select))).is_match(far));
    }

    #[test]
    fn a_shared_set_too_large_to_build_leaves_its_groups_their_own() {
        let all: Vec<String> = (0..6).map(|number| format!("e{number}")).collect();
        // A "set" is its expressions' texts; an engine that builds at most four.
        let build = |texts: &[&str]| (texts.len() <= 4).then(|| texts.join(" "));
        let groups = vec![vec![0, 1, 2, 3], vec![0, 1, 2, 4], vec![5], vec![]];
        let (built, unbuilt) = group_sets(groups, &all, build);
        let sets: Vec<Option<String>> = built
            .iter()
            .map(|(set, _, _)| set.as_ref().map(|set| set.set.clone()))
            .collect();
        assert_eq!(
            sets,
            [
                Some("e0 e1 e2 e3".to_owned()),
                Some("e0 e1 e2 e4".to_owned()),
                Some("e5".to_owned()),
                None
            ]
        );
        // Each group's set is its own: no match of it is another group's.
        assert!(built.iter().all(|(_, own, _)| own.is_none()));
        assert_eq!(unbuilt, 0);

        // With an engine that builds five, the first two share a set, each keeping its own
        // matches of it.
        let build = |texts: &[&str]| (texts.len() <= 5).then(|| texts.join(" "));
        let groups = vec![vec![0, 1, 2, 3], vec![0, 1, 2, 4], vec![5]];
        let (built, unbuilt) = group_sets(groups, &all, build);
        let (first, second) = (&built[0], &built[1]);
        assert_eq!(
            first.0.as_ref().map(|set| set.set.as_str()),
            Some("e0 e1 e2 e3 e4")
        );
        assert!(std::sync::Arc::ptr_eq(
            first.0.as_ref().expect("set"),
            second.0.as_ref().expect("set")
        ));
        let own = |found: &Option<super::Found>, pattern: usize| {
            found.as_ref().is_some_and(|found| {
                found.contains(regex_automata::PatternID::new_unchecked(pattern))
            })
        };
        assert!(own(&first.1, 3) && !own(&first.1, 4));
        assert!(own(&second.1, 4) && !own(&second.1, 3));
        assert_eq!(unbuilt, 0);

        // A group alone whose set would not build counts once.
        let build = |texts: &[&str]| (texts.len() <= 1).then(|| texts.join(" "));
        let (_, unbuilt) = group_sets(vec![vec![0, 1], vec![5]], &all, build);
        assert_eq!(unbuilt, 1);
    }

    #[test]
    fn groups_that_read_mostly_the_same_expressions_share_a_set() {
        // (each group's expressions) -> (the shared sets, each group's set)
        type Case<'a> = (&'a [&'a [usize]], &'a [&'a [usize]], &'a [usize]);
        let cases: [Case<'_>; 5] = [
            // Arguments and body fields differ by one expression each: one set.
            (
                &[&[1, 2, 3, 4], &[1, 2, 3, 5]],
                &[&[1, 2, 3, 4, 5]],
                &[0, 0],
            ),
            // Half of the second one's expressions are not the first's: two sets.
            (
                &[&[1, 2, 3, 4], &[3, 4, 8, 9]],
                &[&[1, 2, 3, 4], &[3, 4, 8, 9]],
                &[0, 1],
            ),
            // The larger group is placed first, whatever the order; a group held whole
            // by it adds nothing.
            (&[&[2], &[1, 2, 3]], &[&[1, 2, 3]], &[0, 0]),
            // Three of four already held: enough to join.
            (
                &[&[1, 2, 3, 4, 5, 6], &[1, 2, 3, 7]],
                &[&[1, 2, 3, 4, 5, 6, 7]],
                &[0, 0],
            ),
            // A group read by detectors only (no expression) joins nothing.
            (&[&[1, 2], &[]], &[&[1, 2], &[]], &[0, 1]),
        ];
        for (groups, shared, set_of) in cases {
            let groups: Vec<Vec<usize>> = groups.iter().map(|group| group.to_vec()).collect();
            let (got, got_of) = share_sets(&groups);
            let shared: Vec<Vec<usize>> = shared.iter().map(|set| set.to_vec()).collect();
            assert_eq!((got, got_of), (shared, set_of.to_vec()), "{groups:?}");
        }
    }

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
            "ada@example.com",
            "1 Main St, Apt 2",
            "Ada O'Brien",
            "it's a red,blue coat",
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
            "1'--",
            "1' or '1",
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
    fn the_sqli_detector_flags_no_sequence_of_bare_words_numbers_and_commas() {
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
        // Every sequence of up to 6 bare words, numbers, commas after them, commas alone
        // and words with apostrophes (`1 Main St, Apt 2`, `red , blue,,`, `O'Brien's`):
        // in every context libinjection tries, their tokens are words, numbers, strings
        // and commas, and it flags none.
        let quoted = [
            "o'brien",
            "d'angelo",
            "shop's",
            "it's",
            "rock'n'roll",
            "ma'am",
            // (The letters before a quote that make literals of MySQL and others:
            // `n'…'`, `x'41'`, `b'01'`, `e'…'`, `q'…'`.)
            "n'est",
            "x'41'",
            "b'01",
            "e'te'",
            "q'uest",
        ];
        // The fingerprints of a value in every context libinjection tries: as it is, and
        // as if a quote came before it, ANSI or MySQL (its flags: 1 << 0 no quote, 1 << 1
        // single, 1 << 2 double; 1 << 3 ANSI, 1 << 4 MySQL).
        let fingerprints = |value: &str| {
            [1 | 8, 1 | 16, 2 | 8, 2 | 16, 4 | 16].map(|flags| {
                libinjectionrs::SqliState::new(
                    value.as_bytes(),
                    libinjectionrs::SqliFlags::new(flags),
                )
                .get_fingerprint()
            })
        };
        let mut checked = 0;
        for length in 1..=6u32 {
            for kinds in 0..5usize.pow(length) {
                let mut value = String::new();
                let mut rest = kinds;
                for at in 0..length as usize {
                    let pick = kinds * 31 + at * 7;
                    let token = match rest % 5 {
                        0 => words[pick % words.len()],
                        1 => numbers[pick % numbers.len()],
                        4 => quoted[pick % quoted.len()],
                        _ => ",",
                    };
                    // A comma right after what comes before it, or apart.
                    if !value.is_empty() && rest % 5 != 2 {
                        value.push(' ');
                    }
                    value.push_str(token);
                    rest /= 5;
                }
                for value in [value.clone(), value.to_ascii_uppercase()] {
                    assert!(!could_be_sqli(value.as_bytes()), "{value}");
                    assert!(
                        !libinjectionrs::detect_sqli(value.as_bytes()).is_injection(),
                        "{value}"
                    );
                    for fingerprint in fingerprints(&value) {
                        assert!(
                            fingerprint
                                .as_str()
                                .bytes()
                                .all(|kind| b"n1s,".contains(&kind)),
                            "{value}: {fingerprint}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 2 * 19_530);
        // Every e-mail address of 1 or 2 parts before the `@` and 2 or 3 after it: the
        // skipped ones have no blacklisted fingerprint in any context. (`1.eor` reads
        // as the number `1.e` and the keyword `or`: an address beginning with a number
        // is left to the detector.)
        let parts = ["ada", "x9", "a_b", "2026", "eor", "e5div", "o", "com"];
        let mut checked = 0;
        let mut skipped = 0;
        for before in 1..=2u32 {
            for after in 2..=3u32 {
                for mut pick in 0..parts.len().pow(before + after) {
                    let mut take = |count| {
                        (0..count)
                            .map(|_| {
                                let part = parts[pick % parts.len()];
                                pick /= parts.len();
                                part
                            })
                            .collect::<Vec<_>>()
                            .join(".")
                    };
                    let address = format!("{}@{}", take(before), take(after));
                    for value in [address.clone(), address.to_ascii_uppercase()] {
                        checked += 1;
                        if could_be_sqli(value.as_bytes()) {
                            continue;
                        }
                        skipped += 1;
                        for fingerprint in fingerprints(&value) {
                            assert!(
                                !libinjectionrs::sqli::blacklist::is_blacklisted(
                                    fingerprint.as_str()
                                ),
                                "{value}: {fingerprint}"
                            );
                        }
                        assert!(
                            !libinjectionrs::detect_sqli(value.as_bytes()).is_injection(),
                            "{value}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            checked,
            2 * (8usize.pow(3) + 8usize.pow(4) * 2 + 8usize.pow(5))
        );
        assert!(skipped > checked / 2, "{skipped} of {checked}");
        // Words of the table, and parts of its phrases, are left to the detector.
        for value in [
            "red or blue",
            "group shoes",
            "shoes by size",
            "natural fit",
            "red;blue",
            "O'Brien\"s",
            "red, or blue",
            ",union",
            "ada@example",
            "union@example.com",
            "1.eor@x.com",
            "1.ehaving@x.com",
            "1.e5div@x.com",
            "dbms_pipe.receive_message@x.com",
            "sys.stragg@x.com",
            "a-b@example.com",
            "ada@@example.com",
            "ada@.com",
        ] {
            assert!(could_be_sqli(value.as_bytes()), "{value}");
        }
    }

    /// The managed rules keep the command-line chain that removes shell quotes from
    /// copying a shopper's review: its needles' rare bytes (separators) are none a review
    /// holds, so its prefix search rules the review out. (A rule whose rarest part is a
    /// common byte, such as `/` in `/bin/`, would give the chain that byte: every review
    /// would be copied and scanned again.)
    #[test]
    fn the_managed_rules_rule_a_review_out_without_copying_it() {
        let acl = crate::managed::default_acl();
        let review = "Lovely wool coat, warm and light. The sleeves are a little long for me \
            (I'm 1.60 m), but the shop's tailor fixed that. Would buy again - 5/5! "
            .repeat(4);
        let chain = acl
            .merged()
            .chains
            .iter()
            .find(|chain| chain.transforms.last() == Some(&crate::Transform::RemoveShellQuotes))
            .expect("the shell quotes' chain");
        let prefix = chain.prefix.as_ref().expect("a prefix search");
        assert!(prefix.rules_out(review.as_bytes()));
        assert!(!prefix.rules_out(format!("{review}; ls").as_bytes()));
    }

    /// libinjection flags only blacklisted fingerprints, and none of those is made only
    /// of bare words, numbers, strings and commas (what `could_be_sqli` lets by).
    #[test]
    fn no_blacklisted_fingerprint_is_made_of_words_numbers_strings_and_commas() {
        let fingerprints: Vec<&str> = libinjectionrs::sqli::sqli_data::SQL_KEYWORDS
            .iter()
            .filter(|keyword| keyword.token_type == b'F')
            .map(|keyword| keyword.word)
            .collect();
        assert!(fingerprints.len() > 8000, "{}", fingerprints.len());
        for fingerprint in fingerprints {
            // Written `0` and the types in capitals.
            let types = fingerprint.strip_prefix('0').expect("a fingerprint");
            assert!(
                !types.bytes().all(|kind| b"N1S,".contains(&kind)),
                "{fingerprint}"
            );
        }
        // The blacklist does hold fingerprints of those types and one other.
        assert!(libinjectionrs::sqli::blacklist::is_blacklisted("1SV"));
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
