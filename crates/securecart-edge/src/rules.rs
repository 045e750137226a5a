//! Listener rules, ALB's way: rules in priority order, each with conditions (host, path
//! pattern, HTTP header, query string, method, source IP) and one action; the first rule
//! whose every condition matches wins, else the listener's default action.
//!
//! Rules compile once into a [`RuleSet`] that does not test every rule: each rule is a bit
//! in a 128-bit set (in priority order), a byte trie over the literal prefixes of the path
//! patterns and a map of exact host names give the rules that can still match, and only
//! those are evaluated, lowest priority number first. Matching allocates nothing.
//!
//! A pure function of (rules, request head, client address): tested as tables.
//!
//! Path conditions see the path as a server resolves it ([`normalized_path`]: encodings
//! decoded, runs of `/` merged, `.` and `..` segments resolved, as nginx does before it
//! matches locations), so that `/x/../admin`, `/%61dmin` or `/x/..;/admin` matches
//! `/admin*` as the target will read it; the request goes on with its path as sent.

use std::collections::HashMap;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};
use ipnet::IpNet;

/// The most rules one listener may have (ALB's default quota is 100).
pub const MAX_RULES: usize = 128;
/// The most values one condition may list.
pub const MAX_CONDITION_VALUES: usize = 5;
/// The longest pattern.
pub const MAX_PATTERN_LENGTH: usize = 128;

/// The conditions of a rule; an empty list is no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Host header patterns (`*` and `?`; case-insensitive); any may match.
    pub host: Vec<String>,
    /// Host regular expressions (ALB's `RegexValues` for a host condition; case-insensitive,
    /// on the host without its port): with the patterns, one condition.
    pub host_regex: Vec<String>,
    /// Path patterns (`*` and `?`; case-sensitive; the query is not part of the path).
    pub path: Vec<String>,
    /// Path regular expressions (ALB's `RegexValues` for a path condition; the `regex`
    /// crate's syntax, matched anywhere in the path unless anchored with `^` and `$`): with
    /// the patterns, one condition, which any of them may satisfy.
    pub path_regex: Vec<String>,
    /// Methods (exact, case-sensitive).
    pub method: Vec<String>,
    /// Client address blocks.
    pub source_ip: Vec<IpNet>,
    /// For each header name, value patterns (case-insensitive); every header must match.
    pub headers: Vec<(String, Vec<String>)>,
    /// For each header name, value regular expressions (ALB's `RegexValues` for an HTTP
    /// header condition; case-sensitive unless `(?i)`, read as bytes): each header one
    /// condition that one of its values must satisfy.
    pub header_regex: Vec<(String, Vec<String>)>,
    /// Query parameters as (key pattern, value pattern); any pair may match. A missing
    /// key matches any key.
    pub query: Vec<(Option<String>, String)>,
}

impl Conditions {
    /// How many conditions are set.
    pub fn count(&self) -> usize {
        [
            !self.host.is_empty() || !self.host_regex.is_empty(),
            !self.path.is_empty() || !self.path_regex.is_empty(),
            !self.method.is_empty(),
            !self.source_ip.is_empty(),
            !self.query.is_empty(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
            + self.headers.len()
            + self.header_regex.len()
    }
}

/// A rule before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<A> {
    /// Its name, in logs and metrics.
    pub name: String,
    /// Lower numbers are evaluated first; unique within a listener.
    pub priority: u32,
    /// What must hold.
    pub conditions: Conditions,
    /// What to do.
    pub action: A,
}

/// Why rules cannot compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Too many rules.
    #[error("a listener has at most {MAX_RULES} rules")]
    TooManyRules,
    /// Two rules share a priority.
    #[error("rules {0} and {1} have the same priority")]
    DuplicatePriority(String, String),
    /// A rule has more conditions than ALB allows, or none.
    #[error("rule {0}: a rule has from 1 to 5 conditions")]
    ConditionCount(String),
    /// A condition lists too many or no values.
    #[error("rule {0}: a condition lists from 1 to {MAX_CONDITION_VALUES} values")]
    ValueCount(String),
    /// A pattern is empty, too long, or (for paths) does not start with `/`.
    #[error("rule {rule}: pattern `{pattern}` is not valid: {reason}")]
    Pattern {
        /// The rule.
        rule: String,
        /// The pattern.
        pattern: String,
        /// Why.
        reason: &'static str,
    },
    /// A path regular expression does not compile.
    #[error("rule {rule}: `{pattern}` is not a regular expression: {reason}")]
    Regex {
        /// The rule.
        rule: String,
        /// The expression.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A header name or method is not valid HTTP.
    #[error("rule {rule}: `{value}` is not a valid {what}")]
    Token {
        /// The rule.
        rule: String,
        /// The value.
        value: String,
        /// A header name or a method.
        what: &'static str,
    },
}

/// A `*`/`?` pattern, prepared once.
#[derive(Debug, Clone)]
struct Pattern {
    /// The pattern's bytes, lowercased when matching ignores case.
    bytes: Box<[u8]>,
    case_insensitive: bool,
}

impl Pattern {
    fn new(text: &str, case_insensitive: bool) -> Self {
        let bytes = if case_insensitive {
            text.to_ascii_lowercase().into_bytes()
        } else {
            text.as_bytes().to_vec()
        };
        Self {
            bytes: bytes.into_boxed_slice(),
            case_insensitive,
        }
    }

    fn matches(&self, text: &[u8]) -> bool {
        glob_match(&self.bytes, text, self.case_insensitive)
    }

    /// The bytes before the first wildcard.
    fn literal_prefix(&self) -> &[u8] {
        let end = self
            .bytes
            .iter()
            .position(|byte| matches!(byte, b'*' | b'?'))
            .unwrap_or(self.bytes.len());
        &self.bytes[..end]
    }

    fn is_literal(&self) -> bool {
        self.literal_prefix().len() == self.bytes.len()
    }
}

/// The longest regular expression of a condition (ALB's limit for a condition's values).
pub const MAX_EXPRESSION_LENGTH: usize = 128;

/// A rule's path regular expression, compiled: 1 to [`MAX_EXPRESSION_LENGTH`] bytes, small
/// enough to run on every request's path, and with `.` matching any character, a decoded
/// newline too (`%0A`), as `*` does in a pattern: else `^/internal/.*$` would let
/// `/internal/x%0A` by.
pub fn path_expression(rule: &str, text: &str) -> Result<regex::Regex, RuleError> {
    checked_expression(rule, text)?;
    regex::RegexBuilder::new(text)
        .dot_matches_new_line(true)
        .size_limit(EXPRESSION_SIZE_LIMIT)
        .dfa_size_limit(EXPRESSION_DFA_LIMIT)
        .build()
        .map_err(|error| expression_refused(rule, text, error.to_string()))
}

/// A rule's host regular expression, compiled as a path's, and case-insensitive, as host
/// names are.
pub fn host_expression(rule: &str, text: &str) -> Result<regex::Regex, RuleError> {
    checked_expression(rule, text)?;
    regex::RegexBuilder::new(text)
        .case_insensitive(true)
        .size_limit(EXPRESSION_SIZE_LIMIT)
        .dfa_size_limit(EXPRESSION_DFA_LIMIT)
        .build()
        .map_err(|error| expression_refused(rule, text, error.to_string()))
}

/// A rule's header value regular expression, compiled as a path's, over a value's bytes,
/// which need not be UTF-8: without Unicode, so that `.` and `[^...]` match any byte
/// (else one byte that is not UTF-8 would hide `sqlmap` from `^.*sqlmap`), `(?i)`
/// folding ASCII letters.
pub fn header_expression(rule: &str, text: &str) -> Result<regex::bytes::Regex, RuleError> {
    checked_expression(rule, text)?;
    regex::bytes::RegexBuilder::new(text)
        .unicode(false)
        .dot_matches_new_line(true)
        .size_limit(EXPRESSION_SIZE_LIMIT)
        .dfa_size_limit(EXPRESSION_DFA_LIMIT)
        .build()
        .map_err(|error| expression_refused(rule, text, error.to_string()))
}

/// The compiled size a condition's expression may reach: small, as it may run on every
/// request.
const EXPRESSION_SIZE_LIMIT: usize = 64 * 1024;
/// The lazy DFA's cache of one condition's expression.
const EXPRESSION_DFA_LIMIT: usize = 256 * 1024;

fn checked_expression(rule: &str, text: &str) -> Result<(), RuleError> {
    if text.is_empty() || text.len() > MAX_EXPRESSION_LENGTH {
        return Err(expression_refused(
            rule,
            text,
            format!("an expression is 1 to {MAX_EXPRESSION_LENGTH} bytes"),
        ));
    }
    Ok(())
}

fn expression_refused(rule: &str, text: &str, reason: String) -> RuleError {
    RuleError::Regex {
        rule: rule.to_owned(),
        pattern: text.to_owned(),
        reason,
    }
}

/// Matches `text` against a pattern where `*` is any run of bytes (also none) and `?` is
/// one byte. Linear in practice: on a mismatch it backtracks only to the last `*`.
pub fn glob_match(pattern: &[u8], text: &[u8], case_insensitive: bool) -> bool {
    let equal =
        |p: u8, t: u8| p == b'?' || p == t || (case_insensitive && p == t.to_ascii_lowercase());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && equal(pattern[p], text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|byte| *byte == b'*')
}

#[derive(Debug, Clone)]
struct CompiledRule {
    host: Vec<Pattern>,
    host_regex: Vec<regex::Regex>,
    path: Vec<Pattern>,
    path_regex: Vec<regex::Regex>,
    method: Vec<Method>,
    source_ip: Vec<IpNet>,
    headers: Vec<(HeaderName, Vec<Pattern>)>,
    header_regex: Vec<(HeaderName, Vec<regex::bytes::Regex>)>,
    query: Vec<(Option<Pattern>, Pattern)>,
}

/// What a request looks like to the rules.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The host, without a port.
    pub host: &'a str,
    /// The path.
    pub path: &'a str,
    /// The raw query, without `?`.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client: IpAddr,
}

/// One node of the byte trie over literal path prefixes.
#[derive(Debug, Clone, Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    /// Rules whose literal path prefix ends here.
    rules: u128,
}

/// Rules compiled for matching.
#[derive(Debug, Clone)]
pub struct RuleSet<A> {
    rules: Vec<CompiledRule>,
    names: Vec<String>,
    actions: Vec<A>,
    default_action: A,
    /// Rules without a path condition.
    any_path: u128,
    trie: Vec<TrieNode>,
    /// Rules without a host condition, or with a wildcard host pattern.
    any_host: u128,
    /// Rules by exact (lowercase) host.
    exact_hosts: HashMap<Box<str>, u128>,
}

/// The outcome of matching: the rule that matched (by name) or the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'r, A> {
    /// The rule's name, or `default`.
    pub rule: &'r str,
    /// The action to take.
    pub action: &'r A,
}

fn check_values(rule: &str, count: usize) -> Result<(), RuleError> {
    if count > MAX_CONDITION_VALUES {
        return Err(RuleError::ValueCount(rule.to_owned()));
    }
    Ok(())
}

fn pattern(
    rule: &str,
    text: &str,
    case_insensitive: bool,
    is_path: bool,
) -> Result<Pattern, RuleError> {
    let reason = if text.is_empty() {
        Some("it is empty")
    } else if text.len() > MAX_PATTERN_LENGTH {
        Some("it is longer than 128 characters")
    } else if is_path && !text.starts_with('/') && !text.starts_with('*') {
        Some("a path pattern starts with `/`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RuleError::Pattern {
            rule: rule.to_owned(),
            pattern: text.to_owned(),
            reason,
        }),
        None => Ok(Pattern::new(text, case_insensitive)),
    }
}

impl<A> RuleSet<A> {
    /// Compiles rules (in any order) and the default action.
    pub fn new(rules: Vec<Rule<A>>, default_action: A) -> Result<Self, RuleError> {
        if rules.len() > MAX_RULES {
            return Err(RuleError::TooManyRules);
        }
        let mut rules = rules;
        rules.sort_by_key(|rule| rule.priority);
        for pair in rules.windows(2) {
            if pair[0].priority == pair[1].priority {
                return Err(RuleError::DuplicatePriority(
                    pair[0].name.clone(),
                    pair[1].name.clone(),
                ));
            }
        }
        let mut set = RuleSet {
            rules: Vec::with_capacity(rules.len()),
            names: Vec::with_capacity(rules.len()),
            actions: Vec::with_capacity(rules.len()),
            default_action,
            any_path: 0,
            trie: vec![TrieNode::default()],
            any_host: 0,
            exact_hosts: HashMap::new(),
        };
        for (index, rule) in rules.into_iter().enumerate() {
            let bit = 1u128 << index;
            let name = rule.name.as_str();
            let conditions = &rule.conditions;
            if !(1..=5).contains(&conditions.count()) {
                return Err(RuleError::ConditionCount(rule.name));
            }
            for count in [
                conditions.host.len() + conditions.host_regex.len(),
                conditions.path.len() + conditions.path_regex.len(),
                conditions.method.len(),
                conditions.source_ip.len(),
                conditions.query.len(),
            ] {
                check_values(name, count)?;
            }
            let host = conditions
                .host
                .iter()
                .map(|text| pattern(name, text, true, false))
                .collect::<Result<Vec<_>, _>>()?;
            let host_regex = conditions
                .host_regex
                .iter()
                .map(|text| host_expression(name, text))
                .collect::<Result<Vec<_>, _>>()?;
            let path = conditions
                .path
                .iter()
                .map(|text| pattern(name, text, false, true))
                .collect::<Result<Vec<_>, _>>()?;
            let path_regex = conditions
                .path_regex
                .iter()
                .map(|text| path_expression(name, text))
                .collect::<Result<Vec<_>, _>>()?;
            let method = conditions
                .method
                .iter()
                .map(|text| {
                    Method::from_bytes(text.as_bytes()).map_err(|_| RuleError::Token {
                        rule: name.to_owned(),
                        value: text.clone(),
                        what: "method",
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let header_name = |header: &String, values: &[String]| {
                if values.is_empty() {
                    return Err(RuleError::ValueCount(name.to_owned()));
                }
                check_values(name, values.len())?;
                HeaderName::from_bytes(header.as_bytes()).map_err(|_| RuleError::Token {
                    rule: name.to_owned(),
                    value: header.clone(),
                    what: "header name",
                })
            };
            let mut headers = Vec::with_capacity(conditions.headers.len());
            for (header, values) in &conditions.headers {
                let header_name = header_name(header, values)?;
                let patterns = values
                    .iter()
                    .map(|text| pattern(name, text, true, false))
                    .collect::<Result<Vec<_>, _>>()?;
                headers.push((header_name, patterns));
            }
            let mut header_regex = Vec::with_capacity(conditions.header_regex.len());
            for (header, values) in &conditions.header_regex {
                let header_name = header_name(header, values)?;
                let expressions = values
                    .iter()
                    .map(|text| header_expression(name, text))
                    .collect::<Result<Vec<_>, _>>()?;
                header_regex.push((header_name, expressions));
            }
            let query = conditions
                .query
                .iter()
                .map(|(key, value)| {
                    let key = key
                        .as_deref()
                        .map(|key| pattern(name, key, true, false))
                        .transpose()?;
                    Ok((key, pattern(name, value, true, false)?))
                })
                .collect::<Result<Vec<_>, RuleError>>()?;

            // An expression has no prefix to index: its rule is a candidate for any path.
            if path.is_empty() || !path_regex.is_empty() {
                set.any_path |= bit;
            } else {
                for pattern in &path {
                    set.insert_prefix(pattern.literal_prefix(), bit);
                }
            }
            if host.is_empty()
                || !host_regex.is_empty()
                || host.iter().any(|pattern| !pattern.is_literal())
            {
                set.any_host |= bit;
            }
            for pattern in host.iter().filter(|pattern| pattern.is_literal()) {
                let key = String::from_utf8_lossy(&pattern.bytes)
                    .into_owned()
                    .into_boxed_str();
                *set.exact_hosts.entry(key).or_insert(0) |= bit;
            }
            set.rules.push(CompiledRule {
                host,
                host_regex,
                path,
                path_regex,
                method,
                source_ip: conditions.source_ip.clone(),
                headers,
                header_regex,
                query,
            });
            set.names.push(rule.name);
            set.actions.push(rule.action);
        }
        Ok(set)
    }

    fn insert_prefix(&mut self, prefix: &[u8], bit: u128) {
        let mut node = 0usize;
        for byte in prefix {
            let existing = self.trie[node]
                .children
                .iter()
                .find(|(child_byte, _)| child_byte == byte)
                .map(|(_, child)| *child as usize);
            node = match existing {
                Some(child) => child,
                None => {
                    self.trie.push(TrieNode::default());
                    let child = self.trie.len() - 1;
                    self.trie[node].children.push((*byte, child as u32));
                    child
                }
            };
        }
        self.trie[node].rules |= bit;
    }

    /// Rules whose literal path prefix is a prefix of `path`.
    fn path_candidates(&self, path: &[u8]) -> u128 {
        let mut found = self.trie[0].rules;
        let mut node = 0usize;
        for byte in path {
            match self.trie[node]
                .children
                .iter()
                .find(|(child_byte, _)| child_byte == byte)
            {
                Some((_, child)) => {
                    node = *child as usize;
                    found |= self.trie[node].rules;
                }
                None => break,
            }
        }
        found
    }

    fn host_candidates(&self, host: &str) -> u128 {
        let exact = if host.bytes().any(|byte| byte.is_ascii_uppercase()) {
            self.exact_hosts.get(host.to_ascii_lowercase().as_str())
        } else {
            self.exact_hosts.get(host)
        };
        self.any_host | exact.copied().unwrap_or(0)
    }

    /// The action for a request: the first rule (by priority) whose conditions all hold.
    pub fn find(&self, request: &RequestHead<'_>) -> Matched<'_, A> {
        let mut candidates = (self.any_path | self.path_candidates(request.path.as_bytes()))
            & self.host_candidates(request.host);
        while candidates != 0 {
            let index = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if self.rules[index].matches(request) {
                return Matched {
                    rule: &self.names[index],
                    action: &self.actions[index],
                };
            }
        }
        Matched {
            rule: "default",
            action: &self.default_action,
        }
    }

    /// Every action, the default last: for resolving what they name once.
    pub fn actions(&self) -> impl Iterator<Item = &A> {
        self.actions
            .iter()
            .chain(std::iter::once(&self.default_action))
    }
}

impl CompiledRule {
    fn matches(&self, request: &RequestHead<'_>) -> bool {
        // The path's patterns and expressions are one condition: any of them may hold
        // (read only once the host holds; the expressions cost most).
        let path = || {
            (self.path.is_empty() && self.path_regex.is_empty())
                || self.path.iter().any(|p| p.matches(request.path.as_bytes()))
                || self
                    .path_regex
                    .iter()
                    .any(|regex| regex.is_match(request.path))
        };
        // The host's patterns and expressions, too, are one condition.
        let host = (self.host.is_empty() && self.host_regex.is_empty())
            || self.host.iter().any(|p| p.matches(request.host.as_bytes()))
            || self
                .host_regex
                .iter()
                .any(|regex| regex.is_match(request.host));
        host && path()
            && (self.method.is_empty() || self.method.contains(request.method))
            && (self.source_ip.is_empty() || {
                let client = request.client.to_canonical();
                self.source_ip.iter().any(|net| net.contains(&client))
            })
            && self.headers.iter().all(|(name, patterns)| {
                request.headers.get_all(name).iter().any(|value| {
                    patterns
                        .iter()
                        .any(|pattern| pattern.matches(value.as_bytes()))
                })
            })
            && self.header_regex.iter().all(|(name, expressions)| {
                request.headers.get_all(name).iter().any(|value| {
                    expressions
                        .iter()
                        .any(|regex| regex.is_match(value.as_bytes()))
                })
            })
            && (self.query.is_empty() || self.query_matches(request.query.unwrap_or("")))
    }

    fn query_matches(&self, query: &str) -> bool {
        form_urlencoded::parse(query.as_bytes()).any(|(key, value)| {
            self.query.iter().any(|(key_pattern, value_pattern)| {
                key_pattern
                    .as_ref()
                    .is_none_or(|pattern| pattern.matches(key.as_bytes()))
                    && value_pattern.matches(value.as_bytes())
            })
        })
    }
}

/// `path` as servers resolve it, for path conditions: percent-encodings decoded (`%2F`
/// too, as nginx decodes before matching locations), runs of `/` merged into one, and `.`
/// and `..` segments removed (RFC 3986 section 5.2.4; `..` stops at the root), a
/// segment's `;` parameters ignored in telling them (`..;`, which Java servers read as
/// `..`). A path with none of `%`, `//` or `/.` is returned as it is.
pub fn normalized_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') && !path.contains("//") && !path.contains("/.") {
        return std::borrow::Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let hex = |byte: u8| (byte as char).to_digit(16);
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(at + 1).copied().and_then(hex),
                bytes.get(at + 2).copied().and_then(hex),
            )
        {
            decoded.push((high * 16 + low) as u8);
            at += 3;
            continue;
        }
        decoded.push(bytes[at]);
        at += 1;
    }
    // (Decoded bytes that are not UTF-8 match as replacement characters.)
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    let mut last = "";
    for segment in decoded.split('/') {
        let bare = segment.split(';').next().unwrap_or(segment);
        match bare {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
        last = bare;
    }
    let mut normalized = String::with_capacity(decoded.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    // A path that ends as a directory (`/`, `/.`, `/..`) still does.
    if normalized.is_empty() || matches!(last, "" | "." | "..") {
        normalized.push('/');
    }
    std::borrow::Cow::Owned(normalized)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http::{HeaderMap, HeaderValue, Method};

    use super::{Conditions, RequestHead, Rule, RuleError, RuleSet, glob_match};

    #[test]
    fn wildcards_match_like_alb() {
        let cases = [
            ("/api/*", "/api/", true),
            ("/api/*", "/api/catalog/products", true),
            ("/api/*", "/api", false),
            ("/img/?.png", "/img/a.png", true),
            ("/img/?.png", "/img/ab.png", false),
            ("*.example.com", "shop.example.com", true),
            ("*.example.com", "example.com", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*", "", true),
            ("", "", true),
            ("**a", "bba", true),
            ("/exact", "/exact", true),
            ("/exact", "/exact/", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes(), false),
                expected,
                "{pattern} ~ {text}"
            );
        }
        assert!(glob_match(b"shop.example.com", b"SHOP.Example.com", true));
        assert!(
            !glob_match(b"/API/*", b"/api/x", false),
            "paths are case-sensitive"
        );
    }

    #[test]
    fn paths_are_matched_as_servers_resolve_them() {
        for (path, normalized) in [
            ("/admin/panel", "/admin/panel"),
            ("/", "/"),
            ("/x/../admin/panel", "/admin/panel"),
            ("/./admin/./panel", "/admin/panel"),
            ("//admin///panel", "/admin/panel"),
            ("/%61dmin/panel", "/admin/panel"),
            ("/%2e%2e/admin", "/admin"),
            ("/a/%2E%2E/admin/", "/admin/"),
            ("/../../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            // Every encoding is decoded, `%2F` too, as nginx does before matching.
            ("/admin%2Fpanel", "/admin/panel"),
            ("/a%2f..%2fadmin", "/admin"),
            ("/caf%C3%A9/..", "/"),
            ("/caf%C3%A9", "/café"),
            // `..;` is `..` to Java servers.
            ("/x/..;/admin", "/admin"),
            ("/x;v=1/y", "/x;v=1/y"),
            ("/100%", "/100%"),
            ("/.well-known/x", "/.well-known/x"),
        ] {
            assert_eq!(super::normalized_path(path), normalized, "{path}");
        }
    }

    fn rule(name: &str, priority: u32, conditions: Conditions) -> Rule<String> {
        Rule {
            name: name.to_owned(),
            priority,
            conditions,
            action: name.to_owned(),
        }
    }

    fn request<'a>(
        method: &'a Method,
        host: &'a str,
        target: &'a str,
        headers: &'a HeaderMap,
        client: &str,
    ) -> RequestHead<'a> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        RequestHead {
            method,
            host,
            path,
            query,
            headers,
            client: client.parse::<IpAddr>().expect("ip"),
        }
    }

    #[test]
    fn the_first_matching_rule_by_priority_wins() {
        let set = RuleSet::new(
            vec![
                rule(
                    "catch-all-api",
                    50,
                    Conditions {
                        path: vec!["/api/*".into()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "catalog",
                    10,
                    Conditions {
                        path: vec!["/api/catalog/*".into(), "/images/*".into()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "beta",
                    5,
                    Conditions {
                        path: vec!["/api/*".into()],
                        headers: vec![("x-channel".into(), vec!["beta*".into()])],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "admin-host",
                    20,
                    Conditions {
                        host: vec!["admin.shop.example".into()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "wild-host",
                    30,
                    Conditions {
                        host: vec!["*.eu.shop.example".into()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "writes",
                    40,
                    Conditions {
                        method: vec!["POST".into(), "PUT".into()],
                        path: vec!["/api/cart*".into()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "office",
                    45,
                    Conditions {
                        source_ip: vec![
                            "10.0.0.0/8".parse().expect("net"),
                            "2001:db8::/32".parse().expect("net"),
                        ],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "v2",
                    46,
                    Conditions {
                        query: vec![
                            (Some("version".into()), "2".into()),
                            (None, "preview".into()),
                        ],
                        ..Conditions::default()
                    },
                ),
            ],
            "default".to_owned(),
        )
        .expect("compiles");
        let mut beta = HeaderMap::new();
        beta.insert("x-channel", HeaderValue::from_static("BETA-2"));
        let none = HeaderMap::new();
        let get = Method::GET;
        let post = Method::POST;
        // (method, host, target, headers, client, expected rule)
        let cases: Vec<(&Method, &str, &str, &HeaderMap, &str, &str)> = vec![
            (
                &get,
                "shop.example",
                "/api/catalog/products",
                &none,
                "127.0.0.1",
                "catalog",
            ),
            (
                &get,
                "shop.example",
                "/images/products/1.svg",
                &none,
                "127.0.0.1",
                "catalog",
            ),
            (
                &get,
                "shop.example",
                "/api/catalog/products",
                &beta,
                "127.0.0.1",
                "beta",
            ),
            (
                &get,
                "shop.example",
                "/api/orders/1",
                &none,
                "127.0.0.1",
                "catch-all-api",
            ),
            (
                &get,
                "ADMIN.shop.example",
                "/",
                &none,
                "127.0.0.1",
                "admin-host",
            ),
            (
                &get,
                "fr.eu.shop.example",
                "/",
                &none,
                "127.0.0.1",
                "wild-host",
            ),
            (
                &post,
                "shop.example",
                "/api/cart/items",
                &none,
                "127.0.0.1",
                "writes",
            ),
            (
                &get,
                "shop.example",
                "/api/cart/items",
                &none,
                "127.0.0.1",
                "catch-all-api",
            ),
            (&get, "shop.example", "/", &none, "10.1.2.3", "office"),
            (
                &get,
                "shop.example",
                "/",
                &none,
                "::ffff:10.1.2.3",
                "office",
            ),
            (&get, "shop.example", "/", &none, "2001:db8::7", "office"),
            (
                &get,
                "shop.example",
                "/?version=2",
                &none,
                "127.0.0.1",
                "v2",
            ),
            (
                &get,
                "shop.example",
                "/?a=1&mode=PREVIEW",
                &none,
                "127.0.0.1",
                "v2",
            ),
            (
                &get,
                "shop.example",
                "/?version=%32",
                &none,
                "127.0.0.1",
                "v2",
            ),
            (
                &get,
                "shop.example",
                "/?version=3",
                &none,
                "127.0.0.1",
                "default",
            ),
            (&get, "shop.example", "/", &none, "127.0.0.1", "default"),
            (
                &get,
                "shop.example",
                "/API/catalog/x",
                &none,
                "127.0.0.1",
                "default",
            ),
        ];
        for (method, host, target, headers, client, expected) in cases {
            let matched = set.find(&request(method, host, target, headers, client));
            assert_eq!(
                matched.rule, expected,
                "{method} {host}{target} from {client}"
            );
            assert_eq!(matched.action, expected);
        }
    }

    /// Path regular expressions (ALB's regex values): one condition with the patterns,
    /// matched on the path as resolved, indexed nowhere (their rules are candidates for any
    /// path) but still in priority order.
    #[test]
    fn path_expressions_match_like_patterns() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let set = RuleSet::new(
            vec![
                rule(
                    "versioned",
                    10,
                    Conditions {
                        path_regex: vec![r"^/api/v[0-9]+/orders/[0-9]+$".to_owned()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "images",
                    20,
                    Conditions {
                        path: vec!["/images/*".to_owned()],
                        path_regex: vec![r"\.(png|jpe?g|webp)$".to_owned()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "api",
                    30,
                    Conditions {
                        path: vec!["/api/*".to_owned()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "internal",
                    40,
                    Conditions {
                        path_regex: vec!["^/internal/.*$".to_owned()],
                        ..Conditions::default()
                    },
                ),
            ],
            "default".to_owned(),
        )
        .expect("rules");
        for (target, expected) in [
            ("/api/v2/orders/42", "versioned"),
            ("/api/v2/orders/42/items", "api"),
            ("/api/vx/orders/42", "api"),
            ("/images/a.txt", "images"),
            ("/static/logo.png", "images"),
            ("/static/logo.png.txt", "default"),
            ("/other", "default"),
            // A decoded `%0A` at the end is part of the path, and `.` reads it.
            ("/api/v2/orders/42\n", "api"),
            ("/internal/x\n", "internal"),
        ] {
            let matched = set.find(&request(&get, "shop.example", target, &none, "127.0.0.1"));
            assert_eq!(matched.rule, expected, "{target}");
        }
        let broken = RuleSet::new(
            vec![rule(
                "broken",
                1,
                Conditions {
                    path_regex: vec!["(".to_owned()],
                    ..Conditions::default()
                },
            )],
            String::new(),
        );
        assert!(
            matches!(broken.err(), Some(RuleError::Regex { ref pattern, .. }) if pattern == "("),
            "an expression that does not compile"
        );
        for refused in ["", &"a".repeat(129), "x{1000}{1000}"] {
            assert!(super::path_expression("r", refused).is_err(), "{refused}");
            assert!(super::host_expression("r", refused).is_err(), "{refused}");
            assert!(super::header_expression("r", refused).is_err(), "{refused}");
        }
    }

    /// Host and header regular expressions (ALB's regex values): a host's, one condition
    /// with its patterns and case-insensitive, whose rules the exact-host index cannot
    /// rule out; a header's, a condition of its own per header, read as bytes and
    /// case-sensitive unless `(?i)`.
    #[test]
    fn host_and_header_expressions_match_like_patterns() {
        let get = Method::GET;
        let set = RuleSet::new(
            vec![
                rule(
                    "tenant",
                    10,
                    Conditions {
                        host: vec!["shop.example".to_owned()],
                        host_regex: vec![r"^[a-z]+\.shop\.example$".to_owned()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "scripted",
                    20,
                    Conditions {
                        header_regex: vec![(
                            "user-agent".to_owned(),
                            vec!["(?i)^curl/".to_owned(), r"^python-requests/\d".to_owned()],
                        )],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "scanner",
                    25,
                    Conditions {
                        header_regex: vec![("x-scan".to_owned(), vec!["^.*sqlmap".to_owned()])],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "both",
                    30,
                    Conditions {
                        headers: vec![("x-canary".to_owned(), vec!["yes".to_owned()])],
                        header_regex: vec![("x-canary".to_owned(), vec!["^[a-z]+$".to_owned()])],
                        ..Conditions::default()
                    },
                ),
            ],
            "default".to_owned(),
        )
        .expect("rules");
        let headers = |pairs: &[(&str, &[u8])]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    http::HeaderValue::from_bytes(value).expect("value"),
                );
            }
            headers
        };
        for (host, pairs, expected) in [
            ("shop.example", &[][..], "tenant"),
            ("EU.Shop.Example", &[], "tenant"),
            ("eu.shop.example.evil", &[], "default"),
            ("eu1.shop.example", &[], "default"),
            (
                "other.example",
                &[("user-agent", &b"CURL/8.5"[..])],
                "scripted",
            ),
            (
                "other.example",
                &[("user-agent", b"python-requests/2.31")],
                "scripted",
            ),
            (
                "other.example",
                &[("user-agent", b"Python-requests/2.31")],
                "default",
            ),
            // Any value of a header repeated may match; bytes that are not UTF-8 are read.
            (
                "other.example",
                &[("user-agent", b"Mozilla\xff"), ("user-agent", b"curl/8")],
                "scripted",
            ),
            ("other.example", &[("x-scan", b"\xffsqlmap")], "scanner"),
            ("other.example", &[("x-scan", b"sql map")], "default"),
            // Both of the header's conditions must hold, the pattern's and the expression's.
            ("other.example", &[("x-canary", b"yes")], "both"),
            ("other.example", &[("x-canary", b"YES")], "default"),
        ] {
            let headers = headers(pairs);
            let matched = set.find(&request(&get, host, "/", &headers, "127.0.0.1"));
            assert_eq!(matched.rule, expected, "{host} {pairs:?}");
        }
    }

    #[test]
    fn invalid_rules_do_not_compile() {
        let path = |pattern: &str| Conditions {
            path: vec![pattern.to_owned()],
            ..Conditions::default()
        };
        let cases = vec![
            (
                vec![rule("a", 1, path("/a")), rule("b", 1, path("/b"))],
                RuleError::DuplicatePriority("a".into(), "b".into()),
            ),
            (
                vec![rule("a", 1, Conditions::default())],
                RuleError::ConditionCount("a".into()),
            ),
            (
                vec![rule("a", 1, path("api"))],
                RuleError::Pattern {
                    rule: "a".into(),
                    pattern: "api".into(),
                    reason: "a path pattern starts with `/`",
                },
            ),
            (
                vec![rule(
                    "a",
                    1,
                    Conditions {
                        method: vec!["G ET".into()],
                        ..Conditions::default()
                    },
                )],
                RuleError::Token {
                    rule: "a".into(),
                    value: "G ET".into(),
                    what: "method",
                },
            ),
            (
                vec![rule(
                    "a",
                    1,
                    Conditions {
                        path: vec![
                            "/1".into(),
                            "/2".into(),
                            "/3".into(),
                            "/4".into(),
                            "/5".into(),
                            "/6".into(),
                        ],
                        ..Conditions::default()
                    },
                )],
                RuleError::ValueCount("a".into()),
            ),
        ];
        for (rules, expected) in cases {
            assert_eq!(RuleSet::new(rules, String::new()).err(), Some(expected));
        }
        let too_many: Vec<_> = (0..129)
            .map(|index| rule(&format!("r{index}"), index, path("/x")))
            .collect();
        assert_eq!(
            RuleSet::new(too_many, String::new()).err(),
            Some(RuleError::TooManyRules)
        );
    }

    #[test]
    fn a_full_listener_of_rules_only_evaluates_candidates() {
        // 128 rules on distinct prefixes: the one that matches is found, whatever its rank.
        let rules: Vec<_> = (0..128)
            .map(|index| {
                rule(
                    &format!("r{index}"),
                    index,
                    Conditions {
                        path: vec![format!("/p{index}/*")],
                        ..Conditions::default()
                    },
                )
            })
            .collect();
        let set = RuleSet::new(rules, "default".to_owned()).expect("compiles");
        let headers = HeaderMap::new();
        for index in [0, 1, 64, 127] {
            let target = format!("/p{index}/x");
            assert_eq!(
                set.find(&request(&Method::GET, "h", &target, &headers, "127.0.0.1"))
                    .rule,
                format!("r{index}")
            );
        }
        assert_eq!(
            set.find(&request(
                &Method::GET,
                "h",
                "/p128/x",
                &headers,
                "127.0.0.1"
            ))
            .rule,
            "default"
        );
    }
}
