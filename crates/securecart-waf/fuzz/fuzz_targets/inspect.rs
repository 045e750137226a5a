//! The transformations and the detectors on arbitrary bytes: every transformation (each
//! of `Transform::NAMED`), alone and chained in both orders, and the managed web ACL over
//! the bytes as a path, a query string, a form body, a JSON body, a multipart body, an XML
//! body, a header and a cookie, and as several `Cookie` lines and headers that cross the
//! inspection's limits (8 KiB of each, at a place the bytes choose), must return without
//! panicking; so must the JSON fields at
//! a pointer the bytes' first line names, over the rest, and the challenge's reading of
//! the bytes as a token and as a puzzle and its solution.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securecart_waf::transform::{self, Transform};
use securecart_waf::challenge::TokenKey;
use securecart_waf::{Field, Inspection, WebAcl};

fn acl() -> &'static WebAcl {
    static ACL: OnceLock<WebAcl> = OnceLock::new();
    ACL.get_or_init(securecart_waf::managed::default_acl)
}

fuzz_target!(|data: &[u8]| {
    let all: Vec<Transform> = Transform::NAMED.iter().map(|(_, transform)| *transform).collect();
    for transform in &all {
        let _ = transform::apply(std::slice::from_ref(transform), data);
    }
    let _ = transform::apply(&all, data);
    let reversed: Vec<Transform> = all.iter().rev().copied().collect();
    let _ = transform::apply(&reversed, data);

    let text = String::from_utf8_lossy(data);
    let client = std::net::IpAddr::from([192, 0, 2, 1]);
    for content_type in [
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data; boundary=b",
        "application/xml",
    ] {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        if let Ok(value) = http::HeaderValue::from_bytes(data) {
            headers.insert(http::header::USER_AGENT, value.clone());
            headers.insert(http::header::COOKIE, value);
        }
        let path = format!("/{text}");
        let inspection =
            Inspection::new("POST", &path, Some(&text), &headers, data, false, client);
        let _ = acl().evaluate(&inspection);
    }

    // The bytes as `Cookie` lines and headers, repeated past the inspection's limits
    // (`inspect::Limited`): a padding line of the first byte's choosing first, so that
    // the limits fall anywhere in them; then the fields that read them all, as they cut
    // them.
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        let padding = "p".repeat(usize::from(data.first().copied().unwrap_or(0)) * 32);
        let padding = http::HeaderValue::from_str(&padding).expect("letters");
        headers.append(http::header::COOKIE, padding.clone());
        headers.append("x-padding", padding);
        for at in 0..4 {
            headers.append(http::header::COOKIE, value.clone());
            headers.append(
                http::HeaderName::from_bytes(format!("x-fuzz-{at}").as_bytes()).expect("name"),
                value.clone(),
            );
        }
        let inspection = Inspection::new("GET", "/", None, &headers, b"", false, client);
        let _ = acl().evaluate(&inspection);
        for name in ["headers", "headers_but_credentials", "cookies", "cookie:p"] {
            let field = Field::parse(name).expect("a field");
            let _ = inspection.any_value(&field, |value| value.is_empty());
            let _ = inspection.size(&field);
        }
    }

    let headers = http::HeaderMap::new();
    if let Some((pointer, body)) = text.split_once('\n') {
        let inspection =
            Inspection::new("POST", "/", None, &headers, body.as_bytes(), false, client);
        for name in [format!("json_values:{pointer}"), format!("json_keys:{pointer}")] {
            if let Some(field) = Field::parse(&name) {
                let _ = inspection.any_value(&field, |value| value.is_empty());
                let _ = inspection.size(&field);
            }
        }
    }

    let key = TokenKey::new(b"fuzz");
    let _ = key.read(Some(data), 1_000_000, "shop.example");
    if let Some((puzzle, solution)) = text.split_once('&') {
        let _ = key.redeem(puzzle, solution, 1_000_000, client, "shop.example");
    }
});
