//! Cache keys. The primary key is the host, the path and the query string as the policy
//! keeps it; a stored response also remembers the request headers its `Vary` names and the
//! headers and cookies the policy adds to the key (its *variant*), and answers only
//! requests that match them (RFC 9111 section 4.1). Invalidating a URI drops every variant
//! under its primary key.

use http::header::{self, HeaderMap, HeaderName};

/// Which query parameters make the key (CloudFront's query string key settings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueryKey {
    /// The whole query string, as sent.
    #[default]
    All,
    /// None: `/a?x=1` and `/a?x=2` are one object.
    None,
    /// Only these parameters, in name order.
    Only(Vec<String>),
    /// Every parameter but these, in name order.
    AllExcept(Vec<String>),
}

/// Which of a client's headers or cookies a cache miss sends the origin (CloudFront's
/// origin request policy), by name (headers' lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Forwarded {
    /// Every one (the default).
    #[default]
    All,
    /// None.
    None,
    /// Only these.
    Only(Vec<String>),
    /// Every one but these.
    AllExcept(Vec<String>),
}

impl Forwarded {
    /// Whether `name` goes to the origin.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Forwarded::All => true,
            Forwarded::None => false,
            Forwarded::Only(names) => names.iter().any(|kept| kept == name),
            Forwarded::AllExcept(names) => !names.iter().any(|left| left == name),
        }
    }
}

/// What of a client's request a cache miss (or revalidation) sends the origin: the
/// headers and cookies [`Forwarded`] allows, and always those the key holds (an origin
/// must see what tells its answers apart) and those the request needs to reach the origin
/// and be answered (`Host`, `Accept-Encoding`, the edge's `X-Forwarded-For`, `-Proto` and
/// `-Port` and trace context, the client's cache directives and conditions, a range, and
/// the edge's own `x-securecart-...` headers). A client's `X-Forwarded-Host`, which no key
/// holds, goes only where the policy allows it: an origin that builds links from it would
/// otherwise store a client's choice for everyone. Headers the origin's `Vary` names should
/// be allowed too, or each variant is fetched without its value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginPolicy {
    /// The client's headers.
    pub headers: Forwarded,
    /// The client's cookies.
    pub cookies: Forwarded,
}

/// Headers a request to the origin keeps whatever the policy says (with those the edge
/// itself sets for its targets, named `x-securecart-...`, such as its web ACL's findings).
const NEEDED: [HeaderName; 17] = [
    header::HOST,
    header::ACCEPT_ENCODING,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("x-amzn-trace-id"),
];

impl OriginPolicy {
    /// Removes from a request going to the origin what the policy keeps back; `key` is
    /// the behaviour's key policy, whose headers and cookies always go.
    pub fn apply(&self, headers: &mut HeaderMap, key: &KeyPolicy) {
        if self.headers != Forwarded::All {
            let dropped: Vec<HeaderName> = headers
                .keys()
                .filter(|name| {
                    **name != header::COOKIE
                        && !NEEDED.contains(name)
                        && !key.headers.contains(name)
                        // The edge's own for the target (a client's are removed before).
                        && !name.as_str().starts_with("x-securecart-")
                        && !self.headers.allows(name.as_str())
                })
                .cloned()
                .collect();
            for name in dropped {
                headers.remove(name);
            }
        }
        if self.cookies == Forwarded::All || !headers.contains_key(header::COOKIE) {
            return;
        }
        let kept: Vec<String> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|line| line.to_str().ok())
            .flat_map(|line| line.split(';'))
            .map(str::trim)
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or("").trim();
                !name.is_empty()
                    && (self.cookies.allows(name) || key.cookies.iter().any(|kept| kept == name))
            })
            .map(str::to_owned)
            .collect();
        headers.remove(header::COOKIE);
        if let Ok(value) = http::HeaderValue::from_str(&kept.join("; "))
            && !kept.is_empty()
        {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// What, besides host and path, tells objects apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPolicy {
    /// Query parameters.
    pub query: QueryKey,
    /// Request headers whose values make separate objects.
    pub headers: Vec<HeaderName>,
    /// Cookies whose values make separate objects.
    pub cookies: Vec<String>,
}

impl KeyPolicy {
    /// The primary key of a request: host, path and the kept query.
    pub fn primary(&self, host: &str, path: &str, query: Option<&str>) -> String {
        let mut key =
            String::with_capacity(host.len() + path.len() + 2 + query.map_or(0, str::len));
        key.push_str(&host.to_ascii_lowercase());
        key.push_str(path);
        let Some(query) = query.filter(|query| !query.is_empty()) else {
            return key;
        };
        let keep = |name: &str, list: &[String]| list.iter().any(|kept| kept == name);
        let mut kept: Vec<(&str, &str)> = match &self.query {
            QueryKey::All => {
                key.push('?');
                key.push_str(query);
                return key;
            }
            QueryKey::None => return key,
            QueryKey::Only(list) => pairs(query).filter(|(name, _)| keep(name, list)).collect(),
            QueryKey::AllExcept(list) => {
                pairs(query).filter(|(name, _)| !keep(name, list)).collect()
            }
        };
        if kept.is_empty() {
            return key;
        }
        kept.sort_unstable();
        for (index, (name, value)) in kept.into_iter().enumerate() {
            key.push(if index == 0 { '?' } else { '&' });
            key.push_str(name);
            key.push('=');
            key.push_str(value);
        }
        key
    }
}

fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The names a response's `Vary` lists, lowercase (`HeaderName`s are).
pub fn vary_fields(response: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = crate::directives::list_members(response, header::VARY)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// Whether `Vary` contains `*`: the response never matches a later request.
pub fn vary_is_star(response: &HeaderMap) -> bool {
    crate::directives::list_members(response, header::VARY).any(|name| name == "*")
}

/// The request values that select one stored response among those under a primary key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Variant {
    headers: Vec<(HeaderName, Option<String>)>,
    cookies: Vec<(String, Option<String>)>,
}

impl Variant {
    /// The values of `request` that `vary` (a response's `Vary`) and the policy name.
    pub fn capture(request: &HeaderMap, vary: &[HeaderName], policy: &KeyPolicy) -> Self {
        let mut names: Vec<&HeaderName> = vary.iter().chain(&policy.headers).collect();
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Self {
            headers: names
                .into_iter()
                .map(|name| (name.clone(), normalized(request, name)))
                .collect(),
            cookies: policy
                .cookies
                .iter()
                .map(|name| (name.clone(), cookie(request, name).map(str::to_owned)))
                .collect(),
        }
    }

    /// Whether a new request selects this variant: every header and cookie it remembers
    /// has the same value (or is absent from both).
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.headers
            .iter()
            .all(|(name, value)| normalized(request, name).as_deref() == value.as_deref())
            && self
                .cookies
                .iter()
                .all(|(name, value)| cookie(request, name) == value.as_deref())
    }

    /// Whether two variants remember the same fields with the same values.
    pub fn same_as(&self, other: &Variant) -> bool {
        self == other
    }

    /// A variant from the values it remembers (as [`Variant::headers`] and
    /// [`Variant::cookies`] list them).
    pub fn from_parts(
        headers: Vec<(HeaderName, Option<String>)>,
        cookies: Vec<(String, Option<String>)>,
    ) -> Self {
        Self { headers, cookies }
    }

    /// The cookies this variant remembers.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.cookies
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()))
    }

    /// The request headers this variant remembers, for a conditional request that must
    /// carry them.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, Option<&str>)> {
        self.headers
            .iter()
            .map(|(name, value)| (name, value.as_deref()))
    }
}

/// A field's value for comparison: its lines joined, list members trimmed (RFC 9111
/// section 4.1 allows normalising whitespace where the field's syntax does);
/// `Accept-Encoding` as the codings the edge knows that it accepts, the value the origin
/// is sent ([`crate::compress::normalized_accept_encoding`]).
fn normalized(request: &HeaderMap, name: &HeaderName) -> Option<String> {
    if name == header::ACCEPT_ENCODING {
        return crate::compress::normalized_accept_encoding(request)
            .and_then(|value| value.to_str().ok().map(str::to_owned));
    }
    let mut lines = request.get_all(name).iter().peekable();
    lines.peek()?;
    let mut value = String::new();
    for line in lines {
        for member in String::from_utf8_lossy(line.as_bytes()).split(',') {
            if !value.is_empty() {
                value.push(',');
            }
            value.push_str(member.trim());
        }
    }
    Some(value)
}

/// The value of a cookie the request carries.
pub fn cookie<'h>(request: &'h HeaderMap, wanted: &str) -> Option<&'h str> {
    request
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    /// What a miss sends the origin: the policy's selection of headers and cookies, plus
    /// the key's and those the request needs.
    #[test]
    fn the_origin_sees_what_its_request_policy_lets_through() {
        let request = || {
            headers(&[
                ("host", "shop.test"),
                ("accept-encoding", "gzip"),
                ("x-forwarded-for", "127.0.0.1"),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                (
                    "x-amzn-trace-id",
                    "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736",
                ),
                ("if-none-match", "\"v1\""),
                ("authorization", "Bearer t"),
                ("x-device", "mobile"),
                ("user-agent", "browser"),
                ("x-securecart-waf-flagged", "yes"),
                ("x-securecart-mtls-clientcert", "-----BEGIN"),
                ("x-forwarded-host", "attacker.example"),
                ("cookie", "session=s1; lang=fr"),
                ("cookie", "theme=dark"),
            ])
        };
        let names = |list: &[&str]| list.iter().map(|name| (*name).to_owned()).collect();
        let key = KeyPolicy {
            headers: vec![HeaderName::from_static("x-device")],
            cookies: vec!["theme".to_owned()],
            ..KeyPolicy::default()
        };
        let always = [
            "accept-encoding",
            "host",
            "if-none-match",
            "traceparent",
            "x-amzn-trace-id",
            "x-device",
            "x-forwarded-for",
            "x-securecart-mtls-clientcert",
            "x-securecart-waf-flagged",
        ];
        // (policy, headers left but the cookie, the cookie line left)
        let cases: [(OriginPolicy, Vec<&str>, Option<&str>); 5] = [
            (
                OriginPolicy::default(),
                [
                    &always[..],
                    &["authorization", "user-agent", "x-forwarded-host"],
                ]
                .concat(),
                Some("session=s1; lang=fr"),
            ),
            (
                OriginPolicy {
                    headers: Forwarded::None,
                    cookies: Forwarded::None,
                },
                always.to_vec(),
                Some("theme=dark"),
            ),
            (
                OriginPolicy {
                    headers: Forwarded::Only(names(&["user-agent"])),
                    cookies: Forwarded::Only(names(&["lang"])),
                },
                [&always[..], &["user-agent"]].concat(),
                Some("lang=fr; theme=dark"),
            ),
            (
                OriginPolicy {
                    headers: Forwarded::AllExcept(names(&["authorization"])),
                    cookies: Forwarded::AllExcept(names(&["session"])),
                },
                [&always[..], &["user-agent", "x-forwarded-host"]].concat(),
                Some("lang=fr; theme=dark"),
            ),
            (
                OriginPolicy {
                    headers: Forwarded::All,
                    cookies: Forwarded::None,
                },
                [
                    &always[..],
                    &["authorization", "user-agent", "x-forwarded-host"],
                ]
                .concat(),
                Some("theme=dark"),
            ),
        ];
        let policy_key = KeyPolicy {
            cookies: Vec::new(),
            ..key.clone()
        };
        for (index, (policy, left, cookie)) in cases.into_iter().enumerate() {
            let mut sent = request();
            // The first case is the default: the key's cookie is not needed to show it.
            let key = if index == 0 { &policy_key } else { &key };
            policy.apply(&mut sent, key);
            let mut names: Vec<&str> = sent
                .keys()
                .map(HeaderName::as_str)
                .filter(|name| *name != "cookie")
                .collect();
            names.sort_unstable();
            let mut expected = left.clone();
            expected.sort_unstable();
            assert_eq!(names, expected, "{policy:?}");
            let cookies: Vec<&str> = sent
                .get_all(header::COOKIE)
                .iter()
                .map(|value| value.to_str().expect("text"))
                .collect();
            match cookie {
                // The default leaves the lines as they were.
                Some(line) if index == 0 => assert_eq!(cookies, [line, "theme=dark"]),
                Some(line) => assert_eq!(cookies, [line], "{policy:?}"),
                None => assert!(cookies.is_empty(), "{policy:?}"),
            }
        }
    }

    #[test]
    fn primary_keys_keep_what_the_policy_says() {
        let only = |names: &[&str]| KeyPolicy {
            query: QueryKey::Only(names.iter().map(|name| (*name).to_owned()).collect()),
            ..KeyPolicy::default()
        };
        let cases = [
            (KeyPolicy::default(), Some("b=2&a=1"), "shop.test/p?b=2&a=1"),
            (KeyPolicy::default(), None, "shop.test/p"),
            (KeyPolicy::default(), Some(""), "shop.test/p"),
            (
                KeyPolicy {
                    query: QueryKey::None,
                    ..KeyPolicy::default()
                },
                Some("a=1"),
                "shop.test/p",
            ),
            (
                only(&["b", "a"]),
                Some("utm=x&b=2&a=1"),
                "shop.test/p?a=1&b=2",
            ),
            (only(&["a"]), Some("utm=x"), "shop.test/p"),
            (
                KeyPolicy {
                    query: QueryKey::AllExcept(vec!["utm".into()]),
                    ..KeyPolicy::default()
                },
                Some("utm=x&z=1&flag"),
                "shop.test/p?flag=&z=1",
            ),
        ];
        for (policy, query, expected) in cases {
            assert_eq!(
                policy.primary("Shop.TEST", "/p", query),
                expected,
                "{policy:?} {query:?}"
            );
        }
    }

    #[test]
    fn variants_match_like_rfc_9111_section_4_1() {
        let vary = vary_fields(&headers(&[
            ("vary", "Accept-Language, Foo"),
            ("vary", "foo"),
        ]));
        assert_eq!(
            vary,
            [
                HeaderName::from_static("accept-language"),
                HeaderName::from_static("foo")
            ]
        );
        let stored = Variant::capture(
            &headers(&[("accept-language", "en, fr"), ("foo", "1")]),
            &vary,
            &KeyPolicy::default(),
        );
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("accept-language", "en,fr"), ("foo", "1")], true),
            (
                &[
                    ("accept-language", "en"),
                    ("accept-language", "fr"),
                    ("foo", "1"),
                ],
                true,
            ),
            (
                &[("foo", "1"), ("accept-language", "en, fr"), ("bar", "x")],
                true,
            ),
            (&[("accept-language", "fr, en"), ("foo", "1")], false),
            (&[("accept-language", "en, fr")], false),
            (&[("accept-language", "en, fr"), ("foo", "2")], false),
        ];
        for (request, expected) in cases {
            assert_eq!(stored.matches(&headers(request)), *expected, "{request:?}");
        }
        // A header absent when stored must be absent again.
        let without = Variant::capture(&headers(&[]), &vary, &KeyPolicy::default());
        assert!(without.matches(&headers(&[])));
        assert!(!without.matches(&headers(&[("foo", "1")])));
        assert!(vary_is_star(&headers(&[("vary", "Foo"), ("vary", ", *")])));
        assert!(!vary_is_star(&headers(&[("vary", "Foo")])));
    }

    #[test]
    fn cookies_in_the_key() {
        let policy = KeyPolicy {
            cookies: vec!["currency".into()],
            ..KeyPolicy::default()
        };
        let stored = Variant::capture(&headers(&[("cookie", "a=1; currency=EUR")]), &[], &policy);
        assert!(stored.matches(&headers(&[("cookie", "currency=EUR")])));
        assert!(!stored.matches(&headers(&[("cookie", "currency=USD")])));
        assert!(!stored.matches(&headers(&[])));
    }
}
