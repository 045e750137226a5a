//! The transformations and the detectors on arbitrary bytes: every transformation, alone
//! and chained, and the managed web ACL over the bytes as a query string, a form body, a
//! JSON body, a multipart body, an XML body and a header, must return without panicking.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securecart_waf::transform::{self, Transform};
use securecart_waf::{Inspection, WebAcl};

const ALL: [Transform; 14] = [
    Transform::UrlDecode,
    Transform::UrlDecodeUni,
    Transform::HtmlEntityDecode,
    Transform::Lowercase,
    Transform::CompressWhitespace,
    Transform::NormalizePath,
    Transform::NormalizePathWin,
    Transform::Base64Decode,
    Transform::JsDecode,
    Transform::CmdLine,
    Transform::RemoveNulls,
    Transform::RemoveShellQuotes,
    Transform::ReplaceComments,
    Transform::HexDecode,
];

fn acl() -> &'static WebAcl {
    static ACL: OnceLock<WebAcl> = OnceLock::new();
    ACL.get_or_init(securecart_waf::managed::default_acl)
}

fuzz_target!(|data: &[u8]| {
    for transform in ALL {
        let _ = transform::apply(&[transform], data);
    }
    let _ = transform::apply(&ALL, data);

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
            headers.insert(http::header::USER_AGENT, value);
        }
        let inspection = Inspection::new("POST", "/", Some(&text), &headers, data, false, client);
        let _ = acl().evaluate(&inspection);
    }
});
