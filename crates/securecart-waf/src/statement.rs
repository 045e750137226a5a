//! Statements: what a rule matches (AWS WAF's match statements, nested with AND, OR and
//! NOT). A statement that matches says where, for the log.

use ipnet::IpNet;

use crate::inspect::{Field, Inspection};
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
    /// Any of several strings in a field (one pass with Aho-Corasick).
    AnyOf {
        /// Where.
        field: Field,
        /// The strings.
        searcher: aho_corasick::AhoCorasick,
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
        })
    }

    /// Whether the statement matches the request (with the labels added so far), and
    /// where.
    pub fn evaluate(&self, inspection: &Inspection<'_>, labels: &[String]) -> Option<Evidence> {
        match self {
            Statement::ByteMatch {
                field,
                position,
                search,
                transforms,
            } => find(inspection, field, transforms, |value| {
                matches_position(value, search, *position)
            }),
            Statement::AnyOf {
                field,
                searcher,
                transforms,
            } => find(inspection, field, transforms, |value| {
                searcher.is_match(value)
            }),
            Statement::Regex {
                field,
                regex,
                transforms,
            } => find(inspection, field, transforms, |value| regex.is_match(value)),
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
            Statement::Sqli { field, transforms } => find(inspection, field, transforms, |value| {
                value.len() > 1
                    && inspection.detected(value, 0, |value| {
                        libinjectionrs::detect_sqli(value).is_injection()
                    })
            }),
            Statement::Xss { field, transforms } => find(inspection, field, transforms, |value| {
                value.len() > 2
                    && could_be_xss(value)
                    && inspection.detected(value, 1, |value| {
                        libinjectionrs::detect_xss(value).is_injection()
                    })
            }),
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
                    scope_down.evaluate(inspection, labels)?;
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
                    last = Some(statement.evaluate(inspection, labels)?);
                }
                last
            }
            Statement::Or(statements) => statements
                .iter()
                .find_map(|statement| statement.evaluate(inspection, labels)),
            Statement::Not(statement) => match statement.evaluate(inspection, labels) {
                Some(_) => None,
                None => Some(Evidence {
                    field: "not".to_owned(),
                    data: String::new(),
                }),
            },
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

/// The first value of `field` that `test` accepts after the transformations.
fn find(
    inspection: &Inspection<'_>,
    field: &Field,
    transforms: &[Transform],
    mut test: impl FnMut(&[u8]) -> bool,
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
    use super::{Statement, could_be_xss};
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
