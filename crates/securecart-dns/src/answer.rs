//! The answer to one question, as an authoritative server gives it (RFC 1034 section
//! 4.3.2, RFC 2308 for negative answers, RFC 4592 for wildcards): a pure function of the
//! zones and the question, tested as a table.

use std::sync::Arc;

pub use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::policy::{Candidate, ClientLocation, Environment};
use crate::zone::Zone;

/// How many CNAME records an answer follows inside a zone.
const MAX_CNAME_CHAIN: usize = 8;

/// The zones a server answers for, and what its routing policies know of the world.
#[derive(Debug, Default)]
pub struct Catalog {
    zones: Vec<Zone>,
    environment: Environment,
}

impl Catalog {
    /// A catalog of zones; two zones of the same name are refused.
    pub fn new(zones: Vec<Zone>) -> Result<Self, String> {
        for (index, zone) in zones.iter().enumerate() {
            if zones[..index]
                .iter()
                .any(|other| other.origin() == zone.origin())
            {
                return Err(format!("the zone {} is given twice", zone.origin()));
            }
        }
        Ok(Self {
            zones,
            environment: Environment::default(),
        })
    }

    /// Sets the regions' places, measured latencies and CIDR collection the routing
    /// policies use.
    pub fn with_environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// What the routing policies know of the world.
    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    /// The zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone `name` falls in: the one with the longest origin that contains it.
    pub fn zone_for(&self, name: &LowerName) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|zone| zone.origin().zone_of(name))
            .max_by_key(|zone| zone.origin().num_labels())
    }

    /// Answers a question from a client; `seed` drives the random choices of weighted
    /// and multivalue records.
    pub fn answer(
        &self,
        name: &LowerName,
        record_type: RecordType,
        client: &ClientLocation,
        seed: u64,
    ) -> Answer {
        self.answer_as(name, record_type, client, seed, false)
    }

    /// The policy group at (`name`, `record_type`), if there is one.
    pub fn policy_entry(
        &self,
        name: &LowerName,
        record_type: RecordType,
    ) -> Option<Arc<crate::zone::PolicyEntry>> {
        self.zone_for(name)?
            .policy_entry(name, record_type)
            .cloned()
    }

    /// Answers as [`Catalog::answer`] does, with the reasons of every routing policy's
    /// choice in [`Answer::reasons`] (for `test-record`).
    pub fn explain(
        &self,
        name: &LowerName,
        record_type: RecordType,
        client: &ClientLocation,
        seed: u64,
    ) -> Answer {
        self.answer_as(name, record_type, client, seed, true)
    }

    fn answer_as(
        &self,
        name: &LowerName,
        record_type: RecordType,
        client: &ClientLocation,
        seed: u64,
        explain: bool,
    ) -> Answer {
        match self.zone_for(name) {
            Some(zone) => answer_in_zone(
                zone,
                name,
                record_type,
                &Asker {
                    client,
                    environment: &self.environment,
                    seed,
                    explain,
                    aliases_left: MAX_CNAME_CHAIN as u8,
                },
            ),
            None => Answer::refused(),
        }
    }
}

/// Who asks, for answers chosen by a routing policy.
#[derive(Clone, Copy)]
struct Asker<'a> {
    client: &'a ClientLocation,
    environment: &'a Environment,
    seed: u64,
    explain: bool,
    /// How many more aliases an answer may follow.
    aliases_left: u8,
}

/// An answer's sections and code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code.
    pub code: ResponseCode,
    /// Whether the server is authoritative for the answer (not for a referral).
    pub authoritative: bool,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section: the SOA of a negative answer, the NS records of a referral.
    pub authorities: Vec<Record>,
    /// The additional section: addresses of the names the other sections point at.
    pub additionals: Vec<Record>,
    /// Whether a routing policy chose the answer, so that it may differ by client and over
    /// time (it is not kept).
    pub dynamic: bool,
    /// Whether the choice read where the client is or its address (latency, geolocation,
    /// geoproximity, IP-based): the answer then holds for the client's network only.
    pub by_client: bool,
    /// Why a routing policy chose what it chose.
    pub reasons: Vec<String>,
    /// When the question's own name and type are a policy group: the members chosen, which
    /// alone decide the answer.
    pub direct_choice: Option<Vec<usize>>,
}

impl Answer {
    /// A name in no zone of ours.
    pub fn refused() -> Self {
        Self {
            code: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            dynamic: false,
            by_client: false,
            reasons: Vec::new(),
            direct_choice: None,
        }
    }

    fn authoritative(code: ResponseCode) -> Self {
        Self {
            code,
            authoritative: true,
            ..Self::refused()
        }
    }
}

fn answer_in_zone(
    zone: &Zone,
    name: &LowerName,
    record_type: RecordType,
    asker: &Asker<'_>,
) -> Answer {
    if let Some(cut) = zone.delegation_of(name) {
        return referral(zone, &cut);
    }
    let mut answer = Answer::authoritative(ResponseCode::NoError);
    let mut current = name.clone();
    // The owner name of the records added, for synthesised (wildcard) answers.
    let mut owner: Name = Name::from(name);
    for _ in 0..=MAX_CNAME_CHAIN {
        let found = lookup(zone, &current);
        let Some((found_at, wildcard)) = found else {
            // The name, or the last of a CNAME chain within the zone, does not exist: the
            // answer says so whatever the chain before it held (RFC 6604 section 3).
            answer.code = ResponseCode::NXDomain;
            answer.authorities.push(zone.negative_soa());
            return answer;
        };
        let synthesise = |records: &Arc<[Record]>, owner: &Name| -> Vec<Record> {
            records
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    if wildcard {
                        record.name = owner.clone();
                    }
                    record
                })
                .collect()
        };
        if record_type == RecordType::ANY {
            let before = answer.answers.len();
            for records in zone.rrsets_at(&found_at) {
                answer.answers.extend(synthesise(records, &owner));
            }
            // And what each routing group at the name answers this client.
            let policy_types: Vec<RecordType> = zone.policy_types_at(&found_at).collect();
            for policy_type in policy_types {
                let chosen = answer_in_zone(zone, &current, policy_type, asker);
                answer.dynamic = true;
                answer.by_client |= chosen.by_client;
                answer.reasons.extend(chosen.reasons);
                answer.answers.extend(
                    chosen
                        .answers
                        .into_iter()
                        .filter(|record| record.record_type() == policy_type),
                );
            }
            if answer.answers.len() == before {
                answer.authorities.push(zone.negative_soa());
            }
            break;
        }
        if let Some(records) = zone.rrset(&found_at, record_type) {
            answer.answers.extend(synthesise(records, &owner));
            break;
        }
        if let Some(entry) = zone.policy_entry(&found_at, record_type) {
            let group = &entry.group;
            let chosen = choose_members(zone, entry, record_type, asker, &owner, &mut answer);
            if found_at == *name && answer.answers.is_empty() && !entry.has_aliases {
                // The question's own name and type chose: the answer is this choice's.
                answer.direct_choice = Some(chosen.clone());
            }
            answer.dynamic = true;
            answer.by_client |= entry.reads_client();
            let before = answer.answers.len();
            // A multivalue answer holds at most eight values (Route 53's), however many a
            // record has.
            let most = if matches!(
                entry.candidates.first().map(|candidate| &candidate.policy),
                Some(crate::policy::Policy::Multivalue)
            ) {
                crate::policy::MAX_MULTIVALUE
            } else {
                usize::MAX
            };
            for index in chosen {
                let member = &group.members[index];
                for data in &member.data {
                    if answer.answers.len() - before >= most {
                        break;
                    }
                    answer
                        .answers
                        .push(Record::from_rdata(owner.clone(), group.ttl, data.clone()));
                }
                if let Some(target) = &member.alias
                    && asker.aliases_left > 0
                {
                    // An alias answers with its target's records, under its own name.
                    let target = LowerName::new(target);
                    let aliased = answer_in_zone(
                        zone,
                        &target,
                        record_type,
                        &Asker {
                            aliases_left: asker.aliases_left - 1,
                            ..*asker
                        },
                    );
                    answer.reasons.extend(aliased.reasons);
                    answer.by_client |= aliased.by_client;
                    answer.answers.extend(
                        aliased
                            .answers
                            .into_iter()
                            .filter(|record| record.record_type() == record_type)
                            .map(|mut record| {
                                record.name = owner.clone();
                                record
                            }),
                    );
                }
            }
            if answer.answers.len() == before {
                // No record applies to this client (a geolocation group without a default).
                answer.authorities.push(zone.negative_soa());
            }
            break;
        }
        // A CNAME, static or chosen by a routing policy (a weighted or failover CNAME
        // group answers other types' questions as a CNAME does).
        let cname: Option<Vec<Record>> = match zone.rrset(&found_at, RecordType::CNAME) {
            Some(cname) => Some(synthesise(cname, &owner)),
            None => zone
                .policy_entry(&found_at, RecordType::CNAME)
                .map(|entry| {
                    answer.dynamic = true;
                    answer.by_client |= entry.reads_client();
                    choose_members(zone, entry, RecordType::CNAME, asker, &owner, &mut answer)
                        .into_iter()
                        .flat_map(|index| &entry.group.members[index].data)
                        .map(|data| {
                            Record::from_rdata(owner.clone(), entry.group.ttl, data.clone())
                        })
                        .collect()
                }),
        };
        if let Some(cname) = cname.filter(|cname| !cname.is_empty()) {
            let first = cname.first().map(|record| record.data.clone());
            answer.answers.extend(cname);
            let Some(RData::CNAME(target)) = first else {
                break;
            };
            let target = LowerName::new(&target.0);
            if !zone.origin().zone_of(&target) || zone.delegation_of(&target).is_some() {
                // Outside this zone: the client's resolver follows it.
                break;
            }
            let looped = answer
                .answers
                .iter()
                .any(|record| LowerName::new(&record.name) == target);
            if looped {
                break;
            }
            owner = Name::from(&target);
            current = target;
            continue;
        }
        // The name exists without records of this type: NODATA.
        answer.authorities.push(zone.negative_soa());
        break;
    }
    add_additionals(zone, &mut answer);
    answer
}

/// The members of `entry` (a policy group at a `record_type` name) that answer the asker,
/// with the choice's reason added to `answer` when the asker wants them.
fn choose_members(
    zone: &Zone,
    entry: &crate::zone::PolicyEntry,
    record_type: RecordType,
    asker: &Asker<'_>,
    owner: &Name,
    answer: &mut Answer,
) -> Vec<usize> {
    let (group, candidates) = (&entry.group, &entry.candidates);
    let healthy = |member: &crate::zone::PolicyMember| {
        if entry.has_aliases {
            zone.member_healthy(member, record_type)
        } else {
            member.is_healthy()
        }
    };
    if asker.explain {
        let candidates: Vec<Candidate> = group
            .members
            .iter()
            .zip(candidates)
            .map(|(member, candidate)| Candidate {
                healthy: healthy(member),
                ..candidate.clone()
            })
            .collect();
        let choice =
            crate::policy::choose(&candidates, asker.client, asker.environment, asker.seed);
        answer
            .reasons
            .push(format!("{owner} {record_type}: {}", choice.reason));
        choice.chosen
    } else if entry.has_aliases {
        crate::policy::choose_quietly(
            candidates,
            &|index| healthy(&group.members[index]),
            asker.client,
            asker.environment,
            asker.seed,
        )
    } else {
        entry.choose(asker.client, asker.environment, asker.seed)
    }
}

/// The name whose records answer for `name`: itself if it exists, else the wildcard
/// `*.<closest encloser>` if that exists (RFC 4592). The flag says a wildcard matched.
fn lookup(zone: &Zone, name: &LowerName) -> Option<(LowerName, bool)> {
    if zone.contains(name) {
        return Some((name.clone(), false));
    }
    let mut encloser = name.base_name();
    while !zone.contains(&encloser) {
        if encloser.is_root() {
            return None;
        }
        encloser = encloser.base_name();
    }
    let wildcard = Name::from_ascii("*")
        .and_then(|star| star.append_domain(&Name::from(&encloser)))
        .ok()?;
    let wildcard = LowerName::new(&wildcard);
    zone.contains(&wildcard).then_some((wildcard, true))
}

/// A referral to the zone's child at `cut`: its NS records, with the addresses of the
/// name servers inside the zone (glue).
fn referral(zone: &Zone, cut: &LowerName) -> Answer {
    let mut answer = Answer {
        code: ResponseCode::NoError,
        authoritative: false,
        ..Answer::refused()
    };
    if let Some(ns) = zone.rrset(cut, RecordType::NS) {
        answer.authorities.extend(ns.iter().cloned());
    }
    add_additionals(zone, &mut answer);
    answer
}

/// The A and AAAA records, from the zone, of the names that NS, MX and SRV records of the
/// answer point at.
fn add_additionals(zone: &Zone, answer: &mut Answer) {
    let targets: Vec<LowerName> = answer
        .answers
        .iter()
        .chain(&answer.authorities)
        .filter_map(|record| match &record.data {
            RData::NS(ns) => Some(LowerName::new(&ns.0)),
            RData::MX(mx) => Some(LowerName::new(&mx.exchange)),
            RData::SRV(srv) => Some(LowerName::new(&srv.target)),
            _ => None,
        })
        .collect();
    for target in targets {
        for record_type in [RecordType::A, RecordType::AAAA] {
            if let Some(records) = zone.rrset(&target, record_type) {
                for record in records.iter() {
                    if !answer.additionals.contains(record) {
                        answer.additionals.push(record.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{LowerName, Name, RecordType};

    use super::Catalog;
    use crate::zone::Zone;

    /// A zone with every kind of name an answer can be about (the wire tests read it too).
    pub(crate) const ZONE: &str = "$ORIGIN shop.test.
$TTL 300
@         IN SOA   ns1 hostmaster 1 7200 3600 1209600 60
@         IN NS    ns1
@         IN MX    10 mail
ns1       IN A     127.0.0.53
mail      IN A     127.0.0.25
www       IN A     127.1.0.1
www       IN AAAA  ::1
shop      IN CNAME www
away      IN CNAME www.example.
loop1     IN CNAME loop2
loop2     IN CNAME loop1
gone      IN CNAME nowhere
*.img     IN A     127.1.0.9
a.b.c     IN TXT   \"deep\"
sub       IN NS    ns.sub
ns.sub    IN A     127.9.0.1
";

    fn name(text: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(text).expect("name"))
    }

    #[test]
    fn questions_get_the_answers_an_authoritative_server_gives() {
        let catalog = Catalog::new(vec![
            Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone"),
        ])
        .expect("catalog");
        // (name, type, code, authoritative, answer types, authority types, additional count)
        type Case = (
            &'static str,
            RecordType,
            ResponseCode,
            bool,
            &'static [RecordType],
            &'static [RecordType],
            usize,
        );
        let cases: &[Case] = &[
            (
                "www.shop.test.",
                RecordType::A,
                ResponseCode::NoError,
                true,
                &[RecordType::A],
                &[],
                0,
            ),
            (
                "WWW.Shop.Test.",
                RecordType::AAAA,
                ResponseCode::NoError,
                true,
                &[RecordType::AAAA],
                &[],
                0,
            ),
            // NODATA: the name exists, the type does not.
            (
                "www.shop.test.",
                RecordType::MX,
                ResponseCode::NoError,
                true,
                &[],
                &[RecordType::SOA],
                0,
            ),
            // NXDOMAIN.
            (
                "nope.shop.test.",
                RecordType::A,
                ResponseCode::NXDomain,
                true,
                &[],
                &[RecordType::SOA],
                0,
            ),
            // An empty non-terminal exists: NODATA, not NXDOMAIN.
            (
                "b.c.shop.test.",
                RecordType::A,
                ResponseCode::NoError,
                true,
                &[],
                &[RecordType::SOA],
                0,
            ),
            // CNAME followed inside the zone.
            (
                "shop.shop.test.",
                RecordType::A,
                ResponseCode::NoError,
                true,
                &[RecordType::CNAME, RecordType::A],
                &[],
                0,
            ),
            (
                "shop.shop.test.",
                RecordType::CNAME,
                ResponseCode::NoError,
                true,
                &[RecordType::CNAME],
                &[],
                0,
            ),
            // CNAME out of the zone: the resolver follows it.
            (
                "away.shop.test.",
                RecordType::A,
                ResponseCode::NoError,
                true,
                &[RecordType::CNAME],
                &[],
                0,
            ),
            // A CNAME to a name the zone does not have: NXDOMAIN, with the CNAME.
            (
                "gone.shop.test.",
                RecordType::A,
                ResponseCode::NXDomain,
                true,
                &[RecordType::CNAME],
                &[RecordType::SOA],
                0,
            ),
            // A CNAME loop ends.
            (
                "loop1.shop.test.",
                RecordType::A,
                ResponseCode::NoError,
                true,
                &[RecordType::CNAME; 2],
                &[],
                0,
            ),
            // Wildcards answer for names that do not exist.
            (
                "cat.img.shop.test.",
                RecordType::A,
                ResponseCode::NoError,
                true,
                &[RecordType::A],
                &[],
                0,
            ),
            (
                "cat.img.shop.test.",
                RecordType::TXT,
                ResponseCode::NoError,
                true,
                &[],
                &[RecordType::SOA],
                0,
            ),
            // MX brings its exchange's address.
            (
                "shop.test.",
                RecordType::MX,
                ResponseCode::NoError,
                true,
                &[RecordType::MX],
                &[],
                1,
            ),
            (
                "shop.test.",
                RecordType::NS,
                ResponseCode::NoError,
                true,
                &[RecordType::NS],
                &[],
                1,
            ),
            // A delegated name is a referral, with glue.
            (
                "x.sub.shop.test.",
                RecordType::A,
                ResponseCode::NoError,
                false,
                &[],
                &[RecordType::NS],
                1,
            ),
            // Not our zone.
            (
                "www.example.",
                RecordType::A,
                ResponseCode::Refused,
                false,
                &[],
                &[],
                0,
            ),
        ];
        for (qname, qtype, code, authoritative, answers, authorities, additionals) in cases {
            let answer = catalog.answer(&name(qname), *qtype, &Default::default(), 0);
            let types = |records: &[hickory_proto::rr::Record]| {
                records
                    .iter()
                    .map(|record| record.record_type())
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                (
                    answer.code,
                    answer.authoritative,
                    types(&answer.answers),
                    types(&answer.authorities),
                    answer.additionals.len()
                ),
                (
                    *code,
                    *authoritative,
                    answers.to_vec(),
                    authorities.to_vec(),
                    *additionals
                ),
                "{qname} {qtype}"
            );
        }
        // A wildcard's records carry the name asked for.
        let answer = catalog.answer(
            &name("cat.img.shop.test."),
            RecordType::A,
            &Default::default(),
            0,
        );
        assert_eq!(answer.answers[0].name.to_ascii(), "cat.img.shop.test.");
    }

    #[test]
    fn the_longest_zone_answers() {
        let parent = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
        let child = Zone::parse(
            "$ORIGIN eu.shop.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\nwww IN A 127.2.0.1\n",
            "eu.zone",
            None,
            None,
        )
        .expect("zone");
        let catalog = Catalog::new(vec![parent, child]).expect("catalog");
        let answer = catalog.answer(
            &name("www.eu.shop.test."),
            RecordType::A,
            &Default::default(),
            0,
        );
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].data.to_string(), "127.2.0.1");
    }
}
