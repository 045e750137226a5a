//! DNS messages in and out: a query's bytes become a response's bytes.
//!
//! Every query is checked before it is answered: a response is never answered; an unknown
//! opcode gets NOTIMP, a malformed message FORMERR, an EDNS version above 0 BADVERS, a
//! class other than IN or a name outside our zones REFUSED. A UDP answer fits the
//! client's buffer (512 bytes without EDNS, at most [`MAX_UDP_PAYLOAD`] with it); a longer
//! one is sent truncated (TC) so the client asks again over TCP, and an ANY question over
//! UDP is always truncated, so the server never amplifies a spoofed query.
//!
//! Answers to plain questions are the same bytes every time, so they are kept: the
//! [`Responder`] finds a query's answer by its question (read directly from the bytes,
//! without decoding the message) and sends the stored bytes with the query's id, flags
//! and letter case written in. Only queries it cannot read that way (EDNS options, several
//! questions, anything odd) go through hickory-proto's decoder.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use parking_lot::RwLock;

use crate::answer::Catalog;

/// The largest UDP answer, whatever the client offers: the size that avoids IP
/// fragmentation on the Internet (DNS Flag Day 2020).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The most choices kept per question: a multivalue group's orders are many; past it, the
/// answer is computed each time.
const MAX_KEPT_CHOICES: usize = 1_024;

/// The most answers kept; past it, new answers are computed each time.
const MAX_KEPT_ANSWERS: usize = 100_000;

/// How a query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: answers are bounded by the client's buffer.
    Udp,
    /// TCP: answers up to 65,535 bytes.
    Tcp,
}

/// Answers queries from a catalog, keeping the bytes of plain answers, and of each choice
/// a routing policy can make.
#[derive(Debug)]
pub struct Responder {
    catalog: Catalog,
    kept: RwLock<HashSet<Kept, Hashing>>,
    chosen: RwLock<HashMap<Box<[u8]>, Arc<ChosenAnswers>, Hashing>>,
}

/// The kept answers' hashing: foldhash, seeded per process (the keys are questions that
/// clients choose), which costs less than the standard library's SipHash.
type Hashing = foldhash::fast::RandomState;

/// A kept answer and its question's key, in one allocation: a look-up compares the key
/// and copies the answer from adjacent memory. It is found by its key (`Borrow<[u8]>`,
/// with the key's hash).
#[derive(Debug)]
struct Kept {
    key_length: usize,
    bytes: Box<[u8]>,
}

impl Kept {
    fn new(key: &[u8], answer: &[u8]) -> Self {
        Self {
            key_length: key.len(),
            bytes: [key, answer].concat().into_boxed_slice(),
        }
    }

    fn answer(&self) -> &[u8] {
        &self.bytes[self.key_length..]
    }
}

impl Borrow<[u8]> for Kept {
    fn borrow(&self) -> &[u8] {
        &self.bytes[..self.key_length]
    }
}

impl Hash for Kept {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Borrow::<[u8]>::borrow(self).hash(state);
    }
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        Borrow::<[u8]>::borrow(self) == Borrow::<[u8]>::borrow(other)
    }
}

impl Eq for Kept {}

/// The answers to one question whose name and type are a policy group, by the members
/// chosen: a choice decides the answer's bytes, so a query costs the choice and a copy.
#[derive(Debug)]
struct ChosenAnswers {
    policy: Arc<crate::zone::PolicyEntry>,
    by_choice: RwLock<HashMap<Vec<usize>, Arc<[u8]>>>,
}

/// What answering a query produced.
struct Responded {
    bytes: Vec<u8>,
    /// Whether a routing policy chose the answer.
    dynamic: bool,
    /// The question's name and type, and the members chosen, when a policy group at that
    /// name and type alone decided the answer.
    direct: Option<(LowerName, RecordType, Vec<usize>)>,
}

impl Responder {
    /// A responder for a catalog.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            kept: RwLock::new(HashSet::with_hasher(Hashing::default())),
            chosen: RwLock::new(HashMap::with_hasher(Hashing::default())),
        }
    }

    /// The catalog it answers from.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The response to a query's bytes from `client`; `None` when the query gets no
    /// answer at all (it is a response itself, or too short to carry an id).
    pub fn respond(&self, query: &[u8], transport: Transport, client: IpAddr) -> Option<Vec<u8>> {
        let mut response = Vec::new();
        self.respond_into(query, transport, client, &mut response)
            .then_some(response)
    }

    /// [`Responder::respond`] into `response` (emptied first), so that a server answering
    /// many queries reuses its buffers; `false` when the query gets no answer.
    pub fn respond_into(
        &self,
        query: &[u8],
        transport: Transport,
        client: IpAddr,
        response: &mut Vec<u8>,
    ) -> bool {
        response.clear();
        let Some(plain) = PlainQuery::read(query, transport) else {
            let responded = respond_to(&self.catalog, query, transport, client, rand::random());
            return responded
                .map(|responded| *response = responded.bytes)
                .is_some();
        };
        if let Some(kept) = self.kept.read().get(plain.key()) {
            plain.fill(kept.answer(), response);
            return true;
        }
        let seed = rand::random();
        let entry = self.chosen.read().get(plain.key()).cloned();
        if let Some(entry) = entry {
            let address = plain.subnet.unwrap_or(client);
            let environment = self.catalog.environment();
            // Weighted, failover, multivalue and IP-based records need not know where the
            // client is (IP-based ones read its address alone).
            let location = if entry.policy.locates {
                environment.locate(address)
            } else {
                crate::policy::ClientLocation {
                    address: Some(address),
                    ..Default::default()
                }
            };
            let choice = entry.policy.choose(&location, environment, seed);
            if let Some(bytes) = entry.by_choice.read().get(&choice) {
                plain.fill(bytes, response);
                return true;
            }
            let Some(responded) = respond_to(&self.catalog, query, transport, client, seed) else {
                return false;
            };
            if let Some((_, _, made)) = &responded.direct
                && *made == choice
                && plain.may_keep(&responded.bytes)
            {
                let mut by_choice = entry.by_choice.write();
                if by_choice.len() < MAX_KEPT_CHOICES {
                    by_choice.insert(choice, Arc::from(responded.bytes.as_slice()));
                }
            }
            *response = responded.bytes;
            return true;
        }
        let Some(responded) = respond_to(&self.catalog, query, transport, client, seed) else {
            return false;
        };
        let keep = plain.may_keep(&responded.bytes);
        if keep && !responded.dynamic {
            let mut kept = self.kept.write();
            if kept.len() < MAX_KEPT_ANSWERS {
                kept.insert(Kept::new(plain.key(), &responded.bytes));
            }
        } else if keep
            && let Some((name, record_type, choice)) = responded.direct
            && let Some(policy) = self.catalog.policy_entry(&name, record_type)
        {
            let mut chosen = self.chosen.write();
            if chosen.len() < MAX_KEPT_ANSWERS {
                chosen.insert(
                    plain.key().into(),
                    Arc::new(ChosenAnswers {
                        policy,
                        by_choice: RwLock::new(HashMap::from([(
                            choice,
                            Arc::from(responded.bytes.as_slice()),
                        )])),
                    }),
                );
            }
        }
        *response = responded.bytes;
        true
    }
}

/// The longest key a plain query has: its question (a name of at most 255 bytes, its type
/// and class), the EDNS flag and size limit (3 bytes), a client subnet's family and
/// prefix length (3), and the transport's mark (1).
const MAX_KEY: usize = 255 + 4 + 3 + 3 + 1;

/// A query of the common shape: one question, no answer records, at most an OPT record
/// whose only option, if any, is EDNS Client Subnet.
struct PlainQuery<'q> {
    query: &'q [u8],
    /// Where the question ends.
    question_end: usize,
    /// The question in lower case, whether the query had EDNS, the answer's size limit,
    /// and the client subnet's family and prefix length (not its address), on the stack:
    /// most queries are answered without allocating.
    key: Key,
    /// The client subnet's address, and where its bytes are in the query.
    subnet: Option<IpAddr>,
    subnet_bytes: std::ops::Range<usize>,
}

impl<'q> PlainQuery<'q> {
    fn read(query: &'q [u8], transport: Transport) -> Option<Self> {
        if query.len() < 12 || query.len() > 512 {
            return None;
        }
        let flags = u16::from_be_bytes([query[2], query[3]]);
        let count = |at: usize| u16::from_be_bytes([query[at], query[at + 1]]);
        // A query (QR 0), opcode QUERY, one question, no answers or authorities.
        if flags & 0xf800 != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 {
            return None;
        }
        let additionals = count(10);
        let mut at = 12;
        loop {
            let length = usize::from(*query.get(at)?);
            if length == 0 {
                at += 1;
                break;
            }
            // Compression pointers or odd label types: not plain.
            if length > 63 {
                return None;
            }
            at += 1 + length;
        }
        let question_end = at + 4;
        // A name longer than 255 bytes is the full decoder's to refuse.
        if question_end > query.len() || question_end - 12 > 255 + 4 {
            return None;
        }
        let mut key = Key {
            bytes: [0; MAX_KEY],
            length: 0,
        };
        let mut subnet = None;
        let mut subnet_bytes = 0..0;
        for (into, byte) in key.bytes.iter_mut().zip(&query[12..question_end]) {
            *into = byte.to_ascii_lowercase();
        }
        key.length = question_end - 12;
        match additionals {
            0 if question_end == query.len() => {
                key.extend_from_slice(&[0, 0, 0]);
            }
            // An OPT record: root owner, type 41, the payload size as class, version and
            // flags as TTL, then no option or only a client subnet.
            1 if query.len() >= question_end + 11
                && query[question_end] == 0
                && query[question_end + 1..question_end + 3] == [0, 41]
                && usize::from(u16::from_be_bytes([
                    query[question_end + 9],
                    query[question_end + 10],
                ])) == query.len() - question_end - 11 =>
            {
                let payload =
                    u16::from_be_bytes([query[question_end + 3], query[question_end + 4]]);
                // A version above 0 is answered BADVERS by the full decoder.
                if query[question_end + 6] != 0 {
                    return None;
                }
                let limit = match transport {
                    Transport::Udp => payload.clamp(512, MAX_UDP_PAYLOAD),
                    Transport::Tcp => u16::MAX,
                };
                key.push(1);
                key.extend_from_slice(&limit.to_be_bytes());
                let options = &query[question_end + 11..];
                if !options.is_empty() {
                    let (address, at) = read_subnet(options)?;
                    let start = question_end + 11 + at;
                    // A source prefix of 0 tells nothing: the resolver's address stands.
                    subnet = (options[6] > 0).then_some(address);
                    subnet_bytes = start..query.len();
                    // The family and the source prefix length.
                    key.extend_from_slice(&options[4..7]);
                }
            }
            _ => return None,
        }
        if transport == Transport::Tcp {
            key.push(b't');
        }
        Some(Self {
            query,
            question_end,
            key,
            subnet,
            subnet_bytes,
        })
    }

    fn key(&self) -> &[u8] {
        &self.key.bytes[..self.key.length]
    }

    /// Whether `answer` may be kept for this query's key: it carries the one question,
    /// where [`PlainQuery::fill`] writes the query's. (An answer without it, such as a
    /// FORMERR from a decoder that refused what this reader took, is never kept.)
    fn may_keep(&self, answer: &[u8]) -> bool {
        answer.len() >= self.question_end && answer[4..6] == [0, 1]
    }

    /// A kept answer with this query's id, RD and CD flags and question (its letter case),
    /// into `response` (empty).
    fn fill(&self, kept: &[u8], response: &mut Vec<u8>) {
        response.extend_from_slice(kept);
        response[0] = self.query[0];
        response[1] = self.query[1];
        // RD (bit 0 of byte 2) and CD (bit 4 of byte 3) are copied from the query.
        response[2] = (response[2] & !0x01) | (self.query[2] & 0x01);
        response[3] = (response[3] & !0x10) | (self.query[3] & 0x10);
        response[12..self.question_end].copy_from_slice(&self.query[12..self.question_end]);
        // The client subnet's address ends the answer, as the OPT record's last option.
        let address = &self.query[self.subnet_bytes.clone()];
        if !address.is_empty() && response.len() >= address.len() {
            let tail = response.len() - address.len();
            response[tail..].copy_from_slice(address);
        }
    }
}

/// A plain query's key: at most [`MAX_KEY`] bytes, which the checks before each write
/// guarantee (a question of at most 259 bytes, then at most 7 more).
struct Key {
    bytes: [u8; MAX_KEY],
    length: usize,
}

impl Key {
    fn extend_from_slice(&mut self, more: &[u8]) {
        self.bytes[self.length..self.length + more.len()].copy_from_slice(more);
        self.length += more.len();
    }

    fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }
}

/// A lone EDNS Client Subnet option (RFC 7871): its address, and where the address's bytes
/// start within the options. `None` for anything else, which the full decoder handles.
fn read_subnet(options: &[u8]) -> Option<(IpAddr, usize)> {
    if options.len() < 8 || options[0..2] != [0, 8] {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([options[2], options[3]]));
    let family = u16::from_be_bytes([options[4], options[5]]);
    let (source, scope) = (options[6], options[7]);
    let bytes = &options[8..];
    if length != options.len() - 4 || scope != 0 || bytes.len() != usize::from(source).div_ceil(8) {
        return None;
    }
    let address = match (family, source) {
        (1, 0..=32) => {
            let mut octets = [0u8; 4];
            octets[..bytes.len()].copy_from_slice(bytes);
            IpAddr::from(octets)
        }
        (2, 0..=128) => {
            let mut octets = [0u8; 16];
            octets[..bytes.len()].copy_from_slice(bytes);
            IpAddr::from(octets)
        }
        _ => return None,
    };
    // Bits past the source prefix: the full decoder answers FORMERR.
    if ipnet::IpNet::new(address, source).map_or(true, |network| network.trunc().addr() != address)
    {
        return None;
    }
    Some((address, 8))
}

/// The largest answer a query may get.
fn size_limit(request: &Message, transport: Transport) -> usize {
    match (transport, &request.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(edns)) => usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        (Transport::Udp, None) => 512,
    }
}

/// Answers a query by decoding it whole, with `seed` for the routing policies' draws.
fn respond_to(
    catalog: &Catalog,
    query: &[u8],
    transport: Transport,
    client: IpAddr,
    seed: u64,
) -> Option<Responded> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        // Too short to answer, or a response: answering it could start a loop.
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let op_code = OpCode::from_u8((query[2] >> 3) & 0x0f);
    let request = match Message::from_vec(query) {
        Ok(request) => request,
        Err(_) => return encode(&Message::error_msg(id, op_code, ResponseCode::FormErr)),
    };
    // EDNS Client Subnet (RFC 7871): the client's network stands for the resolver's
    // address.
    let subnet =
        request
            .edns
            .as_ref()
            .and_then(|edns| match edns.options().get(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
                _ => None,
            });
    // A source prefix of 0 tells nothing of the client: the resolver's address stands.
    let client = match &subnet {
        Some(subnet) if subnet.source_prefix() > 0 => subnet.addr(),
        _ => client,
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.queries.clone_from(&request.queries);
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP_PAYLOAD).set_version(0);
        response.set_edns(ours);
        if edns.version() > 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return encode(&response);
        }
    }
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return encode(&response);
    }
    // RFC 7871 section 6: a query's scope is 0, and its address has no bit set past its
    // source prefix.
    if let Some(subnet) = &subnet
        && (subnet.scope_prefix() != 0
            || ipnet::IpNet::new(subnet.addr(), subnet.source_prefix())
                .map_or(true, |network| network.trunc().addr() != subnet.addr()))
    {
        response.metadata.response_code = ResponseCode::FormErr;
        return encode(&response);
    }
    let [question] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return encode(&response);
    };
    // The client's subnet is echoed in every answer to a question (scope 0 where nothing
    // chose by it); a kept answer ends with its address, which the next such query's
    // own overwrites (`PlainQuery::fill`).
    let echo_subnet = |response: &mut Message, scope: u8| {
        if let (Some(subnet), Some(edns)) = (&subnet, response.edns.as_mut()) {
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(
                    subnet.addr(),
                    subnet.source_prefix(),
                    scope,
                )));
        }
    };
    if question.query_class() != DNSClass::IN {
        response.metadata.response_code = ResponseCode::Refused;
        echo_subnet(&mut response, 0);
        return encode(&response);
    }
    let record_type = question.query_type();
    // No zone transfers (Route 53 has none either): refused, as a server whose transfer
    // ACL admits nobody refuses them.
    if matches!(record_type, RecordType::AXFR | RecordType::IXFR) {
        response.metadata.response_code = ResponseCode::Refused;
        echo_subnet(&mut response, 0);
        return encode(&response);
    }
    let name = LowerName::new(question.name());
    let answer = catalog.answer(
        &name,
        record_type,
        &catalog.environment().locate(client),
        seed,
    );
    let dynamic = answer.dynamic;
    let direct = answer
        .direct_choice
        .clone()
        .map(|choice| (name, record_type, choice));
    // The answer holds for the client's whole network if a policy chose it by where the
    // client is or by its address, for everyone (scope 0) if not (a weighted choice, say,
    // which a resolver may give any of its clients).
    let scope = match &subnet {
        Some(subnet) if answer.by_client => subnet.source_prefix(),
        _ => 0,
    };
    echo_subnet(&mut response, scope);
    response.metadata.response_code = answer.code;
    response.metadata.authoritative = answer.authoritative;
    if transport == Transport::Udp
        && record_type == RecordType::ANY
        && answer.code != ResponseCode::Refused
    {
        // ANY over UDP: only over TCP, where the client's address is proven.
        response.metadata.truncation = true;
        return encode(&response);
    }
    response.answers = answer.answers;
    response.authorities = answer.authorities;
    response.additionals = answer.additionals;
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= size_limit(&request, transport) {
        return Some(Responded {
            bytes,
            dynamic,
            direct,
        });
    }
    encode(&response.truncate()).map(|truncated| Responded {
        dynamic,
        direct,
        ..truncated
    })
}

/// A response the same for everyone.
fn encode(message: &Message) -> Option<Responded> {
    message.to_vec().ok().map(|bytes| Responded {
        bytes,
        dynamic: false,
        direct: None,
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::{PlainQuery, Responder, Transport, encode, respond_to};
    use crate::answer::Catalog;
    use crate::answer::tests::ZONE;
    use crate::zone::Zone;

    /// The answer tests' zone, with a TXT record at the apex and forty addresses: an
    /// answer longer than 512 bytes, truncated over UDP for a client that allows no more.
    fn zone() -> String {
        let many: String = (1..=40)
            .map(|host| format!("many    IN A   127.3.0.{host}\n"))
            .collect();
        format!("{ZONE}@ IN TXT \"v=spf1 mx -all\"\n{many}")
    }

    /// A query as a resolver sends it, with what varies between two queries that share a
    /// kept answer chosen at random: the id, the flags a response copies (RD, CD) and some
    /// it does not (AD, the reserved Z bit), the name's letter case (DNS 0x20), EDNS's
    /// payload size and DO flag, and a client subnet's address bits.
    fn query(rng: &mut StdRng, name: &str, record_type: RecordType) -> Vec<u8> {
        let mut message = Message::new(rng.random(), MessageType::Query, OpCode::Query);
        let name: String = name
            .chars()
            .map(|letter| {
                if rng.random_bool(0.5) {
                    letter.to_ascii_uppercase()
                } else {
                    letter
                }
            })
            .collect();
        message.add_query(Query::query(
            Name::from_ascii(&name).expect("name"),
            record_type,
        ));
        if rng.random_bool(0.7) {
            let mut edns = Edns::new();
            edns.set_max_payload([512, 1232, 1400, 4096][rng.random_range(0..4)]);
            edns.set_dnssec_ok(rng.random_bool(0.3));
            if rng.random_bool(0.5) {
                let (address, prefix): (IpAddr, u8) = if rng.random_bool(0.5) {
                    ([127, rng.random_range(0..4), rng.random(), 0].into(), 24)
                } else {
                    let mut octets = [0u8; 16];
                    octets[..7].copy_from_slice(&rng.random::<[u8; 7]>());
                    (octets.into(), 56)
                };
                edns.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::new(address, prefix, 0)));
            }
            message.set_edns(edns);
        }
        let mut bytes = message.to_vec().expect("encode");
        // RD, then AD, CD and the reserved Z bit.
        bytes[2] = (bytes[2] & !0x01) | u8::from(rng.random_bool(0.5));
        bytes[3] &= !0x70;
        for (bit, chance) in [(0x20, 0.2), (0x10, 0.5), (0x40, 0.1)] {
            if rng.random_bool(chance) {
                bytes[3] |= bit;
            }
        }
        // Now and then, bits no resolver sets: a response code in the query, an extended
        // one in its OPT record, and the OPT record's other flags.
        if rng.random_bool(0.1) {
            bytes[3] |= rng.random_range(1..16);
        }
        let question_end = question_end(&bytes);
        if bytes.len() > question_end && rng.random_bool(0.2) {
            let at = question_end + [5, 7, 8][rng.random_range(0..3)];
            bytes[at] = rng.random();
        }
        bytes
    }

    /// The zone above, with latency records at `app` for two regions placed in
    /// 127.1.0.0/16 and 127.2.0.0/16: answers a routing policy chooses are kept too, by
    /// question and choice.
    fn responder() -> Responder {
        use crate::policy::{Environment, Policy};
        use crate::zone::{PolicyGroup, PolicyMember};
        let mut zone = Zone::parse(&zone(), "shop.test.zone", None, None).expect("zone");
        let member = |region: &str, address: [u8; 4]| PolicyMember {
            id: region.to_owned(),
            policy: Policy::Latency {
                region: region.to_owned(),
            },
            data: vec![hickory_proto::rr::RData::A(
                std::net::Ipv4Addr::from(address).into(),
            )],
            health: None,
            alias: None,
            evaluate_target_health: false,
        };
        zone.add_policy_group(
            &Name::from_ascii("app.shop.test.").expect("name"),
            RecordType::A,
            PolicyGroup {
                ttl: 30,
                members: vec![
                    member("us-east-1", [127, 1, 0, 1]),
                    member("eu-west-1", [127, 2, 0, 1]),
                ],
            },
        )
        .expect("policy group");
        let environment = Environment {
            regions: vec![
                ("us-east-1".to_owned(), (38.9, -77.0)),
                ("eu-west-1".to_owned(), (53.3, -6.3)),
            ],
            places: vec![
                ("127.1.0.0/16".parse().expect("network"), (38.9, -77.0)),
                ("127.2.0.0/16".parse().expect("network"), (53.3, -6.3)),
            ],
            ..Environment::default()
        };
        Responder::new(
            Catalog::new(vec![zone])
                .expect("catalog")
                .with_environment(environment),
        )
    }

    /// Where a query's question ends (its name, a plain one, then type and class).
    fn question_end(query: &[u8]) -> usize {
        12 + query[12..]
            .iter()
            .position(|&byte| byte == 0)
            .expect("a name")
            + 5
    }

    /// An answer from the kept bytes is the one the full decoder would write: every query
    /// after the first with its key is answered from kept bytes (a plain answer, or the
    /// one a latency policy chose for the client's place), and each answer is compared
    /// with the full decoder's for the same bytes and client. (The responder draws a seed
    /// for each choice and the full decoder is given 0: latency records do not read it,
    /// but weighted or multivalue ones would, and could not be compared so.)
    #[test]
    fn a_kept_answer_is_the_answer_the_full_decoder_writes() {
        let responder = responder();
        let mut rng = StdRng::seed_from_u64(0x0ca5e);
        let questions = [
            ("www.shop.test.", RecordType::A),
            ("www.shop.test.", RecordType::AAAA),
            ("www.shop.test.", RecordType::MX),
            ("shop.shop.test.", RecordType::A),
            ("away.shop.test.", RecordType::A),
            ("loop1.shop.test.", RecordType::A),
            ("a.b.c.shop.test.", RecordType::TXT),
            ("x.img.shop.test.", RecordType::A),
            ("nope.shop.test.", RecordType::A),
            ("shop.test.", RecordType::TXT),
            ("shop.test.", RecordType::ANY),
            ("deep.sub.shop.test.", RecordType::A),
            ("elsewhere.test.", RecordType::A),
            ("app.shop.test.", RecordType::A),
            ("many.shop.test.", RecordType::A),
        ];
        let mut from_kept = 0;
        let clients: [IpAddr; 3] = [
            [127, 0, 0, 1].into(),
            [127, 1, 0, 9].into(),
            [127, 2, 0, 9].into(),
        ];
        for round in 0..4_000 {
            let (name, record_type) = questions[round % questions.len()];
            let query = query(&mut rng, name, record_type);
            let client = clients[rng.random_range(0..clients.len())];
            for transport in [Transport::Udp, Transport::Tcp] {
                let full = respond_to(responder.catalog(), &query, transport, client, 0)
                    .expect("an answer")
                    .bytes;
                from_kept +=
                    usize::from(PlainQuery::read(&query, transport).is_some_and(|plain| {
                        responder.kept.read().contains(plain.key())
                            || responder.chosen.read().contains_key(plain.key())
                    }));
                let answered = responder
                    .respond(&query, transport, client)
                    .expect("an answer");
                // The same header and question, byte for byte (the question in the
                // query's letter case), and the same records, their names compared
                // without regard to letter case: a kept answer was written for a question
                // in another case, so its compression may differ (hickory compresses a
                // name only against the same bytes), and names that point into the
                // question read in the new query's case.
                let question_end = question_end(&query);
                assert_eq!(
                    answered[..question_end],
                    full[..question_end],
                    "{transport:?} {:?}",
                    Message::from_vec(&query)
                );
                assert_eq!(
                    Message::from_vec(&answered).expect("a message"),
                    Message::from_vec(&full).expect("a message"),
                    "{transport:?} {:?}",
                    Message::from_vec(&query)
                );
            }
        }
        // Most answers came from kept bytes, and the latency records' answer of each
        // region was kept.
        assert!(
            from_kept > 6_000,
            "{from_kept} of 8,000 answers from kept bytes"
        );
        let chosen = responder.chosen.read();
        assert!(
            chosen
                .values()
                .any(|entry| entry.by_choice.read().len() == 2),
            "both regions' answers kept"
        );
    }

    /// Only an answer that carries the question is kept: a FORMERR without one (were the
    /// decoder ever to refuse a query this reader takes) would not fit the next query's
    /// question.
    #[test]
    fn an_answer_without_the_question_is_not_kept() {
        let responder = responder();
        let mut rng = StdRng::seed_from_u64(7);
        let query = query(&mut rng, "www.shop.test.", RecordType::A);
        let plain = PlainQuery::read(&query, Transport::Udp).expect("a plain query");
        let answer = respond_to(
            responder.catalog(),
            &query,
            Transport::Udp,
            [127, 0, 0, 1].into(),
            0,
        )
        .expect("an answer")
        .bytes;
        assert!(plain.may_keep(&answer));
        let id = u16::from_be_bytes([query[0], query[1]]);
        let error = encode(&Message::error_msg(
            id,
            OpCode::Query,
            ResponseCode::FormErr,
        ))
        .expect("a FORMERR")
        .bytes;
        assert!(!plain.may_keep(&error));
        assert!(!plain.may_keep(&answer[..plain.question_end - 1]));
    }
}
