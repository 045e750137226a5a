//! The OWASP Core Rule Set's regression tests (`tests/waf-conformance/crs-regression`, in
//! the ftw format) through an edge with the managed web ACL in front of an upstream that
//! answers 200 to everything. A test whose output expects CRS rule ids is an attack and
//! should be stopped (a 4xx from the edge itself: the web ACL's 403, or a refusal of a
//! malformed request); any other test should pass through. The runner reports, per rule
//! family and in total, the share of attacks stopped and of other tests let through, and
//! fails if either falls below the committed `tests/waf-conformance/baseline.json`.
//!
//! Requests are built as go-ftw, CRS's own runner, builds them: unless a test turns
//! `autocomplete_headers` off, a body without a Content-Type is sent as a form (its
//! unescaped keys and values escaped), multipart lines end in CRLF, and Host, Connection
//! and Content-Length are added where missing.
//!
//! `SECURECART_WAF_UPDATE=1 cargo test -p securecart-edge --test crs` rewrites the
//! baseline and `tests/waf-conformance/RESULTS.md` from the run;
//! `SECURECART_WAF_DEBUG=<part of a file name>` prints the tests of those files that
//! went the wrong way, with the rule that stopped each.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use securecart_edge::waf::WafConfig;
use serde_yaml_ng::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::RunningEdge;

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/waf-conformance")
}

/// One request of a test, as bytes on the wire.
fn raw_request(input: &Value) -> Option<Vec<u8>> {
    if let Some(encoded) = input.get("encoded_request").and_then(Value::as_str) {
        use base64::Engine;
        let compact: String = encoded.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact.replace("\\n", ""))
            .ok();
    }
    let text = |key: &str| input.get(key).and_then(Value::as_str);
    let method = text("method").unwrap_or("GET");
    let uri = text("uri").unwrap_or("/");
    let version = text("version").unwrap_or("HTTP/1.1");
    let data: Vec<u8> = match input.get("data") {
        Some(Value::String(data)) => data.clone().into_bytes(),
        Some(Value::Sequence(lines)) => lines
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\r\n")
            .into_bytes(),
        _ => Vec::new(),
    };
    let autocomplete = input
        .get("autocomplete_headers")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(Value::Mapping(mapping)) = input.get("headers") {
        for (name, value) in mapping {
            let value = match value {
                Value::String(value) => value.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                _ => String::new(),
            };
            headers.push((name.as_str().unwrap_or_default().to_owned(), value));
        }
    }
    let find = |headers: &[(String, String)], wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.clone())
    };
    // What go-ftw, CRS's test runner, does to a request unless `autocomplete_headers` is
    // false: a body without a Content-Type is a form, whose unescaped keys and values it
    // escapes; a multipart body's lines end in CRLF; Connection and Content-Length are
    // added where missing.
    let mut data = data;
    if autocomplete && !data.is_empty() {
        if find(&headers, "content-type").is_none() {
            headers.push((
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let content_type = find(&headers, "content-type").unwrap_or_default();
        if content_type == "application/x-www-form-urlencoded" {
            data = escape_form(data);
        }
        if content_type.starts_with("multipart/form-data;") {
            let mut crlf = Vec::with_capacity(data.len());
            for &byte in &data {
                if byte == b'\n' {
                    crlf.push(b'\r');
                }
                crlf.push(byte);
            }
            data = crlf;
        }
    }
    if autocomplete {
        if find(&headers, "host").is_none() {
            headers.push(("Host".to_owned(), "localhost".to_owned()));
        }
        if find(&headers, "connection").is_none() {
            headers.push(("Connection".to_owned(), "close".to_owned()));
        }
        let with_body = ["POST", "PUT", "PATCH", "DELETE"].contains(&method);
        if (!data.is_empty() || with_body)
            && find(&headers, "content-length").is_none()
            && find(&headers, "transfer-encoding").is_none()
        {
            headers.push(("Content-Length".to_owned(), data.len().to_string()));
        }
    }
    let mut request = format!("{method} {uri} {version}\r\n").into_bytes();
    for (name, value) in &headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&data);
    Some(request)
}

/// go-ftw's escaping of a form body: when unescaping would not change it (it is not
/// escaped yet), each key and value is escaped as Go's `url.QueryEscape` does.
fn escape_form(data: Vec<u8>) -> Vec<u8> {
    let unescaped_equal = {
        // Go's QueryUnescape: `+` is a space, `%XX` a byte, and a bad escape an error.
        let mut same = !data.contains(&b'+');
        let mut at = 0;
        while same && at < data.len() {
            if data[at] == b'%' {
                same = false;
            }
            at += 1;
        }
        same
    };
    if !unescaped_equal {
        return data;
    }
    let escape = |part: &[u8], out: &mut Vec<u8>| {
        for &byte in part {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(byte)
                }
                b' ' => out.push(b'+'),
                _ => out.extend_from_slice(format!("%{byte:02X}").as_bytes()),
            }
        }
    };
    let mut out = Vec::with_capacity(data.len() * 2);
    for (index, token) in data.split(|byte| *byte == b'&').enumerate() {
        if index > 0 {
            out.push(b'&');
        }
        match token.iter().position(|byte| *byte == b'=') {
            Some(at) => {
                escape(&token[..at], &mut out);
                out.push(b'=');
                escape(&token[at + 1..], &mut out);
            }
            None => escape(token, &mut out),
        }
    }
    out
}

/// The status the edge answered a raw request with (0: no answer).
async fn send(edge: SocketAddr, request: &[u8]) -> u16 {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(edge).await.ok()?;
        // Not half-closed after the request: hyper takes a closed read side for a client
        // gone, and would not answer.
        stream.write_all(request).await.ok()?;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !answer.windows(2).any(|pair| pair == b"\r\n") {
            let read = stream.read(&mut buffer).await.ok()?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        let line = String::from_utf8_lossy(&answer);
        line.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    /// Attack tests of a paranoia level 1 rule, and those stopped.
    level_one: u32,
    level_one_stopped: u32,
    attacks: u32,
    stopped: u32,
    others: u32,
    passed: u32,
}

/// Each CRS rule's paranoia level (rules not listed count as level 1).
fn paranoia_levels() -> std::collections::HashMap<u64, u8> {
    std::fs::read_to_string(conformance_dir().join("paranoia-levels.tsv"))
        .expect("the paranoia levels")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (id, level) = line.split_once('\t')?;
            Some((id.parse().ok()?, level.parse().ok()?))
        })
        .collect()
}

fn percent(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        return 100.0;
    }
    (1000.0 * f64::from(part) / f64::from(whole)).round() / 10.0
}

/// Every test file of the REQUEST-* families, in order.
fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    let root = conformance_dir().join("crs-regression/tests");
    for folder in std::fs::read_dir(&root).expect("the CRS tests are in the repository") {
        let folder = folder.expect("entry").path();
        // The RESPONSE-* families judge what a server answers (data leakage): the web ACL
        // inspects requests.
        let requests = folder
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("REQUEST-"));
        if !folder.is_dir() || !requests {
            continue;
        }
        for file in std::fs::read_dir(&folder).expect("folder") {
            let file = file.expect("entry").path();
            if file
                .extension()
                .is_some_and(|extension| extension == "yaml")
            {
                files.push(file);
            }
        }
    }
    files.sort();
    assert!(files.len() > 250, "{} test files", files.len());
    files
}

/// Sends every test through an edge with `waf`: the tallies per family.
async fn run(
    waf: WafConfig,
    levels: &std::collections::HashMap<u64, u8>,
) -> BTreeMap<String, Tally> {
    // The upstream: 200 to every method and path.
    let upstream =
        securecart_testkit::serve("127.0.0.1", axum::Router::new().fallback(|| async { "ok" }))
            .await;
    let mut config = common::one_listener("app", vec![upstream.address]);
    config.listeners[0].waf = Some(waf);
    let edge = RunningEdge::start(config, "http").await;
    let address: SocketAddr = edge
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("address");

    let mut families: BTreeMap<String, Tally> = BTreeMap::new();
    for file in test_files() {
        let family = file
            .file_name()
            .and_then(|name| name.to_str())
            .map(|name| name[..3].to_owned())
            .expect("a rule-numbered file");
        let text = std::fs::read_to_string(&file).expect("readable");
        let document: Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let tally = families.entry(family).or_default();
        for test in document
            .get("tests")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let stages: Vec<&Value> = test
                .get("stages")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .collect();
            let expected: Vec<u64> = stages
                .iter()
                .filter_map(|stage| {
                    stage
                        .get("output")
                        .and_then(|output| output.get("log"))
                        .and_then(|log| log.get("expect_ids"))
                        .and_then(Value::as_sequence)
                })
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            let attack = !expected.is_empty();
            let level_one = expected
                .iter()
                .any(|id| levels.get(id).copied().unwrap_or(1) == 1);
            let mut stopped = false;
            for stage in &stages {
                let Some(request) = stage.get("input").and_then(raw_request) else {
                    continue;
                };
                let status = send(address, &request).await;
                // The edge's own refusals (the web ACL's 403, a malformed request's 400
                // and the like); the upstream answers 200.
                if status != 200 {
                    stopped = true;
                }
            }
            if let Ok(wanted) = std::env::var("SECURECART_WAF_DEBUG")
                && file.to_string_lossy().contains(&wanted)
                && attack != stopped
                && (!attack || level_one)
            {
                let id = test
                    .get("test_id")
                    .map(|id| format!("{id:?}"))
                    .unwrap_or_default();
                let request = stages
                    .first()
                    .and_then(|stage| stage.get("input"))
                    .and_then(raw_request)
                    .unwrap_or_default();
                // The rule that stopped it, if one did.
                let rule = if stopped {
                    securecart_testkit::TestClient::http1()
                        .get(&format!("http://{}/waf/sampled?limit=1", edge.admin))
                        .await
                        .json()["samples"][0]
                        .to_string()
                } else {
                    String::new()
                };
                eprintln!(
                    "{} {id} attack={attack} {rule}:\n{}\n",
                    file.file_name()
                        .and_then(|name| name.to_str())
                        .unwrap_or(""),
                    String::from_utf8_lossy(&request[..request.len().min(600)])
                );
            }
            if attack {
                tally.attacks += 1;
                tally.stopped += u32::from(stopped);
                if level_one {
                    tally.level_one += 1;
                    tally.level_one_stopped += u32::from(stopped);
                }
            } else {
                tally.others += 1;
                tally.passed += u32::from(!stopped);
            }
        }
    }
    edge.shutdown().await;
    upstream.stop().await;
    families
}

fn total(families: &BTreeMap<String, Tally>) -> Tally {
    families
        .values()
        .fold(Tally::default(), |sum, tally| Tally {
            level_one: sum.level_one + tally.level_one,
            level_one_stopped: sum.level_one_stopped + tally.level_one_stopped,
            attacks: sum.attacks + tally.attacks,
            stopped: sum.stopped + tally.stopped,
            others: sum.others + tally.others,
            passed: sum.passed + tally.passed,
        })
}

fn family_table(families: &BTreeMap<String, Tally>) -> String {
    let mut table = String::from(
        "| family | level 1 attacks stopped | all attacks stopped | other tests let through |\n|---|---:|---:|---:|\n",
    );
    for (family, tally) in families {
        table.push_str(&format!(
            "| {family} | {} / {} ({}%) | {} / {} ({}%) | {} / {} ({}%) |\n",
            tally.level_one_stopped,
            tally.level_one,
            percent(tally.level_one_stopped, tally.level_one),
            tally.stopped,
            tally.attacks,
            percent(tally.stopped, tally.attacks),
            tally.passed,
            tally.others,
            percent(tally.passed, tally.others)
        ));
    }
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crs_regression_tests_through_the_managed_web_acl() {
    let levels = paranoia_levels();
    // What the default topology and `proxy --waf` run: paranoia level 1, each rule
    // blocking.
    let families = run(WafConfig::managed(), &levels).await;
    // Stricter: paranoia levels 2 and 4, scoring anomalies with CRS's default threshold.
    let mut strict_runs = Vec::new();
    for paranoia in [2, 4] {
        let sensitivity = securecart_waf::managed::Sensitivity {
            paranoia,
            anomaly_threshold: Some(5),
        };
        let waf = WafConfig {
            acl: std::sync::Arc::new(securecart_waf::managed::acl_with(
                Vec::new(),
                &securecart_waf::managed::Group::ALL,
                sensitivity,
                &securecart_waf::managed::Overrides::default(),
            )),
            ..WafConfig::managed()
        };
        strict_runs.push((paranoia, run(waf, &levels).await));
    }

    let total_one = total(&families);
    let detection = percent(total_one.stopped, total_one.attacks);
    let level_one = percent(total_one.level_one_stopped, total_one.level_one);
    let let_through = percent(total_one.passed, total_one.others);
    let mut report = String::from(
        "# WAF conformance\n\nThe OWASP Core Rule Set's regression tests (`crs-regression/`, their README says \
         which commit) sent through an edge with the managed web ACL by \
         `crates/securecart-edge/tests/crs.rs`. An attack test (one that expects CRS rule ids) \
         counts as stopped when the edge refused it; another test counts as let through when it \
         reached the upstream.\n\n## Paranoia level 1, each rule blocking\n\n\
         What the default topology and `securecart proxy --waf` run (`WafConfig::managed()`).\n\n",
    );
    report.push_str(&format!(
        "**Attacks of paranoia level 1 rules stopped: {} of {} ({level_one}%). All attacks \
         stopped: {} of {} ({detection}%). Other tests let through: {} of {} ({let_through}%).**\n\n\
         CRS at its default paranoia level 1 runs only level 1 rules; the tests of rules of levels \
         2 to 4 (`paranoia-levels.tsv`) look for what those levels accept to block at the cost of \
         false positives. \"Other tests\" include attacks on other rules (tests that only say \
         which rules must not match), so 100% let through is not the aim.\n\n",
        total_one.level_one_stopped,
        total_one.level_one,
        total_one.stopped,
        total_one.attacks,
        total_one.passed,
        total_one.others
    ));
    report.push_str(&family_table(&families));
    let mut figures = vec![
        (
            level_one,
            "level_one_attacks_stopped_percent".to_owned(),
            "detection of level 1 attacks".to_owned(),
        ),
        (
            detection,
            "attacks_stopped_percent".to_owned(),
            "attack detection".to_owned(),
        ),
        (
            let_through,
            "others_let_through_percent".to_owned(),
            "other tests let through".to_owned(),
        ),
    ];
    for (paranoia, families) in &strict_runs {
        let sum = total(families);
        let stopped = percent(sum.stopped, sum.attacks);
        let passed = percent(sum.passed, sum.others);
        report.push_str(&format!(
            "\n## Paranoia level {paranoia}, anomaly scoring (threshold 5)\n\n\
             `paranoia_level = {paranoia}` and `anomaly_threshold = 5` (`--waf-paranoia \
             {paranoia} --waf-anomaly-threshold 5`): the managed rules up to level {paranoia}, \
             each adding its score.\n\n**All attacks stopped: {} of {} ({stopped}%). Other \
             tests let through: {} of {} ({passed}%).**\n\n",
            sum.stopped, sum.attacks, sum.passed, sum.others
        ));
        report.push_str(&family_table(families));
        figures.push((
            stopped,
            format!("paranoia_{paranoia}_attacks_stopped_percent"),
            format!("attack detection at paranoia level {paranoia}"),
        ));
        figures.push((
            passed,
            format!("paranoia_{paranoia}_others_let_through_percent"),
            format!("other tests let through at paranoia level {paranoia}"),
        ));
    }
    eprintln!("{report}");
    let baseline_file = conformance_dir().join("baseline.json");
    if std::env::var_os("SECURECART_WAF_UPDATE").is_some() {
        let baseline: serde_json::Map<String, serde_json::Value> = figures
            .iter()
            .map(|(figure, key, _)| (key.clone(), serde_json::json!(figure)))
            .collect();
        let baseline = serde_json::Value::Object(baseline);
        std::fs::write(&baseline_file, format!("{baseline:#}\n")).expect("write baseline");
        std::fs::write(conformance_dir().join("RESULTS.md"), report).expect("write results");
        return;
    }
    let baseline: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&baseline_file).expect("the committed baseline"),
    )
    .expect("baseline JSON");
    let floor = |key: &str| baseline[key].as_f64().expect("a figure");
    for (figure, key, what) in &figures {
        assert!(
            *figure >= floor(key),
            "{what} fell to {figure}% (committed: {}%)",
            floor(key)
        );
    }
}
