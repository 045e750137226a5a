//! AWS WAF's challenge action: a request that meets a `challenge` rule without a valid
//! token gets a page whose script solves a small proof of work and comes back with it for
//! a token (a cookie), which the rule then accepts for its immunity time. A browser does
//! this unseen, in a fraction of a second; a script that does not run JavaScript never
//! gets past, and one that does pays in work for each token.
//!
//! Everything is signed with one key (HMAC-SHA256), so the edge keeps no state per
//! client:
//!
//! - a **puzzle** says when it was issued and a random nonce, bound to the client's
//!   address and the host: `ISSUED.NONCE.MAC`. It may be solved within
//!   [`PUZZLE_LIFETIME`], from the address it was given to.
//! - its **solution** is a number `n` such that SHA-256 of `PUZZLE:n` starts with
//!   [`DIFFICULTY`] zero bits: about 65,000 hashes to find, one to check.
//! - a **token** says when its puzzle was issued, bound to the host (not to the address,
//!   so that a shopper whose address changes keeps it, as AWS WAF's tokens are):
//!   `ISSUED.MAC`. A rule accepts it for as long as its immunity time says, counted from
//!   the puzzle's issue, so that redeeming a solution again earns no later token. A token
//!   is good from any address while it lasts: the proof of work is paid per puzzle, and
//!   each puzzle is given to one address.
//!
//! Edges that share a key accept each other's tokens (`securecart up` gives its regions'
//! edges one).

use std::net::IpAddr;

use base64::Engine as _;
use ring::hmac;

/// The cookie a token is kept in (AWS WAF's `aws-waf-token`).
pub const TOKEN_COOKIE: &str = "securecart-waf-token";

/// Where the challenge page sends its solution (a form POST of `puzzle` and `solution`);
/// the edge answers it itself on every listener whose web ACL challenges.
pub const SOLUTION_PATH: &str = "/.securecart/waf/challenge";

/// The zero bits a solution's hash starts with.
pub const DIFFICULTY: u32 = 16;

/// How long a puzzle may be solved for after it was issued, in seconds.
pub const PUZZLE_LIFETIME: u64 = 300;

/// How far ahead of this edge's clock a token may be dated (another edge's clock), in
/// seconds.
const FUTURE_TOLERANCE: u64 = 60;

/// How long a challenge rule accepts a token by default (AWS WAF's default immunity time),
/// in seconds.
pub const DEFAULT_IMMUNITY: u32 = 300;

/// What a request's token says to a challenge rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// No token.
    Absent,
    /// A token not signed by this key or not for this host, or malformed.
    Invalid,
    /// A token whose puzzle was issued this many seconds ago.
    Solved(u64),
    /// No token, from a client the edge trusts to need none (another region's edge,
    /// fetching through this one as its origin shield on behalf of clients its own web
    /// ACL saw).
    Trusted,
}

impl TokenState {
    /// The label a challenge rule gives the request (AWS WAF's `token` labels), for a rule
    /// whose immunity time is `immunity` seconds.
    pub fn label(self, immunity: u32) -> &'static str {
        match self {
            TokenState::Absent => "securecart:token:absent",
            TokenState::Invalid => "securecart:token:rejected:invalid",
            TokenState::Solved(age) if age > u64::from(immunity) => {
                "securecart:token:rejected:expired"
            }
            TokenState::Solved(_) => "securecart:token:accepted",
            TokenState::Trusted => "securecart:token:trusted",
        }
    }

    /// Whether a rule whose immunity time is `immunity` seconds accepts it.
    pub fn accepted(self, immunity: u32) -> bool {
        match self {
            TokenState::Solved(age) => age <= u64::from(immunity),
            TokenState::Trusted => true,
            TokenState::Absent | TokenState::Invalid => false,
        }
    }
}

/// Why a solution gets no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The puzzle is malformed, not signed by this key, or for another client or host.
    Forged,
    /// The puzzle was issued more than [`PUZZLE_LIFETIME`] ago (or more than a minute
    /// ahead of this edge's clock).
    Expired,
    /// The solution's hash does not start with enough zero bits.
    Wrong,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Forged => "the puzzle was not issued to this client for this host",
            Refusal::Expired => "the puzzle is too old: load the page again",
            Refusal::Wrong => "the solution does not solve the puzzle",
        })
    }
}

/// The key that signs puzzles and tokens.
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// A MAC in puzzles and tokens: base64url, without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl TokenKey {
    /// A key from a secret (edges that share it accept each other's tokens).
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The MAC of `kind` and `parts`.
    fn sign(&self, kind: &str, parts: &[&[u8]]) -> hmac::Tag {
        hmac::sign(&self.0, &signed(kind, parts))
    }

    /// Whether `mac` (base64url) is that of `kind` and `parts` (compared in constant time).
    fn verify(&self, mac: &str, kind: &str, parts: &[&[u8]]) -> bool {
        BASE64
            .decode(mac)
            .is_ok_and(|mac| hmac::verify(&self.0, &signed(kind, parts), &mac).is_ok())
    }

    /// A new puzzle for `client` on `host`, issued at `now` (seconds since the epoch).
    pub fn puzzle(&self, now: u64, client: IpAddr, host: &str) -> String {
        let nonce: [u8; 12] = ring::rand::generate(&ring::rand::SystemRandom::new())
            .map(|random| random.expose())
            .unwrap_or_default();
        let nonce = BASE64.encode(nonce);
        let issued = now.to_string();
        let client = client.to_canonical().to_string();
        let mac = self.sign(
            "puzzle",
            &[
                issued.as_bytes(),
                nonce.as_bytes(),
                client.as_bytes(),
                host.as_bytes(),
            ],
        );
        format!("{issued}.{nonce}.{}", BASE64.encode(mac.as_ref()))
    }

    /// The token for a solution of `puzzle` sent by `client` on `host` at `now`, or why
    /// there is none.
    pub fn redeem(
        &self,
        puzzle: &str,
        solution: &str,
        now: u64,
        client: IpAddr,
        host: &str,
    ) -> Result<String, Refusal> {
        let mut parts = puzzle.split('.');
        let (Some(issued), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Forged);
        };
        let client = client.to_canonical().to_string();
        let signed = [
            issued.as_bytes(),
            nonce.as_bytes(),
            client.as_bytes(),
            host.as_bytes(),
        ];
        if !self.verify(mac, "puzzle", &signed) {
            return Err(Refusal::Forged);
        }
        let issued: u64 = issued.parse().map_err(|_| Refusal::Forged)?;
        // (Another edge sharing the key may have issued it, by a clock a little ahead.)
        if issued > now.saturating_add(FUTURE_TOLERANCE)
            || now.saturating_sub(issued) > PUZZLE_LIFETIME
        {
            return Err(Refusal::Expired);
        }
        if !solves(puzzle, solution) {
            return Err(Refusal::Wrong);
        }
        // Dated when the puzzle was issued: solving one again (or redeeming its solution
        // again) earns no later token.
        Ok(self.token(issued, host))
    }

    /// A token for a puzzle issued at `issued` on `host`.
    pub fn token(&self, issued: u64, host: &str) -> String {
        let issued = issued.to_string();
        let mac = self.sign("token", &[issued.as_bytes(), host.as_bytes()]);
        format!("{issued}.{}", BASE64.encode(mac.as_ref()))
    }

    /// What `token` (none: the request has none) says on `host` at `now`.
    pub fn read(&self, token: Option<&[u8]>, now: u64, host: &str) -> TokenState {
        let Some(token) = token else {
            return TokenState::Absent;
        };
        let Some((issued, mac)) = std::str::from_utf8(token)
            .ok()
            .and_then(|token| token.split_once('.'))
        else {
            return TokenState::Invalid;
        };
        if !self.verify(mac, "token", &[issued.as_bytes(), host.as_bytes()]) {
            return TokenState::Invalid;
        }
        match issued.parse::<u64>() {
            // A token from a clock a little ahead (another edge's) is as good as new; one
            // from further ahead is not taken, lest it last that much longer.
            Ok(issued) if issued <= now.saturating_add(FUTURE_TOLERANCE) => {
                TokenState::Solved(now.saturating_sub(issued))
            }
            _ => TokenState::Invalid,
        }
    }
}

/// What a MAC signs: `kind` and `parts`, each after its length, so that no two lists sign
/// alike.
fn signed(kind: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut message = Vec::with_capacity(64);
    for part in std::iter::once(kind.as_bytes()).chain(parts.iter().copied()) {
        message.extend_from_slice(&(part.len() as u64).to_be_bytes());
        message.extend_from_slice(part);
    }
    message
}

/// Whether `solution` (a decimal number) solves `puzzle`: SHA-256 of `PUZZLE:SOLUTION`
/// starts with [`DIFFICULTY`] zero bits.
pub fn solves(puzzle: &str, solution: &str) -> bool {
    if solution.is_empty() || solution.len() > 16 || !solution.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(puzzle.as_bytes());
    context.update(b":");
    context.update(solution.as_bytes());
    leading_zero_bits(context.finish().as_ref()) >= DIFFICULTY
}

/// The zero bits a hash starts with.
fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut zeros = 0;
    for &byte in hash {
        zeros += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    zeros
}

/// A solution of `puzzle`, found as the challenge page's script finds it (counting up
/// from 0): for tests, and for clients of the shop's own that run no JavaScript.
pub fn solve(puzzle: &str) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| solves(puzzle, n))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solved_puzzle_gives_a_token_for_its_host_only() {
        let key = TokenKey::new(b"test key");
        let client: IpAddr = "127.0.0.9".parse().expect("address");
        let other: IpAddr = "127.0.0.10".parse().expect("address");
        let puzzle = key.puzzle(1_000, client, "shop.example");
        let solution = solve(&puzzle);
        assert!(solves(&puzzle, &solution));
        // (About one number in 65,536 solves a puzzle: the next few do not.)
        let wrong = (solution.parse::<u64>().expect("number") + 1).to_string();
        assert_eq!(
            key.redeem(&puzzle, &wrong, 1_010, client, "shop.example"),
            Err(Refusal::Wrong)
        );
        let token = key
            .redeem(&puzzle, &solution, 1_010, client, "shop.example")
            .expect("token");
        // Another client, host or key, a forged or stale puzzle: refused.
        assert_eq!(
            key.redeem(&puzzle, &solution, 1_010, other, "shop.example"),
            Err(Refusal::Forged)
        );
        assert_eq!(
            key.redeem(&puzzle, &solution, 1_010, client, "evil.example"),
            Err(Refusal::Forged)
        );
        assert_eq!(
            TokenKey::new(b"other").redeem(&puzzle, &solution, 1_010, client, "shop.example"),
            Err(Refusal::Forged)
        );
        let forged = puzzle.replacen("1000.", "2000.", 1);
        assert_eq!(
            key.redeem(&forged, &solve(&forged), 2_010, client, "shop.example"),
            Err(Refusal::Forged)
        );
        assert_eq!(
            key.redeem(
                &puzzle,
                &solution,
                1_000 + PUZZLE_LIFETIME + 1,
                client,
                "shop.example"
            ),
            Err(Refusal::Expired)
        );
        assert_eq!(
            key.redeem(&puzzle, &solution, 939, client, "shop.example"),
            Err(Refusal::Expired)
        );
        assert!(
            key.redeem(&puzzle, &solution, 940, client, "shop.example")
                .is_ok()
        );
        for malformed in ["", "1000", "1000.a.b.c", "x.y.z"] {
            assert_eq!(
                key.redeem(malformed, "1", 1_010, client, "shop.example"),
                Err(Refusal::Forged)
            );
        }
        // The token: its age, on its host and key only, from any address.
        let read = |token: &str, host: &str| key.read(Some(token.as_bytes()), 1_100, host);
        // Its age counts from the puzzle's issue: solving it again earns no later token.
        assert_eq!(read(&token, "shop.example"), TokenState::Solved(100));
        assert_eq!(
            key.redeem(&puzzle, &solution, 1_200, client, "shop.example"),
            Ok(token.clone())
        );
        // A token dated more than a minute ahead of the clock is not taken.
        assert_eq!(
            key.read(
                Some(key.token(1_161, "shop.example").as_bytes()),
                1_100,
                "shop.example"
            ),
            TokenState::Invalid
        );
        assert_eq!(
            key.read(
                Some(key.token(1_160, "shop.example").as_bytes()),
                1_100,
                "shop.example"
            ),
            TokenState::Solved(0)
        );
        assert_eq!(read(&token, "evil.example"), TokenState::Invalid);
        assert_eq!(
            TokenKey::new(b"other").read(Some(token.as_bytes()), 1_100, "shop.example"),
            TokenState::Invalid
        );
        let (solved, mac) = token.split_once('.').expect("token");
        assert_eq!(
            read(
                &format!("{}.{mac}", solved.parse::<u64>().expect("time") + 200),
                "shop.example"
            ),
            TokenState::Invalid
        );
        for malformed in ["", ".", "abc", "1010.", "1010.!!"] {
            assert_eq!(read(malformed, "shop.example"), TokenState::Invalid);
        }
        assert_eq!(key.read(None, 1_100, "shop.example"), TokenState::Absent);
        // A rule's immunity time decides.
        assert!(TokenState::Solved(90).accepted(300));
        assert!(!TokenState::Solved(301).accepted(300));
        assert_eq!(
            TokenState::Solved(301).label(300),
            "securecart:token:rejected:expired"
        );
        assert!(!TokenState::Absent.accepted(300));
        assert!(TokenState::Trusted.accepted(60));
        assert_eq!(TokenState::Trusted.label(60), "securecart:token:trusted");
        // A solution is a short decimal number.
        for refused in ["", "-1", "1e3", "00000000000000001"] {
            assert!(!solves(&puzzle, refused), "{refused}");
        }
    }
}
