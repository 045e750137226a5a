//! The managed web ACL's own cost, without the network: microseconds per evaluation of
//! the requests `bench/waf.sh` sends (a GET with a query string, a 2 KiB form), and of an
//! injection. For profiling the WAF alone:
//!
//!     cargo run --release -p securecart-waf --example evaluate [ROUNDS]
//!
//! A case sends a different search each time (8,192 of them in turn), which the WAF's
//! recent answers (see `statement::recalled`) cannot spare. Two more cases send a
//! different 2 KiB form each time, whose review is words (a shop's,
//! some of them SQL's too, at random) or random printable bytes: such text leads the regex
//! engine's lazy DFAs to states they have not built yet, which the benchmark's review,
//! one sentence said over and over, does not (see `src/setsearch.rs`). A GET carries
//! 60 KiB of cookies, past what the WAF reads (see `inspect::Limited`), which the managed
//! core group refuses. The last case is the benchmark's form again, after them.
//!
//! `CASE=GET` (or `POST`) runs only the cases whose name starts so, for `perf record`.
//! `EVICT=KIB` writes that many KiB of other memory between evaluations (outside the
//! timing), as a server's network work does to the caches: the evaluation as the edge
//! sees it, its tables no longer in the CPU's caches.

use std::io::Write;
use std::time::Instant;

use securecart_waf::{Inspection, managed};

/// A case: its name, the request's method, the queries it sends in turn, its headers, and
/// the bodies it sends in turn.
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<&'a str>,
    &'a http::HeaderMap,
    Vec<&'a [u8]>,
);

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(20_000);
    let built = Instant::now();
    let acl = managed::default_acl();
    let built = built.elapsed();
    let review = "Lovely wool coat, warm and light. The sleeves are a little long for me (I'm 1.60 m), but the shop's tailor fixed that. Would buy again - 5/5! ".repeat(12);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("email", "ada@example.com")
        .append_pair("name", "Ada O'Brien")
        .append_pair("address", "1 Main St, Apt 2")
        .append_pair("city", "Springfield")
        .append_pair("card_token", "tok_visa")
        .append_pair("review", &review)
        .finish()
        .chars()
        .take(2048)
        .collect();
    let mut get = http::HeaderMap::new();
    get.insert("host", "127.0.0.1:18601".parse().expect("header"));
    let mut post = get.clone();
    post.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("header"),
    );
    post.insert("content-length", form.len().into());
    let query = "q=red+wool+coat&category=women&page=2&per_page=24&sort=price";
    // Forms of varied reviews, a different one for each of 256 evaluations in turn.
    let mut seed = 42u64;
    let mut random = move |below: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % below
    };
    const WORDS: [&str; 24] = [
        "the", "coat", "is", "warm", "and", "light", "but", "sleeves", "long", "for", "me",
        "would", "buy", "again", "from", "update", "order", "table", "size", "colour", "my",
        "shop", "select", "with",
    ];
    let mut varied = |printable: bool| -> Vec<Vec<u8>> {
        (0..256)
            .map(|_| {
                let mut review = String::new();
                while review.len() < 2000 {
                    if printable {
                        review.push(char::from(b' ' + random(95) as u8));
                    } else {
                        review.push_str(WORDS[random(WORDS.len())]);
                        review.push(if random(9) == 0 { ',' } else { ' ' });
                    }
                }
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("review", &review)
                    .finish()
                    .into_bytes()
            })
            .collect()
    };
    let words = varied(false);
    let printable = varied(true);
    // Searches whose values no two of 8,192 evaluations in turn share: two made-up words,
    // a category and a page each (the WAF's recent answers are of no help; see
    // `recalled`).
    let mut made_up = |letters: usize| -> String {
        (0..letters)
            .map(|_| char::from(b'a' + random(26) as u8))
            .collect()
    };
    let searches: Vec<String> = (0..8192)
        .map(|round| {
            format!(
                "q={}+{}&category={}&page={round}",
                made_up(7),
                made_up(5),
                made_up(6),
            )
        })
        .collect();
    // A head as large as the edge takes (64 KiB) of cookies: about 4,400 of them, of
    // which the WAF would read the first 200 (see `inspect::Limited`).
    let mut cookies = get.clone();
    let line = (0..)
        .map(|at| format!("c{at}=v{at}"))
        .scan(0, |length, cookie| {
            *length += cookie.len() + 2;
            (*length < 60 * 1024).then_some(cookie)
        })
        .collect::<Vec<_>>()
        .join("; ");
    cookies.insert("cookie", line.parse().expect("header"));
    let cases: [Case<'_>; 8] = [
        (
            "GET with a query string",
            "GET",
            vec![query],
            &get,
            vec![b""],
        ),
        (
            "POST of a 2 KiB form",
            "POST",
            vec![query],
            &post,
            vec![form.as_bytes()],
        ),
        (
            "GET with an injection",
            "GET",
            vec!["q=1%27%20OR%20%271%27%3D%271"],
            &get,
            vec![b""],
        ),
        (
            "GET with varied queries",
            "GET",
            searches.iter().map(String::as_str).collect(),
            &get,
            vec![b""],
        ),
        (
            "POST of 2 KiB forms of varied words",
            "POST",
            vec![""],
            &post,
            words.iter().map(Vec::as_slice).collect(),
        ),
        (
            "POST of 2 KiB forms of random printable bytes",
            "POST",
            vec![""],
            &post,
            printable.iter().map(Vec::as_slice).collect(),
        ),
        (
            "GET with 60 KiB of cookies",
            "GET",
            vec![query],
            &cookies,
            vec![b""],
        ),
        (
            "POST of a 2 KiB form, after those",
            "POST",
            vec![query],
            &post,
            vec![form.as_bytes()],
        ),
    ];
    let client = "127.0.0.1".parse().expect("address");
    let line = format!(
        "default ACL ({} rules) built in {:.1} ms",
        acl.rules().len(),
        built.as_secs_f64() * 1e3
    );
    if writeln!(std::io::stdout(), "{line}").is_err() {
        return;
    }
    let only = std::env::var("CASE").ok();
    let evict: usize = std::env::var("EVICT")
        .ok()
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    let mut other = vec![0u8; evict * 1024];
    for (name, method, queries, headers, bodies) in cases {
        if only.as_deref().is_some_and(|only| !name.starts_with(only)) {
            continue;
        }
        let evaluate = |round: u32| {
            let inspection = Inspection::new(
                method,
                "/api/catalog/products",
                Some(queries[round as usize % queries.len()]),
                headers,
                bodies[round as usize % bodies.len()],
                false,
                client,
            );
            acl.evaluate(&inspection)
        };
        let variants = bodies.len().max(queries.len());
        let blocked = (0..variants as u32)
            .filter(|&round| evaluate(round).blocked)
            .count();
        let mut spent = std::time::Duration::ZERO;
        for round in 0..rounds {
            if !other.is_empty() {
                other
                    .iter_mut()
                    .for_each(|byte| *byte = byte.wrapping_add(1));
                std::hint::black_box(&other);
            }
            let started = Instant::now();
            std::hint::black_box(evaluate(round));
            spent += started.elapsed();
        }
        let each = spent.as_secs_f64() * 1e6 / f64::from(rounds);
        let line = match variants {
            1 => format!(
                "{name}: {each:.2} µs per evaluation (blocked: {})",
                blocked == 1
            ),
            all => format!("{name}: {each:.2} µs per evaluation ({blocked} of {all} blocked)"),
        };
        if writeln!(std::io::stdout(), "{line}").is_err() {
            return;
        }
    }
}
