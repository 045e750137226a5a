//! The operator's own web ACL rules (`[[edge.waf.rules]]`), checked and compiled into the
//! WAF's rules: fields, transformations, networks, countries, expressions and rate limits
//! are read with the WAF's own names, so that a file and the engine cannot disagree, and
//! every problem names its place in the file.

use std::sync::Arc;
use std::time::Duration;

use securecart_waf::rate::{AggregateKey, RateLimit, WINDOWS};
use securecart_waf::statement::{Comparison, Position};
use securecart_waf::{
    BlockResponse, Field, ForwardedIp, IpPosition, Rule, RuleAction, Statement, Transform,
};

use crate::locate::FieldPath;
use crate::model::Findings;
use crate::raw::{RawBlockResponse, RawStatement, RawWafRule};

/// The most rules of the operator's own.
pub const MAX_WAF_RULES: usize = 100;

/// How deep `and`, `or` and `not` may nest.
const MAX_DEPTH: usize = 5;

/// The most statements the operator's rules hold together.
const MAX_STATEMENTS: usize = 500;

/// How many statements `raw` holds (counting stops past the nesting limit, which is an
/// error of its own).
pub(crate) fn count(raw: &RawStatement, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return 1;
    }
    1 + match raw {
        RawStatement::And(list) | RawStatement::Or(list) => {
            list.iter().map(|inner| count(inner, depth + 1)).sum()
        }
        RawStatement::Not(inner) => count(inner, depth + 1),
        RawStatement::RateBased(rate) => rate
            .scope_down
            .as_ref()
            .map_or(0, |inner| count(inner, depth + 1)),
        _ => 0,
    }
}

/// The most transformations one statement applies (AWS WAF's limit).
const MAX_TRANSFORMS: usize = 10;

/// Checks and compiles the operator's rules, a challenge rule without an immunity time of
/// its own taking `acl_immunity`; problems go to `findings`, and a rule with one is left
/// out.
pub(crate) fn resolve_rules(
    raw: &[RawWafRule],
    acl_immunity: u32,
    path: &FieldPath,
    findings: &mut Findings,
) -> Vec<Rule> {
    if raw.len() > MAX_WAF_RULES {
        findings.problem(path.clone(), format!("at most {MAX_WAF_RULES} rules"));
    }
    // Each request runs every statement: their number is bounded as AWS WAF's capacity
    // units bound a web ACL.
    let statements: usize = raw.iter().map(|rule| count(&rule.statement, 0)).sum();
    if statements > MAX_STATEMENTS {
        findings.problem(
            path.clone(),
            format!("the rules hold {statements} statements; at most {MAX_STATEMENTS}"),
        );
    }
    let mut rules = Vec::with_capacity(raw.len());
    for (index, rule) in raw.iter().enumerate() {
        let at = path.index(index);
        let before = findings.problems.len();
        crate::model::check_name(
            findings,
            &at.key("name"),
            &rule.name,
            "rule",
            raw[..index].iter().map(|earlier| earlier.name.as_str()),
        );
        if ["default", "oversize"].contains(&rule.name.as_str()) {
            findings.problem(
                at.key("name"),
                format!(
                    "`{}` names the web ACL's own verdicts in logs and metrics: choose another",
                    rule.name
                ),
            );
        }
        if rule.priority > 999 {
            findings.problem(at.key("priority"), "must be from 0 to 999");
        } else if raw[..index]
            .iter()
            .any(|earlier| earlier.priority == rule.priority)
        {
            findings.problem(
                at.key("priority"),
                format!("another rule already has priority {}", rule.priority),
            );
        }
        let action = match rule.action.as_str() {
            "allow" => RuleAction::Allow,
            "block" => RuleAction::Block,
            "count" => RuleAction::Count,
            "challenge" => RuleAction::Challenge(immunity(
                rule.immunity_seconds,
                acl_immunity,
                &at.key("immunity_seconds"),
                findings,
            )),
            other => {
                findings.problem(
                    at.key("action"),
                    format!("`{other}` is not `allow`, `block`, `count` or `challenge`"),
                );
                RuleAction::Count
            }
        };
        if rule.immunity_seconds.is_some() && rule.action != "challenge" {
            findings.problem(
                at.key("immunity_seconds"),
                "only a rule whose action is `challenge` has an immunity time",
            );
        }
        let response = match &rule.block_response {
            Some(_) if action != RuleAction::Block => {
                findings.problem(
                    at.key("block_response"),
                    "only a rule whose action is `block` answers",
                );
                None
            }
            Some(response) => block_response(response, &at.key("block_response"), findings),
            None => None,
        };
        for (label_index, label) in rule.labels.iter().enumerate() {
            if label.is_empty()
                || label.len() > 128
                || label.chars().any(char::is_whitespace)
                || label.ends_with(':')
            {
                findings.problem(
                    at.key("labels").index(label_index),
                    "a label is 1 to 128 characters without spaces, not ending with `:` (a namespace)",
                );
            }
        }
        let statement = statement(&rule.statement, &at.key("statement"), 0, findings);
        if findings.problems.len() > before {
            continue;
        }
        if let Some(statement) = statement {
            rules.push(Rule {
                id: rule.name.clone(),
                priority: rule.priority,
                statement,
                action,
                labels: rule.labels.clone(),
                response: response.map(Arc::new),
                // The operator's rules act by their action, also in an ACL that scores.
                score: 0,
            });
        }
    }
    rules
}

/// An immunity time (`at`), checked: AWS WAF's bounds, 60 s to three days; `otherwise`
/// where none is given.
pub(crate) fn immunity(
    seconds: Option<u32>,
    otherwise: u32,
    at: &FieldPath,
    findings: &mut Findings,
) -> u32 {
    let Some(seconds) = seconds else {
        return otherwise;
    };
    if !(60..=259_200).contains(&seconds) {
        findings.problem(at.clone(), "must be from 60 to 259200 (three days)");
    }
    seconds
}

/// The headers each `allow` or `count` rule adds to the requests it lets through, by its
/// name (only the rules that add some), checked.
pub(crate) fn resolve_insert_headers(
    raw: &[RawWafRule],
    path: &FieldPath,
    findings: &mut Findings,
) -> Vec<(String, Vec<(String, String)>)> {
    let mut inserted = Vec::new();
    for (index, rule) in raw.iter().enumerate() {
        if rule.insert_headers.is_empty() {
            continue;
        }
        let at = path.index(index).key("insert_headers");
        if rule.action == "block" {
            findings.problem(
                at,
                "only a rule whose action is `allow` or `count` adds headers",
            );
            continue;
        }
        if let Some(headers) = insert_headers(&rule.insert_headers, &at, findings) {
            inserted.push((rule.name.clone(), headers));
        }
    }
    inserted
}

/// Headers a web ACL adds, checked: names the edge prefixes, values of one line.
pub(crate) fn insert_headers(
    raw: &std::collections::BTreeMap<String, String>,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let lower = name.to_ascii_lowercase();
        // Letters, digits and `-`, as every proxy and application takes (ALB's
        // `drop_invalid_header_fields` would drop others).
        let valid = !lower.is_empty()
            && lower
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        if !valid {
            findings.problem(
                at.key(name),
                format!("`{name}` is not a header name of letters, digits and `-`"),
            );
        } else if headers
            .iter()
            .any(|(taken, _): &(String, String)| *taken == lower)
        {
            findings.problem(
                at.key(name),
                format!("`{name}` is set twice (header names are case-insensitive)"),
            );
        } else if !value.is_ascii() || http::HeaderValue::from_str(value).is_err() {
            findings.problem(
                at.key(name),
                "is not a header value (visible ASCII and spaces, on one line)",
            );
        } else {
            headers.push((lower, value.clone()));
        }
    }
    (headers.len() == raw.len()).then_some(headers)
}

pub(crate) fn block_response(
    raw: &RawBlockResponse,
    path: &FieldPath,
    findings: &mut Findings,
) -> Option<BlockResponse> {
    if !(400..=599).contains(&raw.status) {
        findings.problem(path.key("status"), "must be from 400 to 599");
    }
    for (name, value) in &raw.headers {
        // Headers that frame the answer or belong to the connection are the edge's own.
        const FRAMING: [&str; 9] = [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "te",
            "trailer",
            "proxy-connection",
            "content-type",
        ];
        if FRAMING.contains(&name.to_ascii_lowercase().as_str()) {
            findings.problem(
                path.key("headers").key(name),
                format!("`{name}` is set by the edge (use content_type for the body's type)"),
            );
        } else if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            findings.problem(
                path.key("headers").key(name),
                format!("`{name}` is not a header name"),
            );
        } else if http::HeaderValue::from_str(value).is_err() {
            findings.problem(
                path.key("headers").key(name),
                "is not a header value (printable ASCII)",
            );
        }
    }
    let body = match (&raw.content_type, &raw.body) {
        (Some(content_type), Some(body)) => {
            if http::HeaderValue::from_str(content_type).is_err() {
                findings.problem(path.key("content_type"), "is not a header value");
            }
            if body.len() > 4096 {
                findings.problem(path.key("body"), "is at most 4096 bytes");
            }
            Some((content_type.clone(), body.clone()))
        }
        (None, None) => None,
        (None, Some(_)) => {
            findings.problem(path.key("body"), "needs a content_type");
            None
        }
        (Some(_), None) => {
            findings.problem(path.key("content_type"), "needs a body");
            None
        }
    };
    Some(BlockResponse {
        status: raw.status,
        headers: raw
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect(),
        body,
    })
}

/// One statement, or `None` with its problems in `findings`.
pub(crate) fn statement(
    raw: &RawStatement,
    path: &FieldPath,
    depth: usize,
    findings: &mut Findings,
) -> Option<Statement> {
    if depth > MAX_DEPTH {
        findings.problem(
            path.clone(),
            format!("statements nest at most {MAX_DEPTH} deep"),
        );
        return None;
    }
    let nested = |list: &[RawStatement], key: &str, findings: &mut Findings| {
        if list.is_empty() {
            findings.problem(path.key(key), "lists at least one statement");
        }
        let statements: Vec<Option<Statement>> = list
            .iter()
            .enumerate()
            .map(|(index, raw)| statement(raw, &path.key(key).index(index), depth + 1, findings))
            .collect();
        statements.into_iter().collect::<Option<Vec<_>>>()
    };
    match raw {
        RawStatement::ByteMatch(raw) => {
            let at = path.key("byte_match");
            let field = field(&raw.field, &at.key("field"), findings);
            let transforms = transforms(&raw.transforms, &at.key("transforms"), findings);
            let position = match raw.position.as_str() {
                "exactly" => Some(Position::Exactly),
                "starts_with" => Some(Position::StartsWith),
                "ends_with" => Some(Position::EndsWith),
                "contains" => Some(Position::Contains),
                "contains_word" => Some(Position::ContainsWord),
                other => {
                    findings.problem(
                        at.key("position"),
                        format!(
                            "`{other}` is not `exactly`, `starts_with`, `ends_with`, `contains` or `contains_word`"
                        ),
                    );
                    None
                }
            };
            if raw.search.is_empty() || raw.search.len() > 200 {
                findings.problem(at.key("search"), "must be from 1 to 200 bytes");
            }
            let oversize = oversize(raw.oversize.as_deref(), &raw.field, &at, findings);
            let statement = Statement::ByteMatch {
                field: field?,
                position: position?,
                search: raw.search.as_bytes().to_vec(),
                transforms: transforms?,
            };
            Some(on_oversize(oversize?, statement))
        }
        RawStatement::Regex(raw) => {
            let at = path.key("regex");
            let field = field(&raw.field, &at.key("field"), findings);
            let transforms = transforms(&raw.transforms, &at.key("transforms"), findings);
            let oversize = oversize(raw.oversize.as_deref(), &raw.field, &at, findings);
            let (field, transforms, oversize) = (field?, transforms?, oversize?);
            match Statement::regex(field, &raw.pattern, &transforms) {
                Ok(statement) => Some(on_oversize(oversize, statement)),
                Err(error) => {
                    findings.problem(
                        at.key("pattern"),
                        format!("is not a regular expression: {error}"),
                    );
                    None
                }
            }
        }
        RawStatement::Size(raw) => {
            let at = path.key("size");
            let field = field(&raw.field, &at.key("field"), findings);
            let comparison = match raw.comparison.as_str() {
                "eq" => Some(Comparison::Eq),
                "ne" => Some(Comparison::Ne),
                "lt" => Some(Comparison::Lt),
                "le" => Some(Comparison::Le),
                "gt" => Some(Comparison::Gt),
                "ge" => Some(Comparison::Ge),
                other => {
                    findings.problem(
                        at.key("comparison"),
                        format!("`{other}` is not `eq`, `ne`, `lt`, `le`, `gt` or `ge`"),
                    );
                    None
                }
            };
            let oversize = oversize(raw.oversize.as_deref(), &raw.field, &at, findings);
            let statement = Statement::Size {
                field: field?,
                comparison: comparison?,
                size: usize::try_from(raw.size).unwrap_or(usize::MAX),
            };
            Some(on_oversize(oversize?, statement))
        }
        RawStatement::Sqli(raw) => {
            let at = path.key("sqli");
            let field = field(&raw.field, &at.key("field"), findings);
            let transforms = transforms(&raw.transforms, &at.key("transforms"), findings);
            let oversize = oversize(raw.oversize.as_deref(), &raw.field, &at, findings);
            let statement = Statement::Sqli {
                field: field?,
                transforms: transforms?,
            };
            Some(on_oversize(oversize?, statement))
        }
        RawStatement::Xss(raw) => {
            let at = path.key("xss");
            let field = field(&raw.field, &at.key("field"), findings);
            let transforms = transforms(&raw.transforms, &at.key("transforms"), findings);
            let oversize = oversize(raw.oversize.as_deref(), &raw.field, &at, findings);
            let statement = Statement::Xss {
                field: field?,
                transforms: transforms?,
            };
            Some(on_oversize(oversize?, statement))
        }
        RawStatement::IpSet(networks) => {
            let networks = ip_networks(networks, &path.key("ip_set"), findings)?;
            Some(Statement::IpSet {
                networks,
                forwarded: None,
            })
        }
        RawStatement::GeoMatch(countries) => {
            let countries = country_codes(countries, &path.key("geo_match"), findings)?;
            Some(Statement::Geo {
                countries,
                forwarded: None,
            })
        }
        RawStatement::ForwardedIpSet(raw) => {
            let at = path.key("forwarded_ip_set");
            let position = match raw.position.as_str() {
                "first" => Some(IpPosition::First),
                "last" => Some(IpPosition::Last),
                "any" => Some(IpPosition::Any),
                other => {
                    findings.problem(
                        at.key("position"),
                        format!("`{other}` is not `first`, `last` or `any`"),
                    );
                    None
                }
            };
            let forwarded = forwarded_ip(&raw.header, position, &raw.fallback, &at, findings);
            let networks = ip_networks(&raw.networks, &at.key("networks"), findings);
            Some(Statement::IpSet {
                networks: networks?,
                forwarded: Some(forwarded?),
            })
        }
        RawStatement::ForwardedGeoMatch(raw) => {
            let at = path.key("forwarded_geo_match");
            let forwarded = forwarded_ip(
                &raw.header,
                Some(IpPosition::First),
                &raw.fallback,
                &at,
                findings,
            );
            let countries = country_codes(&raw.countries, &at.key("countries"), findings);
            Some(Statement::Geo {
                countries: countries?,
                forwarded: Some(forwarded?),
            })
        }
        RawStatement::LabelMatch(label) => {
            if label.is_empty() {
                findings.problem(path.key("label_match"), "names a label");
                return None;
            }
            Some(Statement::Label(label.clone()))
        }
        RawStatement::RateBased(raw) => {
            let at = path.key("rate_based");
            if depth > 0 {
                findings.problem(
                    at.clone(),
                    "a rate-based statement is a rule's own statement, not nested in another",
                );
            }
            if !(10..=2_000_000_000).contains(&raw.limit) {
                findings.problem(at.key("limit"), "must be from 10 to 2000000000");
            }
            if !WINDOWS.contains(&raw.window_seconds) {
                findings.problem(at.key("window_seconds"), "must be 60, 120, 300 or 600");
            }
            if raw.keys.is_empty() || raw.keys.len() > 5 {
                findings.problem(at.key("keys"), "lists from 1 to 5 keys");
            }
            let mut keys = Vec::with_capacity(raw.keys.len());
            for (index, key) in raw.keys.iter().enumerate() {
                let header = |name: &str| http::HeaderName::from_bytes(name.as_bytes()).ok();
                let named = |name: &str| (!name.is_empty()).then(|| name.to_owned());
                let parsed = match key.as_str() {
                    "ip" => Some(AggregateKey::ClientIp),
                    "forwarded_ip" => Some(AggregateKey::ForwardedIp(
                        http::HeaderName::from_static("x-forwarded-for"),
                    )),
                    "query_string" => Some(AggregateKey::QueryString),
                    "uri_path" => Some(AggregateKey::UriPath),
                    "method" => Some(AggregateKey::Method),
                    other => match other.split_once(':') {
                        Some(("forwarded_ip", name)) => header(name).map(AggregateKey::ForwardedIp),
                        Some(("header", name)) => header(name).map(AggregateKey::Header),
                        Some(("cookie", name)) => named(name).map(AggregateKey::Cookie),
                        Some(("query_argument", name)) => {
                            named(name).map(AggregateKey::QueryArgument)
                        }
                        _ => None,
                    },
                };
                match parsed {
                    Some(parsed) if keys.contains(&parsed) => findings.problem(
                        at.key("keys").index(index),
                        format!("`{key}` is listed twice"),
                    ),
                    Some(parsed) => keys.push(parsed),
                    None => findings.problem(
                        at.key("keys").index(index),
                        format!("`{key}` is not `ip`, `forwarded_ip`, `forwarded_ip:HEADER`, `header:NAME`, `cookie:NAME`, `query_argument:NAME`, `query_string`, `uri_path` or `method`"),
                    ),
                }
            }
            let forwarded = keys
                .iter()
                .any(|key| matches!(key, AggregateKey::ForwardedIp(_)));
            let fallback_matches = match raw.fallback.as_deref() {
                None => false,
                Some(_) if !forwarded => {
                    findings.problem(
                        at.key("fallback"),
                        "applies to a `forwarded_ip` key, and none is listed",
                    );
                    false
                }
                Some("match") => true,
                Some("no_match") => false,
                Some(other) => {
                    findings.problem(
                        at.key("fallback"),
                        format!("`{other}` is not `match` or `no_match`"),
                    );
                    false
                }
            };
            let scope_down = match &raw.scope_down {
                Some(scope_down) => Some(Box::new(statement(
                    scope_down,
                    &at.key("scope_down"),
                    depth + 1,
                    findings,
                )?)),
                None => None,
            };
            Some(Statement::RateBased {
                rate: Arc::new(
                    RateLimit::new(raw.limit, Duration::from_secs(raw.window_seconds), keys)
                        .with_forwarded_fallback(fallback_matches),
                ),
                scope_down,
            })
        }
        RawStatement::And(list) => nested(list, "and", findings).map(Statement::And),
        RawStatement::Or(list) => nested(list, "or", findings).map(Statement::Or),
        RawStatement::Not(inner) => statement(inner, &path.key("not"), depth + 1, findings)
            .map(|inner| Statement::Not(Box::new(inner))),
    }
}

/// An IP set's networks (CIDR, or single addresses), checked.
fn ip_networks(
    networks: &[String],
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Vec<ipnet::IpNet>> {
    if networks.is_empty() || networks.len() > 10_000 {
        findings.problem(at.clone(), "lists from 1 to 10000 networks");
    }
    let mut parsed = Vec::with_capacity(networks.len());
    for (index, network) in networks.iter().enumerate() {
        match network.parse::<ipnet::IpNet>() {
            Ok(network) => parsed.push(network.trunc()),
            // A single address stands for itself.
            Err(_) => match network.parse::<std::net::IpAddr>() {
                Ok(address) => parsed.push(ipnet::IpNet::from(address)),
                Err(_) => findings.problem(
                    at.index(index),
                    format!("`{network}` is not a network (for example 203.0.113.0/24)"),
                ),
            },
        }
    }
    (!networks.is_empty() && parsed.len() == networks.len()).then_some(parsed)
}

/// A geo match's country codes, checked.
fn country_codes(
    countries: &[String],
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Vec<String>> {
    if countries.is_empty() {
        findings.problem(at.clone(), "lists at least one country");
    }
    let mut valid = !countries.is_empty();
    for (index, country) in countries.iter().enumerate() {
        if country == "UK" {
            findings.problem(
                at.index(index),
                "the United Kingdom's code is `GB` (ISO 3166)",
            );
            valid = false;
        } else if country.len() != 2 || !country.bytes().all(|byte| byte.is_ascii_uppercase()) {
            findings.problem(
                at.index(index),
                format!("`{country}` is not a two-letter country code (ISO 3166, such as `FR`)"),
            );
            valid = false;
        }
    }
    valid.then(|| countries.to_vec())
}

/// Where a forwarded IP statement reads its address, checked.
fn forwarded_ip(
    header: &str,
    position: Option<IpPosition>,
    fallback: &str,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<ForwardedIp> {
    let name = http::HeaderName::from_bytes(header.as_bytes()).ok();
    if name.is_none() {
        findings.problem(at.key("header"), format!("`{header}` is not a header name"));
    }
    let fallback_matches = match fallback {
        "match" => Some(true),
        "no_match" => Some(false),
        other => {
            findings.problem(
                at.key("fallback"),
                format!("`{other}` is not `match` or `no_match`"),
            );
            None
        }
    };
    Some(ForwardedIp {
        header: name?,
        position: position?,
        fallback_matches: fallback_matches?,
    })
}

/// A statement's `oversize` (AWS WAF's oversize handling), at `at`: `None` for
/// `continue` (the default), `Some((matches, limited))` for `match` and `no_match`; only
/// a field with an inspection limit (the body's, all the headers, the cookies) takes one.
/// The outer `None`: a problem, in `findings`.
fn oversize(
    raw: Option<&str>,
    field_name: &str,
    at: &FieldPath,
    findings: &mut Findings,
) -> Option<Option<(bool, securecart_waf::Limited)>> {
    let handling = match raw {
        None | Some("continue") => None,
        Some("match") => Some(true),
        Some("no_match") => Some(false),
        Some(other) => {
            findings.problem(
                at.key("oversize"),
                format!("`{other}` is not `continue`, `match` or `no_match`"),
            );
            return None;
        }
    };
    let Some(matches) = handling else {
        return Some(None);
    };
    // (A field that is no field at all is the field's own problem.)
    let field = Field::parse(field_name)?;
    let Some(limited) = field.limited() else {
        findings.problem(
            at.key("oversize"),
            format!(
                "applies to the body's fields, `headers`, `headers_but_credentials`, \
                 `cookies` and `cookie:NAME` only, not `{field_name}`"
            ),
        );
        return None;
    };
    Some(Some((matches, limited)))
}

/// `statement` with its oversize handling (see [`oversize`]).
fn on_oversize(
    handling: Option<(bool, securecart_waf::Limited)>,
    statement: Statement,
) -> Statement {
    match handling {
        None => statement,
        Some((matches, limited)) => Statement::OnOversize {
            matches,
            limited,
            statement: Box::new(statement),
        },
    }
}

fn field(name: &str, path: &FieldPath, findings: &mut Findings) -> Option<Field> {
    let field = Field::parse(name);
    if field.is_none() {
        let pointer = ["json_values:", "json_keys:"]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix));
        let problem = match pointer {
            Some(pointer) => format!(
                "`{pointer}` is not a JSON pointer (RFC 6901): each step after a `/`, such as `/items/0/name`, with `~0` for a `~` and `~1` for a `/` in a key"
            ),
            None => format!("`{name}` is not a field: {}", Field::NAMES),
        };
        findings.problem(path.clone(), problem);
    }
    field
}

fn transforms(
    names: &[String],
    path: &FieldPath,
    findings: &mut Findings,
) -> Option<Vec<Transform>> {
    if names.len() > MAX_TRANSFORMS {
        findings.problem(
            path.clone(),
            format!("at most {MAX_TRANSFORMS} transformations"),
        );
        return None;
    }
    let mut transforms = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        match Transform::from_name(name) {
            Some(transform) => transforms.push(transform),
            None => findings.problem(
                path.index(index),
                format!(
                    "`{name}` is not a transformation: {}",
                    Transform::NAMED.map(|(known, _)| known).join(", ")
                ),
            ),
        }
    }
    (transforms.len() == names.len()).then_some(transforms)
}

/// A web ACL's logging filter, checked: `keep` or `drop`, `meets_any` or `meets_all`, and
/// conditions of one action or one label each.
pub(crate) fn resolve_logging(
    raw: &crate::raw::RawWafLogging,
    path: &FieldPath,
    findings: &mut Findings,
) -> crate::model::WafLogging {
    use crate::model::{WafLogCondition, WafLogFilter, WafLogging};
    let keep = |word: &str, at: FieldPath, findings: &mut Findings| match word {
        "keep" => true,
        "drop" => false,
        other => {
            findings.problem(at, format!("`{other}` is not \"keep\" or \"drop\""));
            true
        }
    };
    let keep_by_default = match &raw.default_behavior {
        Some(behavior) => keep(behavior, path.key("default_behavior"), findings),
        None if raw.filters.is_empty() => true,
        None => {
            findings.problem(
                path.clone(),
                "with filters, needs default_behavior: \"keep\" or \"drop\" for the requests no filter speaks for",
            );
            true
        }
    };
    let mut filters = Vec::with_capacity(raw.filters.len());
    for (index, filter) in raw.filters.iter().enumerate() {
        let at = path.key("filters").index(index);
        let meets_all = match filter.requirement.as_str() {
            "meets_any" => false,
            "meets_all" => true,
            other => {
                findings.problem(
                    at.key("requirement"),
                    format!("`{other}` is not \"meets_any\" or \"meets_all\""),
                );
                false
            }
        };
        if filter.conditions.is_empty() {
            findings.problem(at.key("conditions"), "lists at least one condition");
        }
        let mut conditions = Vec::with_capacity(filter.conditions.len());
        for (number, condition) in filter.conditions.iter().enumerate() {
            let at = at.key("conditions").index(number);
            match (condition.action.as_deref(), &condition.label) {
                (Some("allow"), None) => conditions.push(WafLogCondition::Allowed),
                (Some("block"), None) => conditions.push(WafLogCondition::Blocked),
                (Some("count"), None) => conditions.push(WafLogCondition::Counted),
                (Some("challenge"), None) => conditions.push(WafLogCondition::Challenged),
                (Some(other), None) => findings.problem(
                    at.key("action"),
                    format!("`{other}` is not \"allow\", \"block\", \"count\" or \"challenge\""),
                ),
                (None, Some(label)) if !label.is_empty() => {
                    conditions.push(WafLogCondition::Label(label.clone()));
                }
                _ => findings.problem(at, "needs one of action or label (not empty)"),
            }
        }
        filters.push(WafLogFilter {
            keep: keep(&filter.behavior, at.key("behavior"), findings),
            meets_all,
            conditions,
        });
    }
    WafLogging {
        keep_by_default,
        filters,
    }
}
