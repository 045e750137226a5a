//! What the WAF inspects of a request, and the parts of it a rule names (AWS WAF's
//! `FieldToMatch`). Query arguments and form or JSON bodies are parsed once per request,
//! whatever the number of rules.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use http::HeaderMap;

use crate::transform::{self, Traits, Transform};

/// A value after transformations: the value itself when they changed nothing, else a copy
/// shared by every rule that asks for the same transformations of it, or (a short value,
/// cheaper to transform again than to remember) a copy of the asking rule's own.
#[derive(Debug, Clone)]
pub enum Transformed<'v> {
    /// Unchanged: the request's own bytes.
    Same(&'v [u8]),
    /// Changed, into a copy the request's memo keeps until the evaluation ends.
    Kept(Rc<[u8]>),
    /// Changed, into a copy of the asking rule's own.
    Own(Vec<u8>),
}

impl Transformed<'_> {
    /// Whether the bytes stay where they are until the evaluation ends, so that their
    /// address can name them in the memo.
    fn stable(&self) -> bool {
        !matches!(self, Transformed::Own(_))
    }
}

impl std::ops::Deref for Transformed<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Transformed::Same(value) => value,
            Transformed::Kept(value) => value,
            Transformed::Own(value) => value,
        }
    }
}

/// A chain of transformations as one number: five bits per transformation, and the
/// length, so that equal chains make equal keys without an allocation. Unique for chains
/// of up to 12 steps (longer ones are not remembered: see [`MAX_MEMO_CHAIN`]).
pub(crate) fn chain_key(transforms: &[Transform]) -> u64 {
    transforms
        .iter()
        .fold(transforms.len() as u64, |key, &transform| {
            chain_step(key, transform)
        })
}

/// The bits a chain key gives each step.
const CHAIN_BITS: u32 = 5;

/// A chain key with one more step.
fn chain_step(key: u64, transform: Transform) -> u64 {
    key.rotate_left(CHAIN_BITS) ^ (u64::from(transform.index()) + 1)
}

/// Values shorter than this are transformed and checked again by each rule that asks:
/// cheaper than remembering them.
pub(crate) const MEMO_FROM: usize = 256;

/// The headers [`Field::HeadersButCredentials`] leaves out, whose values logs never show.
const CREDENTIALS: [http::HeaderName; 4] = [
    http::header::COOKIE,
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::HeaderName::from_static("x-api-key"),
];

/// Whether a header (by its lowercase name) carries credentials: its value is left out of
/// [`Field::HeadersButCredentials`] and never shown in a log line or sample.
pub fn is_credential(name: &str) -> bool {
    CREDENTIALS
        .iter()
        .any(|credential| credential.as_str() == name)
}

/// Up to this many headers, a header is found by comparing names (see
/// [`Inspection::any_value`]).
const FEW_HEADERS: usize = 8;

/// The longest chain [`chain_key`] tells apart; longer ones are computed each time.
pub(crate) const MAX_MEMO_CHAIN: usize = (60 / CHAIN_BITS) as usize;

/// A value's address and length, and a chain of transformations or a detector.
type ValueKey = (usize, usize, u64);

/// The memo's maps: hashed with `foldhash` (seeded per process), since a request asks
/// them hundreds of times and SipHash would cost more than much of what they remember.
/// Their keys are addresses and lengths, which a client does not choose.
type MemoMap<V> = HashMap<ValueKey, V, foldhash::fast::RandomState>;

/// What rules share while one request is evaluated: transformed values and detector
/// verdicts, by the address and length of the value (the request's own bytes, or a
/// transformed copy the memo keeps alive) and the transformations or detector.
#[derive(Debug, Default)]
struct Memo {
    transformed: MemoMap<Option<Rc<[u8]>>>,
    detected: MemoMap<bool>,
    traits: MemoMap<Traits>,
}

/// The most headers [`Field::AllHeaders`] and [`Field::HeadersButCredentials`] read, and
/// the most cookies [`Field::Cookies`] and [`Field::Cookie`] read: AWS WAF's limits (see
/// [`Limited`]).
pub const MOST_INSPECTED: usize = 200;

/// The most bytes of the headers but `Cookie` (their names and values), and of the
/// `Cookie` lines (as sent), that those fields read: AWS WAF's 8 KB.
pub const MOST_INSPECTED_BYTES: usize = 8 * 1024;

/// A part of the request that is inspected only as far as a limit, past which a
/// statement may answer by itself (AWS WAF's oversize handling).
///
/// The body is read as far as the web ACL's inspection limit. The fields that read all
/// the headers read the first [`MOST_INSPECTED`] of them (in the order the header map
/// holds them: a name's repeats follow its first line), and of those the first
/// [`MOST_INSPECTED_BYTES`] of the names and values of all but `Cookie`, and the first
/// [`MOST_INSPECTED_BYTES`] of the `Cookie` lines; the cookie fields read the cookies of
/// those first bytes of the `Cookie` lines, at most [`MOST_INSPECTED`] of them. What
/// crosses a byte limit is read as far as it. The cookies have a limit of their own, as
/// on AWS WAF, so that a long `Cookie` line leaves the other headers read whole. A
/// single header (`header:NAME`) is read whole. Without the limits, a request of 60 KiB of
/// cookies (about 4,400 of them, as the edge's 64 KiB heads allow) cost the default web
/// ACL 0.9 ms to evaluate, against 0.12 ms with them, 2.6 µs once the managed core group
/// came to refuse such a request before it scans a field (SC-CORE-025), and 2.3 µs for an
/// ordinary GET (`examples/evaluate.rs`, 2026-11-28): a flood's easy lever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Body,
    Headers,
    Cookies,
}

impl Limited {
    /// Its name in logs and evidence.
    pub fn name(self) -> &'static str {
        match self {
            Limited::Body => "body",
            Limited::Headers => "headers",
            Limited::Cookies => "cookies",
        }
    }
}

/// A part of the request a statement inspects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The path, as sent (undecoded).
    UriPath,
    /// The query string, as sent.
    QueryString,
    /// One query argument's values (decoded), by name.
    QueryArgument(String),
    /// Every query argument's value (decoded).
    AllQueryArguments,
    /// Every query argument's name (decoded).
    QueryArgumentNames,
    /// One header's values, by name.
    Header(http::HeaderName),
    /// Every header's value (as far as the limits: see [`Limited`]).
    AllHeaders,
    /// Every header's value but the credentials' (`Cookie`, `Authorization`,
    /// `Proxy-Authorization`, `X-Api-Key`): AWS WAF's headers with excluded headers, for
    /// rules that must not read (nor log) a session or a token.
    HeadersButCredentials,
    /// Every cookie's name and value (as far as the limits: see [`Limited`]).
    Cookies,
    /// One cookie's values, by name (AWS WAF's cookies with included cookies and the
    /// value match scope), as sent.
    Cookie(String),
    /// The method.
    Method,
    /// The body, as sent (up to the inspection limit).
    Body,
    /// Every value of a form (`application/x-www-form-urlencoded`) or JSON body, and the
    /// names of a form's fields.
    BodyFields,
    /// One field's values of a form or multipart body (not a file's), by name, decoded
    /// (`_charset_`, which says how a form's other fields are encoded).
    BodyField(String),
    /// The `name` and `filename` of each part of a multipart body, as sent.
    MultipartNames,
    /// Each header line of each part of a multipart body but its `Content-Disposition`
    /// (`Content-Type: text/plain; charset=utf-7`), as sent.
    MultipartHeaders,
    /// The body read as JSON whatever its content type, as AWS WAF's JSON body: every
    /// string and number (a match scope of values), or only those at or under a JSON
    /// pointer (RFC 6901: `/items/0/name`; AWS WAF's included paths). A body that is not
    /// JSON is one value, the body as sent (AWS WAF's `EVALUATE_AS_STRING`), so that
    /// breaking the document does not hide what it holds.
    JsonValues(Option<JsonPointer>),
    /// The keys of a JSON body's objects (a match scope of keys), or only those at or
    /// under a JSON pointer; a body that is not JSON is one key, the body as sent.
    JsonKeys(Option<JsonPointer>),
}

impl Field {
    /// Whether it reads the body, whose inspection stops at the web ACL's limit.
    pub fn reads_body(&self) -> bool {
        matches!(
            self,
            Field::Body
                | Field::BodyFields
                | Field::BodyField(_)
                | Field::MultipartNames
                | Field::MultipartHeaders
                | Field::JsonValues(_)
                | Field::JsonKeys(_)
        )
    }

    /// Which of the request's inspection limits cuts what it reads, if any (AWS WAF's
    /// oversize handling applies to such a field).
    pub fn limited(&self) -> Option<Limited> {
        match self {
            Field::AllHeaders | Field::HeadersButCredentials => Some(Limited::Headers),
            Field::Cookies | Field::Cookie(_) => Some(Limited::Cookies),
            field if field.reads_body() => Some(Limited::Body),
            _ => None,
        }
    }

    /// Its name in logs.
    pub fn name(&self) -> String {
        match self {
            Field::UriPath => "uri_path".to_owned(),
            Field::QueryString => "query_string".to_owned(),
            Field::QueryArgument(name) => format!("query_argument:{name}"),
            Field::AllQueryArguments => "query_arguments".to_owned(),
            Field::QueryArgumentNames => "query_argument_names".to_owned(),
            Field::Header(name) => format!("header:{name}"),
            Field::AllHeaders => "headers".to_owned(),
            Field::HeadersButCredentials => "headers_but_credentials".to_owned(),
            Field::Cookies => "cookies".to_owned(),
            Field::Cookie(name) => format!("cookie:{name}"),
            Field::Method => "method".to_owned(),
            Field::Body => "body".to_owned(),
            Field::BodyFields => "body_fields".to_owned(),
            Field::BodyField(name) => format!("body_field:{name}"),
            Field::MultipartNames => "multipart_names".to_owned(),
            Field::MultipartHeaders => "multipart_headers".to_owned(),
            Field::JsonValues(None) => "json_values".to_owned(),
            Field::JsonValues(Some(pointer)) => format!("json_values:{}", pointer.text),
            Field::JsonKeys(None) => "json_keys".to_owned(),
            Field::JsonKeys(Some(pointer)) => format!("json_keys:{}", pointer.text),
        }
    }

    /// The field of a name as [`Field::name`] writes it (`header:user-agent`,
    /// `query_argument:q`, `body`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(header) = name.strip_prefix("header:") {
            return http::HeaderName::from_bytes(header.as_bytes())
                .ok()
                .map(Field::Header);
        }
        if let Some(argument) = name.strip_prefix("query_argument:") {
            return (!argument.is_empty()).then(|| Field::QueryArgument(argument.to_owned()));
        }
        if let Some(cookie) = name.strip_prefix("cookie:") {
            let valid = !cookie.is_empty()
                && cookie
                    .bytes()
                    .all(|byte| byte.is_ascii_graphic() && !b"=;,\"\\".contains(&byte));
            return valid.then(|| Field::Cookie(cookie.to_owned()));
        }
        if let Some(field) = name.strip_prefix("body_field:") {
            return (!field.is_empty()).then(|| Field::BodyField(field.to_owned()));
        }
        if let Some(pointer) = name.strip_prefix("json_values:") {
            return JsonPointer::parse(pointer).map(|pointer| Field::JsonValues(Some(pointer)));
        }
        if let Some(pointer) = name.strip_prefix("json_keys:") {
            return JsonPointer::parse(pointer).map(|pointer| Field::JsonKeys(Some(pointer)));
        }
        Some(match name {
            "uri_path" => Field::UriPath,
            "query_string" => Field::QueryString,
            "query_arguments" => Field::AllQueryArguments,
            "query_argument_names" => Field::QueryArgumentNames,
            "headers" => Field::AllHeaders,
            "headers_but_credentials" => Field::HeadersButCredentials,
            "cookies" => Field::Cookies,
            "method" => Field::Method,
            "body" => Field::Body,
            "body_fields" => Field::BodyFields,
            "multipart_names" => Field::MultipartNames,
            "multipart_headers" => Field::MultipartHeaders,
            "json_values" => Field::JsonValues(None),
            "json_keys" => Field::JsonKeys(None),
            _ => return None,
        })
    }

    /// The names [`Field::parse`] reads, for messages.
    pub const NAMES: &'static str = "uri_path, query_string, query_argument:NAME, query_arguments, query_argument_names, header:NAME, headers, headers_but_credentials, cookies, cookie:NAME, method, body, body_fields, body_field:NAME, multipart_names, multipart_headers, json_values, json_values:/POINTER, json_keys, json_keys:/POINTER";
}

/// A request as the WAF sees it.
#[derive(Debug)]
pub struct Inspection<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    /// Decoded: borrowed from the query where nothing needed decoding.
    arguments: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    headers: &'a HeaderMap,
    /// Whether some header is past the limits (see [`Limited`]).
    headers_oversize: bool,
    /// The cookies read (see [`Limited`]), in the order sent.
    cookies: Vec<Cookie<'a>>,
    /// Whether some cookie is past the limits.
    cookies_oversize: bool,
    body: &'a [u8],
    /// The body read once into what the fields name.
    read: ReadBody,
    /// The body read as JSON, at the first question of a JSON field, where its content
    /// type did not say JSON (none: it is not JSON).
    json: std::cell::OnceCell<Option<JsonBody>>,
    /// Whether the body was longer than the inspection limit (only its start is here).
    pub body_oversize: bool,
    memo: RefCell<Memo>,
    /// The credential headers' values, found at the first question (see
    /// [`Inspection::is_credential_value`]).
    credentials: std::cell::OnceCell<Vec<&'a [u8]>>,
    /// The client's address.
    pub client: IpAddr,
    /// What a challenge rule reads the request's token with: the key, the time (seconds
    /// since the epoch) and the request's host.
    challenge: Option<(&'a crate::challenge::TokenKey, u64, &'a str)>,
    /// The token's state, read at the first challenge rule that matches.
    token: std::cell::Cell<Option<crate::challenge::TokenState>>,
}

impl<'a> Inspection<'a> {
    /// Whether `value`, one of `field`'s, may be a session or a token: a cookie, or the
    /// value of a credential header (alone, or among all the headers).
    pub(crate) fn is_credential_value(&self, field: &Field, value: &[u8]) -> bool {
        match field {
            Field::Cookies | Field::Cookie(_) => true,
            Field::Header(name) => is_credential(name.as_str()),
            // One of them, by its place: what the credential headers say is no help (a
            // header may repeat another's value).
            Field::AllHeaders => self
                .credentials
                .get_or_init(|| {
                    CREDENTIALS
                        .iter()
                        .flat_map(|name| self.headers.get_all(name))
                        .map(http::HeaderValue::as_bytes)
                        .collect()
                })
                .iter()
                // By its start: the last header read may be cut short.
                .any(|credential| credential.as_ptr() == value.as_ptr()),
            _ => false,
        }
    }

    /// The inspection of a request: its head, the start of its body (up to the limit), and
    /// whether the body went past the limit.
    pub fn new(
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
        body: &'a [u8],
        body_oversize: bool,
        client: IpAddr,
    ) -> Self {
        let query = query.unwrap_or("");
        // Sized once: a pair per `&`, and one more (collecting a filtered iterator would
        // grow the vector, and copy it, past four pairs); at most 64 ahead, since a query
        // of nothing but `&` holds no pairs.
        let mut arguments = Vec::new();
        if !query.is_empty() {
            let pairs = memchr::memchr_iter(b'&', query.as_bytes()).count() + 1;
            arguments.reserve_exact(pairs.min(64));
            arguments.extend(form_pairs(query.as_bytes()));
        }
        // More headers than are read, or one but `Cookie` not read whole (the `Cookie`
        // lines past their limit make the cookies oversize).
        let headers_oversize = headers.len() > MOST_INSPECTED || {
            let mut limits = HeaderLimits::default();
            headers.iter().any(|(name, value)| {
                let read = limits.read(name, value.as_bytes());
                name != http::header::COOKIE && read.is_none_or(|read| read.len() < value.len())
            })
        };
        let (cookies, cookies_oversize) = cookies_read(headers);
        let read = read_body(headers, body);
        Self {
            method,
            path,
            query,
            arguments,
            headers,
            headers_oversize,
            cookies,
            cookies_oversize,
            body,
            read,
            body_oversize,
            // An IPv4 client on a dual-stack socket is its IPv4 address, for IP sets,
            // countries and rate keys.
            client: client.to_canonical(),
            memo: RefCell::default(),
            credentials: std::cell::OnceCell::new(),
            json: std::cell::OnceCell::new(),
            challenge: None,
            token: std::cell::Cell::new(None),
        }
    }

    /// The inspection, with what a `challenge` rule reads the request's token with: the
    /// key tokens are signed with, the time (seconds since the epoch) and the request's
    /// host (without its port). Without it, no request has a token.
    pub fn with_challenge(
        mut self,
        key: &'a crate::challenge::TokenKey,
        now: u64,
        host: &'a str,
    ) -> Self {
        self.challenge = Some((key, now, host));
        self
    }

    /// The inspection of a request from a client trusted to need no token (another
    /// region's edge): challenge rules let it through.
    pub fn trusted(self) -> Self {
        self.token.set(Some(crate::challenge::TokenState::Trusted));
        self
    }

    /// What the request's token (its first [`crate::challenge::TOKEN_COOKIE`]) says.
    pub fn token(&self) -> crate::challenge::TokenState {
        if let Some(state) = self.token.get() {
            return state;
        }
        let state = match self.challenge {
            None => crate::challenge::TokenState::Absent,
            Some((key, now, host)) => key.read(
                self.cookie_values(crate::challenge::TOKEN_COOKIE).next(),
                now,
                host,
            ),
        };
        self.token.set(Some(state));
        state
    }

    /// `value` (one of this request's values) after `transforms`, computed once per
    /// request whatever the number of rules that ask. (The memo knows values by their
    /// address: a value that does not live as long as the inspection must not be asked
    /// for, which is why this is the crate's own.)
    pub(crate) fn transformed<'v>(
        &self,
        value: &'v [u8],
        transforms: &[Transform],
    ) -> Transformed<'v> {
        self.transformed_as(value, self.traits(value), transforms)
    }

    /// [`Inspection::transformed`], for a value whose traits are known.
    pub(crate) fn transformed_as<'v>(
        &self,
        value: &'v [u8],
        traits: Traits,
        transforms: &[Transform],
    ) -> Transformed<'v> {
        // The steps before the first that could change the value leave it as it is.
        let Some(start) = transforms
            .iter()
            .position(|transform| transform.may_change(traits))
        else {
            return Transformed::Same(value);
        };
        if value.len() < MEMO_FROM || transforms.len() > MAX_MEMO_CHAIN {
            return match transform::apply(&transforms[start..], value) {
                Cow::Borrowed(_) => Transformed::Same(value),
                Cow::Owned(changed) => Transformed::Own(changed),
            };
        }
        // Each step's result is remembered by the steps that could act so far (those
        // that could not change the value as it was are left out), so that chains that
        // come to the same steps (`lowercase` alone, and URL decoding then `lowercase`
        // on a value with nothing to decode) share one copy.
        let mut result: Option<Rc<[u8]>> = None;
        let mut steps = 0u64;
        let mut key = 0u64;
        for &step in &transforms[start..] {
            if result.is_none() && !step.may_change(traits) {
                continue;
            }
            steps += 1;
            key = chain_step(key, step);
            // Up to `MAX_MEMO_CHAIN` steps, and their count above them: unique.
            let memo_key = (value.as_ptr() as usize, value.len(), key | steps << 60);
            if let Some(known) = self.memo.borrow().transformed.get(&memo_key) {
                result = known.clone();
                continue;
            }
            let input: &[u8] = result.as_deref().unwrap_or(value);
            if let Cow::Owned(changed) = transform::apply(std::slice::from_ref(&step), input) {
                result = Some(Rc::<[u8]>::from(changed));
            }
            self.memo
                .borrow_mut()
                .transformed
                .insert(memo_key, result.clone());
        }
        result.map_or(Transformed::Same(value), Transformed::Kept)
    }

    /// What one pass over `value` (one of this request's values) tells of the
    /// transformations that could change it: found once per request for a long value.
    pub(crate) fn traits(&self, value: &[u8]) -> Traits {
        if value.len() < MEMO_FROM {
            return Traits::of(value);
        }
        let key = (value.as_ptr() as usize, value.len(), 0);
        if let Some(&known) = self.memo.borrow().traits.get(&key) {
            return known;
        }
        let traits = Traits::of(value);
        self.memo.borrow_mut().traits.insert(key, traits);
        traits
    }

    /// Whether `detector` (a small number naming it) finds something in `value`, asked once
    /// per value and detector for the request when the value is the request's own bytes
    /// or a copy the memo keeps (two rules reading a value through different
    /// transformations that leave it as it is share one verdict).
    pub(crate) fn detected(
        &self,
        value: &Transformed<'_>,
        detector: u8,
        detect: impl FnOnce(&[u8]) -> bool,
    ) -> bool {
        if !value.stable() || value.is_empty() {
            return detect(value);
        }
        let key = (value.as_ptr() as usize, value.len(), u64::from(detector));
        if let Some(&known) = self.memo.borrow().detected.get(&key) {
            return known;
        }
        let found = detect(value);
        self.memo.borrow_mut().detected.insert(key, found);
        found
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The headers the fields that read them all read (see [`Limited`]), in order: the
    /// last one's value may be cut short.
    fn headers_inspected(&self) -> impl Iterator<Item = (&'a http::HeaderName, &'a [u8])> {
        let headers: &'a HeaderMap = self.headers;
        let mut limits = HeaderLimits::default();
        headers
            .iter()
            .filter_map(move |(name, value)| Some((name, limits.read(name, value.as_bytes())?)))
    }

    /// Whether some of the request is past the inspection limit of `limited`.
    pub fn oversize(&self, limited: Limited) -> bool {
        match limited {
            Limited::Body => self.body_oversize,
            Limited::Headers => self.headers_oversize,
            Limited::Cookies => self.cookies_oversize,
        }
    }

    /// The values of the cookies named `name`, as sent (trimmed), from every `Cookie` line
    /// (however many: what a rate key or a challenge token reads, not an inspection).
    pub(crate) fn cookie_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|line| line.as_bytes().split(|&byte| byte == b';'))
            .filter_map(move |pair| {
                let pair = pair.trim_ascii();
                let split = pair.iter().position(|&byte| byte == b'=')?;
                (pair[..split].trim_ascii() == name.as_bytes())
                    .then(|| pair[split + 1..].trim_ascii())
            })
    }

    /// Calls `each` with every value of `field` until it returns `true`; whether it did.
    pub fn any_value(&self, field: &Field, mut each: impl FnMut(&[u8]) -> bool) -> bool {
        match field {
            Field::UriPath => each(self.path.as_bytes()),
            Field::QueryString => each(self.query.as_bytes()),
            Field::QueryArgument(name) => self
                .arguments
                .iter()
                .filter(|(argument, _)| argument == name)
                .any(|(_, value)| each(value.as_bytes())),
            Field::AllQueryArguments => self
                .arguments
                .iter()
                .any(|(_, value)| each(value.as_bytes())),
            Field::QueryArgumentNames => {
                self.arguments.iter().any(|(name, _)| each(name.as_bytes()))
            }
            // A rule set asks for many headers a request does not have: with few
            // headers, comparing their names is cheaper than hashing the asked one.
            Field::Header(name) if self.headers.len() <= FEW_HEADERS => self
                .headers
                .iter()
                .any(|(header, value)| header == name && each(value.as_bytes())),
            Field::Header(name) => self
                .headers
                .get_all(name)
                .iter()
                .any(|value| each(value.as_bytes())),
            Field::AllHeaders => self.headers_inspected().any(|(_, value)| each(value)),
            Field::HeadersButCredentials => self
                .headers_inspected()
                .any(|(name, value)| !CREDENTIALS.contains(name) && each(value)),
            // A cookie without `=` is one text; an empty name or value is none.
            Field::Cookies => self.cookies.iter().any(|cookie| {
                (!cookie.name.is_empty() && each(cookie.name))
                    || cookie
                        .value
                        .is_some_and(|value| !value.is_empty() && each(value))
            }),
            Field::Cookie(name) => self
                .cookies
                .iter()
                .filter(|cookie| cookie.name == name.as_bytes())
                .filter_map(|cookie| cookie.value)
                .any(each),
            Field::Method => each(self.method.as_bytes()),
            Field::Body => !self.body.is_empty() && each(self.body),
            Field::BodyFields => {
                self.read.fields.iter().any(|value| each(value.as_bytes()))
                    || self
                        .read
                        .json
                        .as_ref()
                        .and_then(Option::as_ref)
                        .is_some_and(|json| {
                            json.nodes.iter().any(|node| {
                                [&node.key, &node.text]
                                    .into_iter()
                                    .flatten()
                                    .any(|text| each(text.as_bytes()))
                            })
                        })
            }
            Field::BodyField(name) => {
                // A multipart body's names are its parts', a form's among its fields.
                let names = if self.read.multipart {
                    &self.read.names
                } else {
                    &self.read.fields
                };
                self.read.named.iter().any(|&(named, value)| {
                    names[named] == *name && each(self.read.fields[value].as_bytes())
                })
            }
            Field::MultipartNames => self.read.names.iter().any(|value| each(value.as_bytes())),
            Field::MultipartHeaders => self.read.headers.iter().any(|value| each(value.as_bytes())),
            Field::JsonValues(pointer) => self.json_entries(false, pointer.as_ref(), each),
            Field::JsonKeys(pointer) => self.json_entries(true, pointer.as_ref(), each),
        }
    }

    /// Calls `each` with the keys (`keys`) or the values of the JSON body, those at or
    /// under `pointer` if any, until it returns `true`; whether it did.
    fn json_entries(
        &self,
        keys: bool,
        pointer: Option<&JsonPointer>,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> bool {
        if self.body.is_empty() {
            return false;
        }
        // Read once: when its content type said JSON, with the body, else at the first
        // question of a JSON field.
        let json = match &self.read.json {
            Some(read) => read.as_ref(),
            None => self.json.get_or_init(|| JsonBody::read(self.body)).as_ref(),
        };
        let Some(json) = json else {
            return each(self.body);
        };
        let mut each_node = |nodes: &[JsonNode]| {
            nodes
                .iter()
                .filter_map(|node| if keys { &node.key } else { &node.text }.as_ref())
                .any(|text| each(text.as_bytes()))
        };
        match pointer {
            None => each_node(&json.nodes),
            Some(pointer) => json.under(pointer).into_iter().any(each_node),
        }
    }

    /// The length of a field (for size constraints): the longest of its values.
    pub fn size(&self, field: &Field) -> usize {
        let mut longest = 0;
        self.any_value(field, |value| {
            longest = longest.max(value.len());
            false
        });
        // A whole part past its limit is too large, whatever was read of it.
        let whole = match field {
            Field::Body => Some(Limited::Body),
            Field::AllHeaders | Field::HeadersButCredentials => Some(Limited::Headers),
            Field::Cookies => Some(Limited::Cookies),
            _ => None,
        };
        if whole.is_some_and(|limited| self.oversize(limited)) {
            return usize::MAX;
        }
        longest
    }
}

/// One cookie, as sent (trimmed): its name, and its value if it has `=`.
#[derive(Debug, Clone, Copy)]
struct Cookie<'a> {
    name: &'a [u8],
    value: Option<&'a [u8]>,
}

/// What is left of the limits on the headers (see [`Limited`]) as they are read in turn.
#[derive(Debug, Clone, Copy)]
struct HeaderLimits {
    headers: usize,
    bytes: usize,
    cookie_bytes: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self {
            headers: MOST_INSPECTED,
            bytes: MOST_INSPECTED_BYTES,
            cookie_bytes: MOST_INSPECTED_BYTES,
        }
    }
}

impl HeaderLimits {
    /// What is read of the next header's value: all of it, its start (the header that
    /// crosses a byte limit), or nothing.
    fn read<'v>(&mut self, name: &http::HeaderName, value: &'v [u8]) -> Option<&'v [u8]> {
        self.headers = self.headers.checked_sub(1)?;
        if name == http::header::COOKIE {
            let read = value.len().min(self.cookie_bytes);
            self.cookie_bytes -= read;
            return (read > 0 || value.is_empty()).then(|| &value[..read]);
        }
        let size = name.as_str().len() + value.len();
        if size <= self.bytes {
            self.bytes -= size;
            return Some(value);
        }
        let read = self.bytes.saturating_sub(name.as_str().len());
        self.bytes = 0;
        (read > 0).then(|| &value[..read])
    }
}

/// The cookies of the first [`MOST_INSPECTED_BYTES`] of the `Cookie` lines (as sent,
/// whatever their bytes), at most [`MOST_INSPECTED`] of them, and whether any is past
/// those limits (see [`Limited`]): each one's name and value, trimmed.
fn cookies_read(headers: &HeaderMap) -> (Vec<Cookie<'_>>, bool) {
    let mut cookies = Vec::new();
    let mut left = MOST_INSPECTED_BYTES;
    let mut oversize = false;
    for line in headers.get_all(http::header::COOKIE) {
        let line = line.as_bytes();
        let read = &line[..line.len().min(left)];
        left -= read.len();
        oversize |= read.len() < line.len();
        let pairs = read
            .split(|&byte| byte == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|pair| !pair.is_empty());
        for pair in pairs {
            if cookies.len() == MOST_INSPECTED {
                return (cookies, true);
            }
            let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
                Some(split) => (
                    pair[..split].trim_ascii(),
                    Some(pair[split + 1..].trim_ascii()),
                ),
                None => (pair, None),
            };
            cookies.push(Cookie { name, value });
        }
    }
    (cookies, oversize)
}

/// A body as the fields read it.
#[derive(Debug, Default)]
struct ReadBody {
    /// The values of a form, XML or multipart body (or of a body whose type says JSON but
    /// which is not), a form's field names and a multipart body's file names
    /// ([`Field::BodyFields`]).
    fields: Vec<String>,
    /// Where its content type says JSON: the body read as JSON (its keys and values are
    /// [`Field::BodyFields`]'s too), or none if it is not JSON (then it is in `fields`).
    json: Option<Option<JsonBody>>,
    /// Each named field whose value is in `fields`: the place of its name (in `names`
    /// for a multipart body, else in `fields`) and of its value ([`Field::BodyField`]).
    named: Vec<(usize, usize)>,
    /// Whether the body is multipart (with a boundary).
    multipart: bool,
    /// A multipart body's `name` and `filename` parameters ([`Field::MultipartNames`]).
    names: Vec<String>,
    /// A multipart body's parts' header lines but their `Content-Disposition`
    /// ([`Field::MultipartHeaders`]).
    headers: Vec<String>,
}

/// The body read once, by its content type.
fn read_body(headers: &HeaderMap, body: &[u8]) -> ReadBody {
    let mut read = ReadBody::default();
    if body.is_empty() {
        return read;
    }
    // The Content-Type as sent (empty without one), and in lowercase.
    let sent = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let content_type = sent.to_ascii_lowercase();
    // (Multipart first: a boundary may hold `json`.)
    if content_type.trim_start().starts_with("multipart/") {
        match multipart_boundary(sent, &content_type) {
            Some(boundary) => read_multipart(body, &boundary, &mut read),
            None => read.fields.push(String::from_utf8_lossy(body).into_owned()),
        }
    } else if content_type.contains("json") {
        let json = JsonBody::read(body);
        if json.is_none() {
            read.fields.push(String::from_utf8_lossy(body).into_owned());
        }
        read.json = Some(json);
    } else if content_type.contains("xml") {
        read.fields = xml_fields(body);
    } else {
        // Forms, and bodies without a type, are read as forms, as CRS reads them. (A
        // field without a value is no named field.)
        for (name, value) in form_pairs(body) {
            let name_at = (!name.is_empty()).then(|| {
                read.fields.push(name.into_owned());
                read.fields.len() - 1
            });
            if !value.is_empty() {
                read.fields.push(value.into_owned());
                if let Some(name_at) = name_at {
                    read.named.push((name_at, read.fields.len() - 1));
                }
            }
        }
    }
    read
}

/// The names and values of a query or a form, decoded as `form_urlencoded::parse`
/// decodes them (pairs split at `&`, empty ones skipped, a name without `=` given an
/// empty value; `+` a space, then `%41` a byte, a `%` without two hex digits kept, and
/// bytes that are not UTF-8 made U+FFFD), borrowed where nothing needed decoding. The
/// separators are found with memchr and each text decoded in one pass rather than its
/// three (see [`transform::url_decode`]): a shop's forms are mostly text, whose every
/// space is a `+`.
fn form_pairs(text: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_pairs_raw(text).map(|(name, value)| (form_decoded(name), form_decoded(value)))
}

/// A form's text decoded (see [`form_pairs`]).
fn form_decoded(text: &[u8]) -> Cow<'_, str> {
    match transform::url_decode(text, false) {
        None => String::from_utf8_lossy(text),
        Some(bytes) => Cow::Owned(
            String::from_utf8(bytes)
                .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
        ),
    }
}

/// A query's or a form's pairs as sent (see [`form_pairs`]).
fn form_pairs_raw(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    memchr::memchr_iter(b'&', text)
        .chain([text.len()])
        .scan(0, move |start, end| {
            let pair = &text[*start..end];
            *start = end + 1;
            Some(pair)
        })
        .filter(|pair| !pair.is_empty())
        .map(|pair| match memchr::memchr(b'=', pair) {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        })
}

/// A multipart Content-Type's boundary, as `sent` (content types are case-insensitive,
/// boundaries not; `lower` is `sent` in lowercase).
fn multipart_boundary(sent: &str, lower: &str) -> Option<String> {
    let at = lower.find("boundary=")?;
    let boundary = sent[at + "boundary=".len()..].split(';').next()?;
    let boundary = boundary.trim().trim_matches('"');
    (!boundary.is_empty()).then(|| boundary.to_owned())
}

/// Each part of a multipart body: its head and its value.
fn multipart_parts<'t>(text: &'t str, boundary: &str) -> Vec<(&'t str, &'t str)> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.trim_start_matches(['\r', '\n']);
        parts.push(
            part.split_once("\r\n\r\n")
                .or_else(|| part.split_once("\n\n"))
                .unwrap_or((part, "")),
        );
    }
    parts
}

/// A multipart body's parts: the `name` and `filename` parameters of each one's
/// `Content-Disposition`, quotes honoured (`name="a;b"` is `a;b`), and its other header
/// lines; the values of the parts that are not files, and the names of the files (not
/// their contents: an uploaded image is bytes, not input to parse, as CRS reads uploads).
fn read_multipart(body: &[u8], boundary: &str, read: &mut ReadBody) {
    read.multipart = true;
    let text = String::from_utf8_lossy(body);
    for (head, value) in multipart_parts(&text, boundary) {
        let mut file = false;
        for line in head.lines() {
            if let Some((header, _)) = line.split_once(':')
                && !header.trim().eq_ignore_ascii_case("content-disposition")
            {
                read.headers.push(line.to_owned());
            }
            if let Some(at) = line.to_ascii_lowercase().find("filename=") {
                let name = line[at + "filename=".len()..]
                    .split(';')
                    .next()
                    .unwrap_or("");
                read.fields.push(name.trim().trim_matches('"').to_owned());
                file = true;
            }
        }
        let mut part_names = Vec::new();
        for (key, name) in disposition(head) {
            if key == "name" || key == "filename" {
                read.names.push(name.to_owned());
                if key == "name" {
                    part_names.push(read.names.len() - 1);
                }
            }
        }
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(value);
        if file || value.is_empty() {
            continue;
        }
        read.fields.push(value.to_owned());
        let value_at = read.fields.len() - 1;
        read.named
            .extend(part_names.into_iter().map(|name_at| (name_at, value_at)));
    }
}

/// The parameters of a part's `Content-Disposition` (keys in lowercase), quotes honoured.
fn disposition(head: &str) -> Vec<(String, &str)> {
    let mut parameters = Vec::new();
    for line in head.lines() {
        let Some((header, mut rest)) = line.split_once(':') else {
            continue;
        };
        if !header.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        while let Some(semicolon) = rest.find(';') {
            rest = rest[semicolon + 1..].trim_start();
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let after = after.trim_start();
            let (value, remainder) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"').unwrap_or(quoted.len());
                    (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
                }
                None => {
                    let end = after.find(';').unwrap_or(after.len());
                    (after[..end].trim_end(), &after[end..])
                }
            };
            parameters.push((key.trim().to_ascii_lowercase(), value));
            rest = remainder;
        }
    }
    parameters
}

/// The text and attribute values of an XML document (not its names, which the document's
/// schema fixes), read leniently.
fn xml_fields(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut fields = Vec::new();
    let mut rest = text.as_ref();
    while let Some(open) = rest.find('<') {
        let content = rest[..open].trim();
        if !content.is_empty() {
            fields.push(xml_decoded(content));
        }
        if let Some(cdata) = rest[open..].strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>").unwrap_or(cdata.len());
            fields.push(cdata[..end].to_owned());
            rest = cdata.get(end + 3..).unwrap_or("");
            continue;
        }
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let tag = &rest[open + 1..open + close];
        if !tag.starts_with('?') && !tag.starts_with('!') {
            // Attribute values: the quoted strings of the tag.
            let mut quoted = tag;
            while let Some(start) = quoted.find(['"', '\'']) {
                let quote = &quoted[start..=start];
                let after = &quoted[start + 1..];
                let Some(end) = after.find(quote) else { break };
                fields.push(xml_decoded(&after[..end]));
                quoted = &after[end + 1..];
            }
        }
        rest = &rest[open + close + 1..];
    }
    let tail = rest.trim();
    if !tail.is_empty() {
        fields.push(xml_decoded(tail));
    }
    fields
}

/// XML text or an attribute's value as the application's parser reads it: the five
/// predefined entities and character references (`&#123;`, `&#x7B;`) decoded. Anything
/// else with a `&` (which a strict parser would refuse) is left as it is.
fn xml_decoded(text: &str) -> String {
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        decoded.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        // A reference's name is short: its `;` is looked for among the next few bytes
        // only, so that a text of many `&` is read in linear time.
        let near = &after.as_bytes()[..after.len().min(12)];
        let reference = memchr::memchr(b';', near).and_then(|end| {
            let name = &after[..end];
            let character = match name {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let number = name.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            Some((character, end))
        });
        match reference {
            Some((character, end)) => {
                decoded.push(character);
                rest = &after[end + 1..];
            }
            None => {
                decoded.push('&');
                rest = after;
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

/// A JSON pointer (RFC 6901), read once when its field is: its text, and its steps
/// unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    steps: Box<[JsonStep]>,
}

/// A step of a JSON pointer: a member's key, and an item's place where the step is one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JsonStep {
    key: String,
    place: Option<usize>,
}

impl JsonPointer {
    /// The pointer `text` (empty: the whole document; else each step after a `/`, with `~`
    /// only as `~0`, a `~`, or `~1`, a `/`), if it is one.
    fn parse(text: &str) -> Option<Self> {
        let well_formed = (text.is_empty() || text.starts_with('/'))
            && text
                .split('~')
                .skip(1)
                .all(|after| after.starts_with(['0', '1']));
        if !well_formed {
            return None;
        }
        let steps = text
            .split('/')
            .skip(1)
            .map(|step| {
                let key = step.replace("~1", "/").replace("~0", "~");
                // An item's place is written in decimal, without leading zeros.
                let place = (key == "0"
                    || !key.starts_with('0') && key.bytes().all(|byte| byte.is_ascii_digit()))
                .then(|| key.parse::<usize>().ok())
                .flatten();
                JsonStep { key, place }
            })
            .collect();
        Some(Self {
            text: text.to_owned(),
            steps,
        })
    }
}

/// A JSON body as the fields read it: its values in the document's order (each key, and
/// each string and number; duplicate keys are kept, as the document has them), each a
/// node whose subtree follows it, so that the nodes at or under what a JSON pointer names
/// are one slice. Its memory is linear in the body's length: a node holds its own key, not
/// its path.
#[derive(Debug)]
struct JsonBody {
    nodes: Vec<JsonNode>,
}

/// A value of a JSON body.
#[derive(Debug)]
struct JsonNode {
    /// Its key, as a member of an object.
    key: Option<String>,
    /// Its place as an item of an array.
    index: usize,
    /// A string's text (without its quotes and escapes) or a number's.
    text: Option<String>,
    /// The place after its subtree's last node.
    end: usize,
}

impl JsonBody {
    /// The body read as JSON, if it is a JSON document (`serde_json` refuses documents
    /// nested past 128 levels).
    fn read(body: &[u8]) -> Option<Self> {
        use serde::de::DeserializeSeed as _;
        let mut nodes = Vec::new();
        let mut document = serde_json::Deserializer::from_slice(body);
        JsonVisit {
            nodes: &mut nodes,
            key: None,
            index: 0,
        }
        .deserialize(&mut document)
        .ok()?;
        document.end().ok()?;
        Some(Self { nodes })
    }

    /// The nodes at or under `pointer` (a JSON pointer, RFC 6901), walked down to from
    /// the root, member by member: each node it names, with its subtree (an object may
    /// hold a key twice, and a pointer through it names both).
    fn under(&self, pointer: &JsonPointer) -> Vec<&[JsonNode]> {
        let mut named = vec![0];
        for step in &pointer.steps {
            let mut next = Vec::new();
            for &parent in &named {
                let Some(node) = self.nodes.get(parent) else {
                    continue;
                };
                let mut child = parent + 1;
                while child < node.end {
                    let candidate = &self.nodes[child];
                    let matches = match &candidate.key {
                        Some(key) => *key == step.key,
                        None => Some(candidate.index) == step.place,
                    };
                    if matches {
                        next.push(child);
                    }
                    child = candidate.end;
                }
            }
            named = next;
        }
        named
            .into_iter()
            .filter_map(|at| Some(&self.nodes[at..self.nodes.get(at)?.end]))
            .collect()
    }
}

/// Reads one value of a JSON document into nodes (serde's visitor: the parser calls it as
/// it reads, and its own depth limit bounds the recursion).
struct JsonVisit<'n> {
    nodes: &'n mut Vec<JsonNode>,
    key: Option<String>,
    index: usize,
}

impl JsonVisit<'_> {
    /// A node of its own, whose subtree the caller reads after it; its place.
    fn node(&mut self, text: Option<String>) -> usize {
        self.nodes.push(JsonNode {
            key: self.key.take(),
            index: self.index,
            text,
            end: self.nodes.len() + 1,
        });
        self.nodes.len() - 1
    }

    /// A leaf: a string, a number, `true`, `false` or `null`.
    fn leaf<E>(mut self, text: Option<String>) -> Result<(), E> {
        self.node(text);
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonVisit<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, document: D) -> Result<(), D::Error> {
        document.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonVisit<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.leaf(None)
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.leaf(None)
    }

    fn visit_i64<E>(self, number: i64) -> Result<(), E> {
        self.leaf(Some(number.to_string()))
    }

    fn visit_u64<E>(self, number: u64) -> Result<(), E> {
        self.leaf(Some(number.to_string()))
    }

    fn visit_f64<E>(self, number: f64) -> Result<(), E> {
        // As `serde_json` writes it (`1e300`, not three hundred digits).
        let text = serde_json::Number::from_f64(number).map(|number| number.to_string());
        self.leaf(text)
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        self.leaf(Some(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<(), E> {
        self.leaf(Some(text))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut items: A) -> Result<(), A::Error> {
        let at = self.node(None);
        let mut index = 0;
        while items
            .next_element_seed(JsonVisit {
                nodes: &mut *self.nodes,
                key: None,
                index,
            })?
            .is_some()
        {
            index += 1;
        }
        self.nodes[at].end = self.nodes.len();
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut members: A) -> Result<(), A::Error> {
        let at = self.node(None);
        while let Some(key) = members.next_key::<String>()? {
            members.next_value_seed(JsonVisit {
                nodes: &mut *self.nodes,
                key: Some(key),
                index: 0,
            })?;
        }
        self.nodes[at].end = self.nodes.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_names_honour_quotes_and_other_headers_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "multipart/form-data; boundary=XyZ".parse().expect("value"),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"fi;le\"; filename=\"a=b.txt\"\r\nContent-Type: text/plain; charset=utf-7\r\n\r\nx\r\n--XyZ\r\ncontent-disposition: form-data; name=plain\r\n\r\ny\r\n--XyZ--\r\n";
        let inspection = Inspection::new(
            "POST",
            "/",
            None,
            &headers,
            body,
            false,
            "127.0.0.1".parse().expect("address"),
        );
        assert_eq!(
            values(&inspection, &Field::MultipartNames),
            ["fi;le", "a=b.txt", "plain"]
        );
        assert_eq!(
            values(&inspection, &Field::MultipartHeaders),
            ["Content-Type: text/plain; charset=utf-7"]
        );
        // A part by its name: not the file's.
        assert_eq!(
            values(&inspection, &Field::BodyField("plain".to_owned())),
            ["y"]
        );
        assert!(values(&inspection, &Field::BodyField("fi;le".to_owned())).is_empty());
    }

    /// A form's field by name: its values decoded, the name decoded too, and nothing of
    /// a JSON body.
    #[test]
    fn a_body_field_is_read_by_its_name() {
        let client = "127.0.0.1".parse().expect("address");
        let form = b"_charset_=utf-7&review=nice&%5Fcharset%5F=iso-8859-1&_charset_x=no";
        let mut headers = HeaderMap::new();
        let inspection = Inspection::new("POST", "/", None, &headers, form, false, client);
        let field = Field::BodyField("_charset_".to_owned());
        assert_eq!(values(&inspection, &field), ["utf-7", "iso-8859-1"]);
        headers.insert("content-type", "application/json".parse().expect("value"));
        let json = br#"{"_charset_":"utf-7"}"#;
        let inspection = Inspection::new("POST", "/", None, &headers, json, false, client);
        assert!(values(&inspection, &field).is_empty());
        assert_eq!(Field::parse("body_field:_charset_"), Some(field));
        assert_eq!(Field::parse("body_field:"), None);
    }

    #[test]
    fn fields_read_back_their_names() {
        for name in [
            "uri_path",
            "query_string",
            "query_argument:q",
            "query_arguments",
            "query_argument_names",
            "header:user-agent",
            "headers",
            "cookies",
            "method",
            "body",
            "body_fields",
            "multipart_names",
            "multipart_headers",
        ] {
            let field = Field::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(field.name(), name);
        }
        for bad in ["verb", "header:", "header:a b", "query_argument:", ""] {
            assert_eq!(Field::parse(bad), None, "{bad}");
        }
    }

    /// The one-pass form decoding reads every body as `form_urlencoded` does: every body
    /// of up to 4 bytes over the bytes that matter (separators, escapes, a byte that is
    /// not UTF-8 alone and one that starts a character), and longer ones built from
    /// pieces.
    #[test]
    fn a_query_and_a_form_body_are_read_as_form_urlencoded_reads_them() {
        let reference = |body: &[u8]| -> Vec<String> {
            form_urlencoded::parse(body)
                .flat_map(|(name, value)| [name.into_owned(), value.into_owned()])
                .filter(|text| !text.is_empty())
                .collect()
        };
        let headers = HeaderMap::new();
        let check = |body: &[u8]| {
            assert_eq!(
                read_body(&headers, body).fields,
                reference(body),
                "{body:?}"
            );
            // The query's arguments, pair by pair.
            assert!(
                form_pairs(body).eq(form_urlencoded::parse(body)),
                "{body:?}"
            );
        };
        crate::every_string(b"a+%2Bf=&\xff\xc3", 1..=4, check);
        let mut body = Vec::new();
        let pieces: [&[u8]; 10] = [
            b"name=Ada+O%27Brien",
            b"%C3%A9t%C3%A9",
            b"%zz%4",
            b"&&",
            b"q==1",
            b"%",
            b"\xc3\xa9",
            b"+%2B+",
            b"%e2%82",
            b"x",
        ];
        let mut state = 7u64;
        for _ in 0..20_000 {
            body.clear();
            for _ in 0..6 {
                // A linear congruential generator: the same bodies on every run.
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                body.extend_from_slice(pieces[(state >> 33) as usize % pieces.len()]);
            }
            check(&body);
        }
    }

    #[test]
    fn json_fields_read_keys_or_values_at_or_under_a_pointer_whatever_the_type() {
        let body = br#"{"items": [{"sku": "W-1", "qty": 2}, {"sku": "W-2", "note": "x"}],
            "a/b": {"c~d": "escaped"}, "item": "not under /items", "paid": true}"#;
        let client = "127.0.0.1".parse().expect("address");
        let field = |name: &str| Field::parse(name).expect(name);
        for content_type in ["application/json", "text/plain", ""] {
            let mut headers = HeaderMap::new();
            if !content_type.is_empty() {
                headers.insert("content-type", content_type.parse().expect("value"));
            }
            let inspection = Inspection::new("POST", "/", None, &headers, body, false, client);
            let values = |name: &str| values(&inspection, &field(name));
            assert_eq!(
                values("json_values"),
                ["W-1", "2", "W-2", "x", "escaped", "not under /items"],
                "{content_type}"
            );
            assert_eq!(values("json_values:"), values("json_values"));
            assert_eq!(values("json_values:/items"), ["W-1", "2", "W-2", "x"]);
            assert_eq!(values("json_values:/items/1"), ["W-2", "x"]);
            // An item's place is a decimal number without leading zeros.
            for missing in [
                "/items/01",
                "/items/+1",
                "/items/2",
                "/items/-",
                "/items/sku",
                "/paid/0",
            ] {
                assert!(
                    values(&format!("json_values:{missing}")).is_empty(),
                    "{missing}"
                );
            }
            assert_eq!(values("json_values:/items/0/sku"), ["W-1"]);
            // A pointer names whole steps: `/item` is not `/items`'s start.
            assert_eq!(values("json_values:/item"), ["not under /items"]);
            assert_eq!(values("json_values:/a~1b/c~0d"), ["escaped"]);
            assert!(values("json_values:/paid").is_empty());
            assert!(values("json_values:/missing").is_empty());
            assert_eq!(
                values("json_keys"),
                [
                    "items", "sku", "qty", "sku", "note", "a/b", "c~d", "item", "paid"
                ]
            );
            assert_eq!(
                values("json_keys:/items"),
                ["items", "sku", "qty", "sku", "note"]
            );
            assert_eq!(values("json_keys:/a~1b"), ["a/b", "c~d"]);
            assert_eq!(inspection.size(&field("json_values:/items")), 3);
        }
        // A body that is not JSON is one value and one key, as sent: breaking the
        // document does not hide it.
        let broken = br#"{"q": "1' OR '1'='1""#;
        let headers = HeaderMap::new();
        let inspection = Inspection::new("POST", "/", None, &headers, broken, false, client);
        let text = String::from_utf8_lossy(broken);
        assert_eq!(values(&inspection, &field("json_values:/q")), [&*text]);
        assert_eq!(values(&inspection, &field("json_keys")), [&*text]);
        // Duplicate keys are all read, as the document has them.
        let twice = br#"{"q": "1' OR '1'='1", "q": "x"}"#;
        let inspection = Inspection::new("POST", "/", None, &headers, twice, false, client);
        assert_eq!(
            values(&inspection, &field("json_values:/q")),
            ["1' OR '1'='1", "x"]
        );
        assert_eq!(values(&inspection, &field("json_keys")), ["q", "q"]);
        // What is kept is linear in the body: a node holds its key, not its path (a key
        // of 4,000 `~`, each two bytes in a pointer, over 2,000 items would take 16 MB as
        // paths).
        let deep = format!("{{\"{}\": [{}0]}}", "~".repeat(4000), "0,".repeat(2000));
        let json = JsonBody::read(deep.as_bytes()).expect("JSON");
        let kept: usize = json
            .nodes
            .iter()
            .map(|node| {
                node.key.as_ref().map_or(0, String::len) + node.text.as_ref().map_or(0, String::len)
            })
            .sum();
        assert!(kept <= deep.len(), "{kept} bytes kept of {}", deep.len());
        let pointer =
            JsonPointer::parse(&format!("/{}/2000", "~0".repeat(4000))).expect("a pointer");
        let last = json.under(&pointer);
        assert_eq!(last.iter().map(|nodes| nodes.len()).sum::<usize>(), 1);
        // An empty body has none.
        let inspection = Inspection::new("POST", "/", None, &headers, b"", false, client);
        assert!(values(&inspection, &field("json_values")).is_empty());
        // A document of one value is its own value, at the empty pointer.
        let inspection = Inspection::new("POST", "/", None, &headers, b"\"hi\"", false, client);
        assert_eq!(values(&inspection, &field("json_values")), ["hi"]);
        assert_eq!(values(&inspection, &field("json_values:")), ["hi"]);
        assert!(values(&inspection, &field("json_values:/0")).is_empty());
        for name in ["json_values", "json_keys:/a~1b/0", "json_values:"] {
            assert_eq!(field(name).name(), name);
        }
        for refused in [
            "json_values:items",
            "json_keys:/a~2",
            "json_values:/~",
            "json_key",
        ] {
            assert_eq!(Field::parse(refused), None, "{refused}");
        }
    }

    fn values(inspection: &Inspection<'_>, field: &Field) -> Vec<String> {
        let mut seen = Vec::new();
        inspection.any_value(field, |value| {
            seen.push(String::from_utf8_lossy(value).into_owned());
            false
        });
        seen
    }

    /// AWS WAF's limits: the fields that read every header or cookie read the first 200
    /// of them, and the first 8 KiB of the `Cookie` lines and of the other headers' names
    /// and values, what crosses those as far as it; a single header is read whole, and
    /// the rest is oversize.
    #[test]
    fn headers_and_cookies_are_read_as_far_as_the_limits() {
        let client = "127.0.0.1".parse().expect("address");
        let inspect = |headers: &HeaderMap, check: &dyn Fn(&Inspection<'_>)| {
            check(&Inspection::new(
                "GET", "/", None, headers, b"", false, client,
            ));
        };
        // 200 cookies are read; the 201st is not.
        let mut headers = HeaderMap::new();
        let line = (0..=MOST_INSPECTED)
            .map(|at| format!("c{at}=v{at}"))
            .collect::<Vec<_>>()
            .join("; ");
        headers.insert("cookie", line.parse().expect("value"));
        inspect(&headers, &|inspection| {
            let cookies = values(inspection, &Field::Cookies);
            assert_eq!(cookies.len(), 2 * MOST_INSPECTED);
            assert_eq!(cookies.last().map(String::as_str), Some("v199"));
            assert!(inspection.oversize(Limited::Cookies));
            assert!(!inspection.oversize(Limited::Headers));
            assert_eq!(
                values(inspection, &Field::Cookie("c199".to_owned())),
                ["v199"]
            );
            assert!(values(inspection, &Field::Cookie("c200".to_owned())).is_empty());
            assert_eq!(inspection.size(&Field::Cookies), usize::MAX);
        });
        // 8 KiB of `Cookie` lines, two of them: the cookie that crosses the limit is read
        // as far as it, and a line that is not UTF-8 is read as sent.
        let mut headers = HeaderMap::new();
        let first = b"caf\xe9=1 union select 2";
        headers.insert(
            "cookie",
            http::HeaderValue::from_bytes(first).expect("value"),
        );
        let big = "x".repeat(MOST_INSPECTED_BYTES);
        headers.append(
            "cookie",
            format!("big={big}; after=1").parse().expect("value"),
        );
        headers.insert("x-after", "1 union select 2".parse().expect("value"));
        inspect(&headers, &|inspection| {
            let cookies = values(inspection, &Field::Cookies);
            let read = MOST_INSPECTED_BYTES - first.len() - "big=".len();
            assert_eq!(cookies.len(), 4, "{cookies:?}");
            assert_eq!(cookies[1], "1 union select 2");
            assert_eq!(cookies[3].len(), read);
            assert!(inspection.oversize(Limited::Cookies));
            assert!(values(inspection, &Field::Cookie("after".to_owned())).is_empty());
            // What a challenge token or a rate key reads is not an inspection: every
            // cookie.
            assert_eq!(inspection.cookie_values("after").count(), 1);
            // All the headers: the `Cookie` lines as far as their limit, and the others
            // whole, as the `Cookie` lines do not count against the others' limit.
            let all = values(inspection, &Field::AllHeaders);
            assert_eq!(all.len(), 3, "{all:?}");
            assert_eq!(all[1].len(), MOST_INSPECTED_BYTES - first.len());
            assert_eq!(all[2], "1 union select 2");
            assert!(!inspection.oversize(Limited::Headers));
            // A `Cookie` line read in part is still a credential's value (not kept in
            // the thread's recent answers).
            inspection.any_value(&Field::AllHeaders, |value| {
                assert_eq!(
                    inspection.is_credential_value(&Field::AllHeaders, value),
                    value != b"1 union select 2",
                    "{} bytes",
                    value.len()
                );
                false
            });
        });
        // Exactly 8 KiB: every cookie, and nothing oversize.
        let mut headers = HeaderMap::new();
        let exact = "y".repeat(MOST_INSPECTED_BYTES - "a=".len());
        headers.insert("cookie", format!("a={exact}").parse().expect("value"));
        inspect(&headers, &|inspection| {
            assert_eq!(values(inspection, &Field::Cookies).len(), 2);
            assert!(!inspection.oversize(Limited::Cookies));
            assert_eq!(inspection.size(&Field::Cookies), exact.len());
        });
        // The other headers: 8 KiB of names and values; a single header is read whole.
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().expect("value"));
        headers.insert("x-long", "z".repeat(9_000).parse().expect("value"));
        headers.insert("x-after", "1 union select 2".parse().expect("value"));
        inspect(&headers, &|inspection| {
            let all = values(inspection, &Field::AllHeaders);
            let read =
                MOST_INSPECTED_BYTES - "authorization".len() - "Bearer abc".len() - "x-long".len();
            assert_eq!(all.len(), 2);
            assert_eq!(all[1].len(), read);
            let but = values(inspection, &Field::HeadersButCredentials);
            assert_eq!(but.len(), 1);
            assert_eq!(but[0].len(), read);
            assert!(inspection.oversize(Limited::Headers));
            assert!(!inspection.oversize(Limited::Cookies));
            assert_eq!(inspection.size(&Field::AllHeaders), usize::MAX);
            let single = Field::Header(http::HeaderName::from_static("x-after"));
            assert_eq!(values(inspection, &single), ["1 union select 2"]);
            assert_eq!(inspection.size(&single), "1 union select 2".len());
        });
        // Exactly 8 KiB of them: all read, nothing oversize.
        let mut headers = HeaderMap::new();
        let exact = "z".repeat(MOST_INSPECTED_BYTES - "x-exact".len());
        headers.insert("x-exact", exact.parse().expect("value"));
        inspect(&headers, &|inspection| {
            assert_eq!(values(inspection, &Field::AllHeaders), [exact.as_str()]);
            assert!(!inspection.oversize(Limited::Headers));
        });
        // 200 headers are read; the 201st is not (each one short).
        let mut headers = HeaderMap::new();
        for at in 0..=MOST_INSPECTED {
            headers.insert(
                http::HeaderName::try_from(format!("x-h{at}")).expect("name"),
                "1".parse().expect("value"),
            );
        }
        inspect(&headers, &|inspection| {
            assert_eq!(values(inspection, &Field::AllHeaders).len(), MOST_INSPECTED);
            assert!(inspection.oversize(Limited::Headers));
        });
        // Which fields have limits.
        for (name, limited) in [
            ("headers", Some(Limited::Headers)),
            ("headers_but_credentials", Some(Limited::Headers)),
            ("cookies", Some(Limited::Cookies)),
            ("cookie:session", Some(Limited::Cookies)),
            ("body_fields", Some(Limited::Body)),
            ("json_values", Some(Limited::Body)),
            ("header:user-agent", None),
            ("query_string", None),
        ] {
            assert_eq!(Field::parse(name).expect(name).limited(), limited, "{name}");
        }
    }

    #[test]
    fn fields_are_read_once_and_decoded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            "session=abc; theme=dark%20mode".parse().expect("value"),
        );
        headers.append("cookie", "theme = light ;x".parse().expect("value"));
        headers.insert("content-type", "application/json".parse().expect("value"));
        let body = br#"{"name": "O'Brien", "tags": ["<b>new</b>", 3], "nested": {"deep": "x"}}"#;
        let inspection = Inspection::new(
            "POST",
            "/api/search",
            Some("q=women%27s+shoes&page=2&q=more"),
            &headers,
            body,
            false,
            "127.0.0.1".parse().expect("address"),
        );
        assert_eq!(
            values(&inspection, &Field::QueryArgument("q".to_owned())),
            ["women's shoes", "more"]
        );
        assert_eq!(
            values(&inspection, &Field::AllQueryArguments),
            ["women's shoes", "2", "more"]
        );
        assert_eq!(
            values(&inspection, &Field::Cookies),
            [
                "session",
                "abc",
                "theme",
                "dark%20mode",
                "theme",
                "light",
                "x"
            ]
        );
        // One cookie's values, from every line, as sent; a cookie's value is a credential.
        let theme = Field::Cookie("theme".to_owned());
        assert_eq!(values(&inspection, &theme), ["dark%20mode", "light"]);
        assert!(values(&inspection, &Field::Cookie("x".to_owned())).is_empty());
        assert!(inspection.is_credential_value(&theme, b"light"));
        assert_eq!(Field::parse("cookie:theme"), Some(theme.clone()));
        assert_eq!(Field::parse(&theme.name()), Some(theme));
        for refused in ["cookie:", "cookie:a=b", "cookie:a b", "cookie:a;b"] {
            assert_eq!(Field::parse(refused), None, "{refused}");
        }
        assert_eq!(
            values(&inspection, &Field::BodyFields),
            // In the document's order.
            [
                "name",
                "O'Brien",
                "tags",
                "<b>new</b>",
                "3",
                "nested",
                "deep",
                "x"
            ]
        );
        assert_eq!(inspection.size(&Field::Body), body.len());
        // A value nested a hundred levels deep is read too.
        let deep = format!("{}\"1' OR '1'='1\"{}", "[".repeat(100), "]".repeat(100));
        let inspection = Inspection::new(
            "POST",
            "/api/search",
            None,
            &headers,
            deep.as_bytes(),
            false,
            "127.0.0.1".parse().expect("address"),
        );
        assert_eq!(values(&inspection, &Field::BodyFields), ["1' OR '1'='1"]);

        let mut form = HeaderMap::new();
        form.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().expect("value"),
        );
        let inspection = Inspection::new(
            "POST",
            "/post",
            None,
            &form,
            b"var=1234+OR+1%3D1&other=",
            true,
            "127.0.0.1".parse().expect("address"),
        );
        assert_eq!(
            values(&inspection, &Field::BodyFields),
            ["var", "1234 OR 1=1", "other"]
        );
        assert_eq!(
            inspection.size(&Field::Body),
            usize::MAX,
            "oversize counts as too large"
        );

        let client = "127.0.0.1".parse().expect("address");
        let mut multipart = HeaderMap::new();
        multipart.insert(
            "content-type",
            "multipart/form-data; boundary=XyZ".parse().expect("value"),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst value\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"shell.php\"\r\nContent-Type: text/plain\r\n\r\n<?php echo 1;\r\n--XyZ--\r\n";
        let inspection = Inspection::new("POST", "/", None, &multipart, body, false, client);
        assert_eq!(
            values(&inspection, &Field::BodyFields),
            ["first value", "shell.php"]
        );

        let mut xml = HeaderMap::new();
        xml.insert("content-type", "application/xml".parse().expect("value"));
        let body = b"<?xml version=\"1.0\"?><order id='7' note=\"gift\"><item>Mug</item><![CDATA[raw <b>]]></order>";
        let inspection = Inspection::new("POST", "/", None, &xml, body, false, client);
        assert_eq!(
            values(&inspection, &Field::BodyFields),
            ["7", "gift", "Mug", "raw <b>"]
        );
        // Values as the application's XML parser reads them: entities and character
        // references decoded, other ampersands kept.
        let body = b"<a probe=\"O:8:&quot;x&quot;:0:&#x7B;&#125;\">&lt;b&gt; &amp;amp; &copy; &#xZZ; &</a>";
        let inspection = Inspection::new("POST", "/", None, &xml, body, false, client);
        assert_eq!(
            values(&inspection, &Field::BodyFields),
            ["O:8:\"x\":0:{}", "<b> &amp; &copy; &#xZZ; &"]
        );
    }
}
