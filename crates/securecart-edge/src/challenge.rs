//! The edge's side of the web ACL's challenge action (AWS WAF's): the answer to a request a
//! `challenge` rule stopped (202, `x-securecart-waf-action: challenge`, and, for a page
//! load, a page whose script solves the puzzle), and the answer to the page's solution
//! ([`SOLUTION_PATH`]: the token, as a cookie). The puzzles and tokens themselves are
//! [`securecart_waf::challenge`]'s.
//!
//! The page's script finds the proof of work with a SHA-256 of its own (about 40 lines)
//! rather than the browser's `crypto.subtle`, which browsers give only to pages over https
//! or on `localhost`: a shop on plain http behind another TLS terminator must work too.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use securecart_waf::challenge::{DIFFICULTY, Refusal, SOLUTION_PATH, TOKEN_COOKIE, TokenKey};

use crate::server::ClientBody;
use crate::upstream::{self, EdgeBody};

/// The header every challenge answer carries (AWS WAF's `x-amzn-waf-action`), so that a
/// script's `fetch` can tell a challenge from the page it asked for.
pub const ACTION_HEADER: &str = "x-securecart-waf-action";

/// The longest solution form the edge reads.
const MAX_SOLUTION_BYTES: usize = 1024;

/// The key of this process's tokens, drawn at random when first asked for (a reload keeps
/// it): what an edge uses unless it is given one (`securecart up` gives its edges one, so
/// that they accept each other's tokens).
pub fn process_key() -> Arc<TokenKey> {
    static KEY: OnceLock<Arc<TokenKey>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(TokenKey::random())))
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The answer to a request a challenge rule stopped: 202, and for a GET that accepts HTML,
/// the page that solves a new puzzle for `client` on `host` and loads the URL again.
pub(crate) fn answer(
    key: &TokenKey,
    method: &Method,
    headers: &http::HeaderMap,
    client: IpAddr,
    host: &str,
) -> Response<EdgeBody> {
    let accepts_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|value| value.as_bytes().windows(9).any(|at| at == b"text/html"));
    let page =
        (*method == Method::GET && accepts_html).then(|| page(&key.puzzle(now(), client, host)));
    let mut response = match page {
        Some(page) => {
            let mut response = Response::new(upstream::full(Bytes::from(page)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        None => Response::new(upstream::empty()),
    };
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    headers.insert(ACTION_HEADER, HeaderValue::from_static("challenge"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    response
}

/// The answer to a solution sent to [`SOLUTION_PATH`]: 204 with the token's cookie (kept
/// for `immunity` seconds, and only over TLS where the request came over TLS), or why not.
pub(crate) async fn redeem(
    key: &TokenKey,
    request: Request<ClientBody>,
    client: IpAddr,
    host: &str,
    secure: bool,
    immunity: u32,
    body_timeout: Duration,
) -> Response<EdgeBody> {
    if request.method() != Method::POST {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "The challenge's solution is sent with POST.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let form = match read_form(request.into_body(), body_timeout).await {
        Ok(form) => form,
        Err(status) => {
            return refusal(
                status,
                "The challenge's solution is a short form of `puzzle` and `solution`.",
            );
        }
    };
    let field = |name: &str| {
        form_urlencoded::parse(form.as_bytes())
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.into_owned())
    };
    let (Some(puzzle), Some(solution)) = (field("puzzle"), field("solution")) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "The challenge's solution is a short form of `puzzle` and `solution`.",
        );
    };
    match key.redeem(&puzzle, &solution, now(), client, host) {
        Ok(token) => {
            let cookie = format!(
                "{TOKEN_COOKIE}={token}; Path=/; Max-Age={immunity}; HttpOnly; SameSite=Lax{}",
                if secure { "; Secure" } else { "" }
            );
            let mut response = Response::new(upstream::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                headers.insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(refused) => {
            tracing::debug!(%client, reason = %refused, "a challenge's solution was refused");
            let status = match refused {
                Refusal::Expired => StatusCode::GONE,
                Refusal::Forged | Refusal::Wrong => StatusCode::FORBIDDEN,
            };
            refusal(status, &format!("No token: {refused}."))
        }
    }
}

/// A solution form's text: at most [`MAX_SOLUTION_BYTES`], in time; else the status that
/// says why not.
async fn read_form(body: ClientBody, timeout: Duration) -> Result<String, StatusCode> {
    if body.size_hint().lower() > MAX_SOLUTION_BYTES as u64 {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let limited = http_body_util::Limited::new(body, MAX_SOLUTION_BYTES);
    let collected = tokio::time::timeout(timeout, http_body_util::BodyExt::collect(limited))
        .await
        .map_err(|_| StatusCode::REQUEST_TIMEOUT)?
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
    String::from_utf8(collected.to_bytes().to_vec()).map_err(|_| StatusCode::BAD_REQUEST)
}

/// The edge's JSON answer to a solution it takes no token for.
fn refusal(status: StatusCode, message: &str) -> Response<EdgeBody> {
    let body = serde_json::json!({ "error": { "code": "challenge_failed", "message": message } })
        .to_string();
    let mut response = Response::new(upstream::full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The challenge page for `puzzle` (base64url and dots: nothing HTML or JavaScript would
/// read as markup or code).
fn page(puzzle: &str) -> String {
    PAGE.replace("{PUZZLE}", puzzle)
        .replace("{DIFFICULTY}", &DIFFICULTY.to_string())
        .replace("{SOLUTION_PATH}", SOLUTION_PATH)
}

/// The challenge page. Its script counts `n` up from 0 until SHA-256 of `PUZZLE:n` starts
/// with `DIFFICULTY` zero bits, in slices that leave the page responsive, posts the
/// solution, and loads the page again with the token the answer set.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>One moment</title>
<style>body{font-family:system-ui,sans-serif;margin:20vh auto;max-width:32rem;padding:0 1rem;color:#333;text-align:center}</style>
</head>
<body>
<p id="status">Checking your browser before the shop opens&hellip;</p>
<noscript><p>This shop checks that a browser is visiting: turn JavaScript on and load the page again.</p></noscript>
<script>
(function () {
  "use strict";
  var puzzle = "{PUZZLE}", difficulty = {DIFFICULTY}, path = "{SOLUTION_PATH}";
  // SHA-256 (FIPS 180-4): its constants are the fractional parts of the square roots (H)
  // and cube roots (K) of the first primes.
  var H = [], K = [];
  for (var n = 2, found = 0; found < 64; n++) {
    var prime = true;
    for (var d = 2; d * d <= n; d++) if (n % d === 0) { prime = false; break; }
    if (!prime) continue;
    if (found < 8) H[found] = (Math.pow(n, 1 / 2) * 4294967296) | 0;
    K[found++] = (Math.pow(n, 1 / 3) * 4294967296) | 0;
  }
  function rotr(x, r) { return (x >>> r) | (x << (32 - r)); }
  // The digest of an ASCII text, as eight 32-bit words.
  function sha256(text) {
    var words = [], bits = text.length * 8, w = [], i, j;
    for (i = 0; i < text.length; i++) words[i >> 2] |= text.charCodeAt(i) << (24 - (i % 4) * 8);
    words[bits >> 5] |= 0x80 << (24 - (bits % 32));
    words[(((bits + 64) >>> 9) << 4) + 15] = bits;
    var h = H.slice();
    for (j = 0; j < words.length; j += 16) {
      var a = h[0], b = h[1], c = h[2], e = h[4], f = h[5], g = h[6], k = h[7], dd = h[3];
      for (i = 0; i < 64; i++) {
        if (i < 16) {
          w[i] = words[j + i] | 0;
        } else {
          var x = w[i - 15], y = w[i - 2];
          w[i] = (w[i - 16] + (rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3)) + w[i - 7] +
            (rotr(y, 17) ^ rotr(y, 19) ^ (y >>> 10))) | 0;
        }
        var t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        var t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        k = g; g = f; f = e; e = (dd + t1) | 0; dd = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + dd) | 0;
      h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
    }
    return h;
  }
  function solves(hash) {
    return difficulty <= 32 ? (hash[0] >>> (32 - difficulty)) === 0
      : hash[0] === 0 && (hash[1] >>> (64 - difficulty)) === 0;
  }
  function failed() {
    document.getElementById("status").textContent =
      "The browser check did not finish: load the page again.";
  }
  var tried = 0;
  function work() {
    for (var end = tried + 20000; tried < end; tried++) {
      if (solves(sha256(puzzle + ":" + tried))) return send(tried);
    }
    setTimeout(work, 0);
  }
  function send(solution) {
    fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "puzzle=" + puzzle + "&solution=" + solution
    }).then(function (answer) {
      if (answer.ok) location.reload(); else failed();
    }, failed);
  }
  work();
})();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    /// The page's SHA-256 is SHA-256: node (where it is installed) runs the page's script
    /// on known texts and on a puzzle, and its digests and solution are ring's.
    #[test]
    fn the_pages_script_solves_as_the_edge_checks() {
        if std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("node is not installed: the page's script is tested by the browser test");
            return;
        }
        let script = super::page("1000.bm9uY2U.bWFj");
        let start = script.find("<script>").expect("script") + "<script>".len();
        let end = script.find("</script>").expect("script");
        // The page's own code, with its sending replaced by printing, and its SHA-256
        // printed for texts of every length around the block boundaries.
        let body = script[start..end]
            .replace("return send(tried);", "{ console.log('solution ' + tried); return; }")
            .replace("setTimeout(work, 0);", "work();")
            .replace(
                "  work();\n})();",
                "  for (var length of [0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 200]) console.log('digest ' + length + ' ' + sha256('a'.repeat(length)).map(function (word) { return (word >>> 0).toString(16).padStart(8, '0'); }).join(''));\n  work();\n})();",
            );
        let output = std::process::Command::new("node")
            .arg("-e")
            .arg(format!("var document = {{}};\n{body}"))
            .output()
            .expect("node runs");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut digests = 0;
        for line in printed.lines() {
            if let Some(rest) = line.strip_prefix("digest ") {
                let (length, hex) = rest.split_once(' ').expect("digest line");
                let text = "a".repeat(length.parse().expect("length"));
                let expected = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
                let expected: String = expected
                    .as_ref()
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                assert_eq!(hex, expected, "the digest of {length} bytes");
                digests += 1;
            } else if let Some(solution) = line.strip_prefix("solution ") {
                assert_eq!(
                    solution,
                    securecart_waf::challenge::solve("1000.bm9uY2U.bWFj")
                );
                assert!(securecart_waf::challenge::solves(
                    "1000.bm9uY2U.bWFj",
                    solution
                ));
            }
        }
        assert_eq!(digests, 11, "{printed}");
        assert!(printed.contains("solution "), "{printed}");
    }
}
