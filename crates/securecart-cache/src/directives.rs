//! Cache directives (RFC 9111 section 5.2): `Cache-Control`, and the fields that target a
//! cache like this one before it: `CDN-Cache-Control` (RFC 9213) and `Surrogate-Control`
//! (the Edge Architecture specification).
//!
//! The parser follows the list syntax of RFC 9110 section 5.6.1: directives are separated
//! by commas outside quoted strings, names are case-insensitive, and a value is a token or
//! a quoted string (RFC 9111 asks recipients to accept both forms). A delta-seconds value
//! that is not all digits, and a directive given twice with different values, make the
//! directive [`Seconds::Invalid`], which callers treat as "stale": RFC 9111 section 4.2.1
//! allows that choice for conflicting values, and it never serves what it should not.

use http::header::AsHeaderName;
use http::{HeaderMap, HeaderValue};

/// The members of a comma-separated list field (RFC 9110 section 5.6.1) over all of its
/// lines, trimmed, empty ones skipped (as recipients must); a line that is not text holds
/// none. Commas inside quoted strings are not told apart: the fields read this way
/// (`Connection`, `Vary`, `TE`, `Accept-Encoding`, `Pragma`, `Cache-Tag`) hold tokens.
/// (Text lines are ASCII: they are split by a character set, which tests each character,
/// and trimmed of ASCII space: a fraction of what `str::split(',')`'s searcher and
/// `str::trim`'s Unicode tables cost on these short lines.)
pub fn list_members<K: AsHeaderName>(headers: &HeaderMap, name: K) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(line_members)
}

/// The members of one line of a list field, as [`list_members`] reads each line.
pub fn line_members(line: &str) -> impl Iterator<Item = &str> {
    line.split([','])
        .map(str::trim_ascii)
        .filter(|member| !member.is_empty())
}

/// A directive's delta-seconds value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    /// A number of seconds, capped at 2^31 as RFC 9111 section 1.2.2 says.
    Valid(u64),
    /// Present, but not a number (or given twice with different values).
    Invalid,
}

impl Seconds {
    /// The largest delta-seconds a recipient keeps (RFC 9111 section 1.2.2).
    pub const MAX: u64 = 1 << 31;

    /// The seconds, with an invalid value as zero (stale).
    pub fn or_zero(self) -> u64 {
        match self {
            Seconds::Valid(seconds) => seconds,
            Seconds::Invalid => 0,
        }
    }

    fn parse(value: Option<&[u8]>) -> Self {
        value.map_or(Seconds::Invalid, Self::parse_digits)
    }

    /// Digits only, as delta-seconds are.
    pub(crate) fn parse_digits(digits: &[u8]) -> Self {
        match digits {
            digits if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                let seconds = digits.iter().try_fold(0u64, |total, digit| {
                    total
                        .checked_mul(10)
                        .and_then(|total| total.checked_add(u64::from(digit - b'0')))
                });
                Seconds::Valid(seconds.unwrap_or(Self::MAX).min(Self::MAX))
            }
            _ => Seconds::Invalid,
        }
    }

    /// Keeps the first value; a second, different one makes the directive invalid.
    fn merge(first: Option<Seconds>, next: Seconds) -> Option<Seconds> {
        match first {
            None => Some(next),
            Some(first) if first == next => Some(first),
            Some(_) => Some(Seconds::Invalid),
        }
    }
}

/// The directives of one field, request or response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age`.
    pub max_age: Option<Seconds>,
    /// `s-maxage` (responses, shared caches).
    pub s_maxage: Option<Seconds>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names: both revalidate every time here).
    pub no_cache: bool,
    /// `private` (a shared cache does not store).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `must-understand`.
    pub must_understand: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<Seconds>,
    /// `stale-if-error` (RFC 5861), in responses and requests.
    pub stale_if_error: Option<Seconds>,
    /// `max-stale` (requests); `Some(None)` accepts any staleness.
    pub max_stale: Option<Option<Seconds>>,
    /// `min-fresh` (requests).
    pub min_fresh: Option<Seconds>,
    /// `only-if-cached` (requests).
    pub only_if_cached: bool,
    /// Whether the field had any directive this cache applies to itself.
    pub present: bool,
}

impl Directives {
    /// The directives of a field's lines, all meant for every cache (`Cache-Control`,
    /// `CDN-Cache-Control`).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        Self::parse_targeted(lines, None)
    }

    /// The directives of a field's lines where a directive may name the device it is for
    /// (`max-age=60;edge`, as `Surrogate-Control` allows). Directives that name `device`
    /// take precedence over those that name none; those that name another device are
    /// ignored.
    pub fn parse_targeted<'a>(
        lines: impl IntoIterator<Item = &'a HeaderValue>,
        device: Option<&str>,
    ) -> Self {
        let mut general = Directives::default();
        let mut targeted = Directives::default();
        for line in lines {
            for item in Items::new(line.as_bytes()) {
                match (item.target, device) {
                    (None, _) => general.apply(&item),
                    (Some(target), Some(device))
                        if target.eq_ignore_ascii_case(device.as_bytes()) =>
                    {
                        targeted.apply(&item);
                    }
                    (Some(_), _) => {}
                }
            }
        }
        if targeted.present { targeted } else { general }
    }

    fn apply(&mut self, item: &Item<'_>) {
        let name = item.name;
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
        let seconds = || Seconds::parse(item.value.as_deref());
        if is("max-age") {
            self.max_age = Seconds::merge(self.max_age, seconds());
        } else if is("s-maxage") {
            self.s_maxage = Seconds::merge(self.s_maxage, seconds());
        } else if is("no-store") {
            self.no_store = true;
        } else if is("no-cache") {
            self.no_cache = true;
        } else if is("private") {
            self.private = true;
        } else if is("public") {
            self.public = true;
        } else if is("must-revalidate") {
            self.must_revalidate = true;
        } else if is("proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if is("must-understand") {
            self.must_understand = true;
        } else if is("stale-while-revalidate") {
            self.stale_while_revalidate = Seconds::merge(self.stale_while_revalidate, seconds());
        } else if is("stale-if-error") {
            self.stale_if_error = Seconds::merge(self.stale_if_error, seconds());
        } else if is("max-stale") {
            self.max_stale = Some(item.value.as_ref().map(|_| seconds()));
        } else if is("min-fresh") {
            self.min_fresh = Seconds::merge(self.min_fresh, seconds());
        } else if is("only-if-cached") {
            self.only_if_cached = true;
        } else {
            return;
        }
        self.present = true;
    }
}

/// One directive: its name, its value (unquoted) and the device it targets.
struct Item<'a> {
    name: &'a [u8],
    value: Option<std::borrow::Cow<'a, [u8]>>,
    target: Option<&'a [u8]>,
}

/// The directives of one field line, split at commas outside quoted strings. An item whose
/// name is not a token (`max-age =60`) is skipped whole.
struct Items<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Items<'a> {
    fn new(line: &'a [u8]) -> Self {
        Self { line, at: 0 }
    }

    fn skip_to_next(&mut self) {
        let mut quoted = false;
        while let Some(&byte) = self.line.get(self.at) {
            self.at += 1;
            match byte {
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.at += 1,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.at;
        while self.line.get(self.at).is_some_and(|&byte| is_tchar(byte)) {
            self.at += 1;
        }
        &self.line[start..self.at]
    }

    fn skip_spaces(&mut self) {
        while matches!(self.line.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// A quoted string's content, unescaped; `None` if it does not end.
    fn quoted(&mut self) -> Option<std::borrow::Cow<'a, [u8]>> {
        self.at += 1;
        let start = self.at;
        let mut escaped: Option<Vec<u8>> = None;
        while let Some(&byte) = self.line.get(self.at) {
            match byte {
                b'"' => {
                    let raw = &self.line[start..self.at];
                    self.at += 1;
                    return Some(escaped.map_or(std::borrow::Cow::Borrowed(raw), Into::into));
                }
                b'\\' => {
                    let copy = escaped.get_or_insert_with(|| self.line[start..self.at].to_vec());
                    if let Some(&next) = self.line.get(self.at + 1) {
                        copy.push(next);
                    }
                    self.at += 2;
                }
                _ => {
                    if let Some(copy) = escaped.as_mut() {
                        copy.push(byte);
                    }
                    self.at += 1;
                }
            }
        }
        None
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        loop {
            self.skip_spaces();
            if self.at >= self.line.len() {
                return None;
            }
            if self.line[self.at] == b',' {
                self.at += 1;
                continue;
            }
            let name = self.token();
            if name.is_empty() {
                self.skip_to_next();
                continue;
            }
            let value = if self.line.get(self.at) == Some(&b'=') {
                self.at += 1;
                if self.line.get(self.at) == Some(&b'"') {
                    match self.quoted() {
                        Some(value) => Some(value),
                        None => {
                            self.skip_to_next();
                            continue;
                        }
                    }
                } else {
                    Some(std::borrow::Cow::Borrowed(self.token()))
                }
            } else {
                None
            };
            let target = if self.line.get(self.at) == Some(&b';') {
                self.at += 1;
                Some(self.token())
            } else {
                None
            };
            self.skip_spaces();
            match self.line.get(self.at) {
                None => {}
                Some(b',') => self.at += 1,
                // Anything else after the item (`max-age =60`, `max-age= 60`'s stray
                // digits): the item is not well formed.
                Some(_) => {
                    self.skip_to_next();
                    if value.is_some() {
                        // `max-age= 60`: a value was expected and is malformed.
                        return Some(Item {
                            name,
                            value: Some(std::borrow::Cow::Borrowed(b"")),
                            target,
                        });
                    }
                    continue;
                }
            }
            return Some(Item {
                name,
                value,
                target,
            });
        }
    }
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_members_span_lines_trimmed_without_empty_ones_or_non_text() {
        let mut headers = HeaderMap::new();
        for line in [&b" gzip , br"[..], b",,zstd;q=0.5,", b"\xffbad, x", b""] {
            headers.append(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_bytes(line).expect("value"),
            );
        }
        let members: Vec<&str> = list_members(&headers, http::header::ACCEPT_ENCODING).collect();
        assert_eq!(members, ["gzip", "br", "zstd;q=0.5"]);
        assert_eq!(list_members(&headers, http::header::VARY).count(), 0);
    }

    fn parse(lines: &[&str]) -> Directives {
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|line| HeaderValue::from_str(line).expect("a header value"))
            .collect();
        Directives::parse(&values)
    }

    #[test]
    fn directives_parse_as_rfc_9111_reads_them() {
        let valid = |seconds| Some(Seconds::Valid(seconds));
        let cases: &[(&[&str], Option<Seconds>)] = &[
            (&["max-age=3600"], valid(3600)),
            (&["MaX-AgE=3600"], valid(3600)),
            (&["max-age=003600"], valid(3600)),
            (&["max-age=\"3600\""], valid(3600)),
            (&["max-age='3600'"], Some(Seconds::Invalid)),
            (&["max-age=-1"], Some(Seconds::Invalid)),
            (&["max-age=3600.0"], Some(Seconds::Invalid)),
            (&["max-age=a3600"], Some(Seconds::Invalid)),
            (&["max-age=3600a"], Some(Seconds::Invalid)),
            (&["max-age= 3600"], Some(Seconds::Invalid)),
            (&["max-age =3600"], None),
            (&["extension=\"max-age=3600\", max-age=1"], valid(1)),
            (&["max-age=1, extension=\"max-age=3600\""], valid(1)),
            (&["extension=\"max-age=3600\", max-age=\"1\""], valid(1)),
            (&["ext=\"a \\\" max-age=3600\", max-age=1"], valid(1)),
            (&["max-age=99999999999"], valid(Seconds::MAX)),
            (&["max-age=3600, max-age=3600"], valid(3600)),
            (&["max-age=3600, max-age=1800"], Some(Seconds::Invalid)),
            (&["max-age=3600", "max-age=1800"], Some(Seconds::Invalid)),
            (&["no-store"], None),
            (&[", ,max-age=5,"], valid(5)),
        ];
        for (lines, expected) in cases {
            assert_eq!(parse(lines).max_age, *expected, "{lines:?}");
        }
    }

    #[test]
    fn flags_and_request_directives() {
        let directives = parse(&[
            "No-Store, PRIVATE, public",
            "must-revalidate, proxy-revalidate, no-cache=\"set-cookie\", only-if-cached",
        ]);
        assert!(directives.no_store && directives.private && directives.public);
        assert!(directives.must_revalidate && directives.proxy_revalidate);
        assert!(directives.no_cache && directives.only_if_cached);
        assert_eq!(parse(&["max-stale"]).max_stale, Some(None));
        assert_eq!(
            parse(&["max-stale=10"]).max_stale,
            Some(Some(Seconds::Valid(10)))
        );
        assert!(!parse(&["foo=bar"]).present);
    }

    #[test]
    fn targeted_directives_apply_only_to_their_device() {
        let value = HeaderValue::from_static("max-age=3600;other, no-store;securecart");
        let ours = Directives::parse_targeted([&value], Some("securecart"));
        assert_eq!(ours.max_age, None);
        assert!(ours.no_store);
        let value = HeaderValue::from_static("max-age=3600;not-for-you");
        assert!(!Directives::parse_targeted([&value], Some("securecart")).present);
        let value = HeaderValue::from_static("max-age=5, max-age=60;SecureCart");
        let ours = Directives::parse_targeted([&value], Some("securecart"));
        assert_eq!(ours.max_age, Some(Seconds::Valid(60)));
        let value = HeaderValue::from_static("max-age=5, max-age=60;other");
        let theirs = Directives::parse_targeted([&value], Some("securecart"));
        assert_eq!(theirs.max_age, Some(Seconds::Valid(5)));
    }
}
