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

/// The name a request's puzzle and token are bound to, for a request to `host` (without
/// its port): the longest of `domains` that is the host or a domain above it (AWS WAF's
/// token domains, which let one token serve several sites), else the host itself; in
/// lowercase, as names compare. Whether it came from `domains` (then the cookie names it,
/// so that the browser sends it to every host under it).
pub(crate) fn token_domain<'h>(
    host: &'h str,
    domains: &'h [String],
) -> (std::borrow::Cow<'h, str>, bool) {
    use std::borrow::Cow;
    // (A host is nearly always sent in lowercase: no copy then.)
    let host = if host.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    let listed = domains
        .iter()
        .filter(|domain| {
            *host == **domain
                || host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|above| above.ends_with('.'))
        })
        .max_by_key(|domain| domain.len());
    match listed {
        Some(domain) => (Cow::Borrowed(domain.as_str()), true),
        None => (host, false),
    }
}

/// The key of this process's tokens, drawn at random when first asked for (a reload keeps
/// it): what an edge uses unless it is given one (`securecart up` gives its edges one, so
/// that they accept each other's tokens).
pub fn process_key() -> Arc<TokenKey> {
    static KEY: OnceLock<Arc<TokenKey>> = OnceLock::new();
    // 32 bytes of the thread's generator (ChaCha, seeded by the system's), as the admin
    // token is drawn.
    Arc::clone(KEY.get_or_init(|| Arc::new(TokenKey::new(&rand::random::<[u8; 32]>()))))
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
                .headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, PAGE_POLICY.clone());
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
/// for `immunity` seconds, only over TLS where the request came over TLS, and for every
/// host under its domain when `host` is a listed token domain), or why not.
pub(crate) async fn redeem(
    key: &TokenKey,
    request: Request<ClientBody>,
    client: IpAddr,
    (host, listed): (&str, bool),
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
            let domain = if listed {
                format!("; Domain={host}")
            } else {
                String::new()
            };
            let cookie = format!(
                "{TOKEN_COOKIE}={token}; Path=/; Max-Age={immunity}{domain}; HttpOnly; SameSite=Lax{}",
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
    crate::pipeline::json_error(status, "challenge_failed", message)
}

/// The challenge page for `puzzle` (base64url and dots: nothing HTML would read as markup).
fn page(puzzle: &str) -> String {
    PAGE.replace("{PUZZLE}", puzzle)
        .replace("{SCRIPT}", &SCRIPT)
}

/// The page's script: the same for every puzzle (the page's `<meta>` holds the puzzle), so
/// that the page's Content-Security-Policy allows it by its hash and nothing else.
static SCRIPT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    SCRIPT_TEMPLATE
        .replace("{DIFFICULTY}", &DIFFICULTY.to_string())
        .replace("{SOLUTION_PATH}", SOLUTION_PATH)
});

/// The challenge page's Content-Security-Policy: its own script (by its SHA-256) and
/// style, and requests to its own origin (the solution), nothing else.
pub(crate) static PAGE_POLICY: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    use base64::Engine as _;
    let hash = ring::digest::digest(&ring::digest::SHA256, SCRIPT.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(hash.as_ref());
    HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

/// The challenge page (`{SCRIPT}` is [`SCRIPT`]).
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<meta name="securecart-puzzle" content="{PUZZLE}">
<title>One moment</title>
<style>body{font-family:system-ui,sans-serif;margin:20vh auto;max-width:32rem;padding:0 1rem;color:#333;text-align:center}</style>
</head>
<body>
<p id="status">Checking your browser before the shop opens&hellip;</p>
<noscript><p>This shop checks that a browser is visiting: turn JavaScript on and load the page again.</p></noscript>
<script>{SCRIPT}</script>
</body>
</html>
"#;

/// The page's script. It counts `n` up from 0 until SHA-256 of `PUZZLE:n` starts with
/// `DIFFICULTY` zero bits, in slices that leave the page responsive, posts the solution,
/// and loads the page again with the token the answer set. A browser that keeps no
/// cookie would be challenged again at every load: after three tries within a minute
/// (counted in `sessionStorage`), the script stops and says why, until the minute is over.
const SCRIPT_TEMPLATE: &str = r#"
(function () {
  "use strict";
  var puzzle = document.querySelector('meta[name="securecart-puzzle"]').content;
  var difficulty = {DIFFICULTY}, path = "{SOLUTION_PATH}";
  // SHA-256 (FIPS 180-4). Its constants are written out, not computed with Math.pow,
  // whose last bit engines may round differently.
  var H = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];
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
  function say(text) {
    document.getElementById("status").textContent = text;
  }
  function failed() {
    say("The browser check did not finish: load the page again.");
  }
  // Whether this tab may try again: it met the challenge fewer than three times in the
  // last minute. A try is counted when it starts, a refusal is not.
  function mayTry() {
    try {
      var now = Date.now(), seen = JSON.parse(sessionStorage.getItem("securecart-challenge") || "[]");
      seen = seen.filter(function (at) { return now - at < 60000; });
      if (seen.length >= 3) return false;
      seen.push(now);
      sessionStorage.setItem("securecart-challenge", JSON.stringify(seen));
    } catch (e) {
      // Without storage, nothing is counted.
    }
    return true;
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
  if (!navigator.cookieEnabled) {
    say("This shop needs a cookie to check that a browser is visiting: allow cookies and load the page again.");
  } else if (!mayTry()) {
    say("The browser did not keep the shop's cookie, so the check cannot finish: allow cookies for this site, wait a minute and load the page again.");
  } else {
    work();
  }
})();
"#;

#[cfg(test)]
mod tests {
    /// The puzzle the made-up page holds.
    const PUZZLE: &str = "1000.bm9uY2U.bWFj";

    /// Runs the page's script under node, in a made-up browser: a tab that met the
    /// challenge `tries_before` times in the last minute, with cookies or not; `edit`
    /// changes the script first, `after` runs after it. What it printed (`solution N` for
    /// the solution it would send, `said TEXT` for what it shows).
    fn run(
        edit: impl Fn(String) -> String,
        after: &str,
        tries_before: usize,
        cookies: bool,
    ) -> String {
        let script = edit(super::SCRIPT.replace(
            "return send(tried);",
            "{ console.log('solution ' + tried); return; }",
        ))
        .replace("setTimeout(work, 0);", "work();");
        let program = format!(
            "(function (document, sessionStorage, navigator) {{\n{script}\n}})(\
             {{ querySelector: function () {{ return {{ content: '{PUZZLE}' }}; }},\
             getElementById: function () {{ return {{ set textContent(text) {{ console.log('said ' + text); }} }}; }} }},\
             {{ getItem: function () {{ return JSON.stringify(Array({tries_before}).fill(Date.now())); }},\
             setItem: function () {{}} }},\
             {{ cookieEnabled: {cookies} }});\n{after}"
        );
        let output = std::process::Command::new("node")
            .arg("-e")
            .arg(program)
            .output()
            .expect("node runs");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        printed
    }

    /// The page's SHA-256 is SHA-256 and its solution the edge's: node (where it is
    /// installed; the test command installs it) runs the page's script, its digests of
    /// texts of every length around the block boundaries are ring's, and it finds the
    /// solution the edge checks. A tab that met the challenge three times in the last
    /// minute (its cookie is not kept), or a browser without cookies, stops and says why.
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
        let lengths = [0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 200];
        let printed = run(
            |script| {
                script.replace(
                    "  function solves(hash) {",
                    "  globalThis.probe = sha256;\n  function solves(hash) {",
                )
            },
            &format!(
                "[{}].forEach(function (length) {{ console.log('digest ' + length + ' ' + \
                 probe('a'.repeat(length)).map(function (word) {{ \
                 return (word >>> 0).toString(16).padStart(8, '0'); }}).join('')); }});",
                lengths.map(|length| length.to_string()).join(",")
            ),
            0,
            true,
        );
        let mut digests = 0;
        let mut solutions = 0;
        for line in printed.lines() {
            if let Some(rest) = line.strip_prefix("digest ") {
                let (length, hex) = rest.split_once(' ').expect("a digest line");
                let text = "a".repeat(length.parse().expect("a length"));
                let expected = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
                let expected: String = expected
                    .as_ref()
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                assert_eq!(hex, expected, "the digest of {length} bytes");
                digests += 1;
            } else if let Some(solution) = line.strip_prefix("solution ") {
                assert_eq!(solution, securecart_waf::challenge::solve(PUZZLE));
                solutions += 1;
            }
        }
        assert_eq!((digests, solutions), (lengths.len(), 1), "{printed}");
        // Three tries in the last minute already: it stops, and says why.
        let stopped = run(|script| script, "", 3, true);
        assert!(!stopped.contains("solution "), "{stopped}");
        assert!(
            stopped.contains("said The browser did not keep the shop's cookie"),
            "{stopped}"
        );
        assert!(run(|script| script, "", 2, true).contains("solution "));
        let no_cookies = run(|script| script, "", 0, false);
        assert!(!no_cookies.contains("solution "), "{no_cookies}");
        assert!(
            no_cookies.contains("said This shop needs a cookie"),
            "{no_cookies}"
        );
    }

    /// A token is bound to the longest listed domain above its host, else to the host, in
    /// lowercase.
    #[test]
    fn tokens_are_bound_to_the_listed_domain_above_their_host() {
        let domains = ["shop.example".to_owned(), "eu.shop.example".to_owned()];
        for (host, bound, listed) in [
            ("www.shop.example", "shop.example", true),
            ("Shop.Example", "shop.example", true),
            ("www.eu.shop.example", "eu.shop.example", true),
            ("eu.shop.example", "eu.shop.example", true),
            ("badshop.example", "badshop.example", false),
            ("shop.example.evil", "shop.example.evil", false),
            ("Other.Example", "other.example", false),
        ] {
            assert_eq!(
                super::token_domain(host, &domains),
                (bound.into(), listed),
                "{host}"
            );
        }
        assert_eq!(
            super::token_domain("www.shop.example", &[]),
            ("www.shop.example".into(), false)
        );
    }

    /// The page allows its own script by its hash, and the page holds that script.
    #[test]
    fn the_pages_policy_allows_its_script_and_nothing_else() {
        use base64::Engine as _;
        let page = super::page(PUZZLE);
        let start = page.find("<script>").expect("a script") + "<script>".len();
        let end = page.find("</script>").expect("a script");
        let hash = ring::digest::digest(&ring::digest::SHA256, &page.as_bytes()[start..end]);
        let hash = base64::engine::general_purpose::STANDARD.encode(hash.as_ref());
        let policy = super::PAGE_POLICY.to_str().expect("a policy");
        assert!(
            policy.contains(&format!("script-src 'sha256-{hash}'")),
            "{policy}"
        );
        assert!(policy.starts_with("default-src 'none'"), "{policy}");
        assert!(page.contains(&format!("content=\"{PUZZLE}\"")), "{page}");
    }
}
