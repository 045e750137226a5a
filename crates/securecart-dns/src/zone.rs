//! Zones: the records of one domain, read from an RFC 1035 zone file (with hickory-proto's
//! parser) and indexed for answering: by (name, type), with every name that exists (empty
//! non-terminals included, so that NXDOMAIN and NODATA are told apart) and the delegation
//! points below the apex.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use hickory_proto::rr::{LowerName, Name, RecordType};
use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::txt::Parser;

/// The most members the aliases of one routing group may reach, through the groups they
/// name ([`Zone::check_aliases`]).
pub const MAX_ALIAS_REACH: usize = 1024;

/// A zone that cannot be served, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}{}: {message}", line.map(|line| format!(":{line}")).unwrap_or_default())]
pub struct ZoneError {
    /// The file (or other source) the zone came from.
    pub source_name: String,
    /// The line of the problem, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// One zone, ready to answer from.
#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    soa: Record,
    rrsets: HashMap<(LowerName, RecordType), Arc<[Record]>>,
    /// Every owner name, and every name between an owner and the apex.
    names: HashSet<LowerName>,
    /// The types of the record sets at each owner name (for ANY questions).
    types: HashMap<LowerName, Vec<RecordType>>,
    /// Names below the apex that carry NS records: the zone is not authoritative under
    /// them.
    delegations: HashSet<LowerName>,
    /// How many records the zone holds.
    record_count: usize,
    /// Record groups answered by a routing policy, by (name, type).
    policies: HashMap<(LowerName, RecordType), Arc<PolicyEntry>>,
}

/// Records of one name and type answered by a routing policy (Route 53's record sets that
/// share a name and type, told apart by their set identifiers).
#[derive(Debug, Clone)]
pub struct PolicyGroup {
    /// The TTL of its answers.
    pub ttl: u32,
    /// Its record sets.
    pub members: Vec<PolicyMember>,
}

/// A policy group as the zone keeps it: with its members as the choice sees them, built
/// once (their health is read from the members at each choice).
#[derive(Debug)]
pub struct PolicyEntry {
    /// The group.
    pub group: PolicyGroup,
    /// Its members as candidates of the choice.
    pub candidates: Vec<crate::policy::Candidate>,
    /// Whether a member is an alias, whose answer depends on another record set.
    pub has_aliases: bool,
    /// Whether its policy reads where the client is (latency, geolocation,
    /// geoproximity); the others choose from its address at most, without placing it.
    pub locates: bool,
}

impl PolicyEntry {
    /// Whether its choice reads the client's place or address (latency, geolocation,
    /// geoproximity, IP-based), so that its answer holds for the client's network only.
    pub fn reads_client(&self) -> bool {
        self.locates
            || self
                .candidates
                .iter()
                .any(|candidate| matches!(candidate.policy, crate::policy::Policy::IpBased { .. }))
    }

    /// The members a client gets (see [`crate::policy::choose_quietly`]), for a group
    /// without aliases (an alias's health needs its zone: [`Zone::member_healthy`]).
    pub fn choose(
        &self,
        client: &crate::policy::ClientLocation,
        environment: &crate::policy::Environment,
        seed: u64,
    ) -> Vec<usize> {
        crate::policy::choose_quietly(
            &self.candidates,
            &|index| self.group.members[index].is_healthy(),
            client,
            environment,
            seed,
        )
    }
}

/// One record set of a policy group.
#[derive(Debug, Clone)]
pub struct PolicyMember {
    /// Its set identifier.
    pub id: String,
    /// How it is chosen.
    pub policy: crate::policy::Policy,
    /// Its values, all of the group's type.
    pub data: Vec<RData>,
    /// Its health, kept up to date by a health check; none means always healthy.
    pub health: Option<Arc<AtomicBool>>,
    /// An alias of another record set of the zone (same type): its answer stands for this
    /// member's values (Route 53's alias to another record).
    pub alias: Option<Name>,
    /// With `alias`: healthy only while the target has a healthy record.
    pub evaluate_target_health: bool,
}

impl PolicyMember {
    /// Whether it is healthy now.
    pub fn is_healthy(&self) -> bool {
        self.health
            .as_ref()
            .is_none_or(|health| health.load(Ordering::Relaxed))
    }
}

impl Zone {
    /// Reads a zone file. `origin` is the zone's name when the file has no `$ORIGIN`
    /// (`knotd` and `nsd` take it from their configuration the same way).
    pub fn from_file(path: &Path, origin: Option<Name>) -> Result<Self, ZoneError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ZoneError {
            source_name: source_name.clone(),
            line: None,
            message: format!("cannot read the zone file: {error}"),
        })?;
        Self::parse(&text, &source_name, Some(path), origin)
    }

    /// Reads a zone from the text of a zone file.
    pub fn parse(
        text: &str,
        source_name: &str,
        path: Option<&Path>,
        origin: Option<Name>,
    ) -> Result<Self, ZoneError> {
        let parsed = Parser::new(text, path.map(Path::to_path_buf), origin.clone()).parse();
        let (origin, rrsets) = parsed.map_err(|error| ZoneError {
            source_name: source_name.to_owned(),
            line: line_of_error(text, path, origin.as_ref(), &error.to_string()),
            message: error.to_string(),
        })?;
        let records = rrsets
            .into_values()
            .flat_map(|rrset| rrset.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .collect();
        Self::from_records(origin, records).map_err(|message| ZoneError {
            source_name: source_name.to_owned(),
            line: None,
            message,
        })
    }

    /// A zone of `records` under `origin`; it needs one SOA record at its apex, and every
    /// record inside it.
    pub fn from_records(origin: Name, records: Vec<Record>) -> Result<Self, String> {
        let apex = LowerName::new(&origin);
        let mut grouped: HashMap<(LowerName, RecordType), Vec<Record>> = HashMap::new();
        let mut names = HashSet::from([apex.clone()]);
        let mut delegations = HashSet::new();
        let record_count = records.len();
        for record in records {
            let owner = LowerName::new(&record.name);
            if !apex.zone_of(&owner) {
                return Err(format!(
                    "{} {} is outside the zone {origin}",
                    record.name,
                    record.record_type()
                ));
            }
            let record_type = record.record_type();
            if record_type == RecordType::NS && owner != apex {
                delegations.insert(owner.clone());
            }
            // The owner and every name between it and the apex exist.
            let mut name = owner.clone();
            while name != apex && names.insert(name.clone()) {
                name = name.base_name();
            }
            grouped
                .entry((owner, record_type))
                .or_default()
                .push(record);
        }
        let soa = match grouped
            .get(&(apex.clone(), RecordType::SOA))
            .map(Vec::as_slice)
        {
            Some([soa]) => soa.clone(),
            Some(_) => return Err(format!("the zone {origin} has more than one SOA record")),
            None => return Err(format!("the zone {origin} has no SOA record at its apex")),
        };
        let mut types: HashMap<LowerName, Vec<RecordType>> = HashMap::new();
        for (name, record_type) in grouped.keys() {
            types.entry(name.clone()).or_default().push(*record_type);
        }
        if let Some(name) = types.iter().find_map(|(name, kinds)| {
            (kinds.len() > 1 && kinds.contains(&RecordType::CNAME)).then_some(name)
        }) {
            return Err(format!(
                "{name} has a CNAME record and other records; a CNAME must be alone (RFC 1034)"
            ));
        }
        if let Some((name, _)) = grouped.iter().find(|((_, record_type), records)| {
            *record_type == RecordType::CNAME && records.len() > 1
        }) {
            return Err(format!("{} has more than one CNAME record", name.0));
        }
        Ok(Self {
            origin: apex,
            soa,
            rrsets: grouped
                .into_iter()
                .map(|(key, records)| (key, Arc::from(records)))
                .collect(),
            names,
            types,
            delegations,
            record_count,
            policies: HashMap::new(),
        })
    }

    /// Adds a group of records answered by a routing policy at `name` (inside the zone);
    /// refused where static records of that type, or a CNAME, already answer, and a group
    /// of CNAMEs where any other record or group is (the zone's apex has its SOA and NS):
    /// a CNAME is alone at its name (RFC 1034 section 3.6.2, RFC 2181 section 10.1).
    pub fn add_policy_group(
        &mut self,
        name: &Name,
        record_type: RecordType,
        group: PolicyGroup,
    ) -> Result<(), String> {
        let owner = LowerName::new(name);
        if !self.origin.zone_of(&owner) {
            return Err(format!("{name} is outside the zone {}", self.origin));
        }
        if self.rrsets.contains_key(&(owner.clone(), record_type)) {
            return Err(format!(
                "{name} {record_type} already has records in the zone; a routing policy cannot add more"
            ));
        }
        if self
            .rrsets
            .contains_key(&(owner.clone(), RecordType::CNAME))
            || self
                .policies
                .contains_key(&(owner.clone(), RecordType::CNAME))
        {
            return Err(format!("{name} has a CNAME record, which must be alone"));
        }
        if record_type == RecordType::CNAME
            && (self
                .types
                .get(&owner)
                .is_some_and(|types| !types.is_empty())
                || self.policies.keys().any(|(at, _)| *at == owner))
        {
            return Err(format!(
                "{name} has other records, and a CNAME record must be alone"
            ));
        }
        if group
            .members
            .iter()
            .flat_map(|member| &member.data)
            .any(|data| data.record_type() != record_type)
        {
            return Err(format!("{name} {record_type}: a value of another type"));
        }
        if group.members.iter().any(|member| {
            member.alias.is_some() && matches!(member.policy, crate::policy::Policy::Multivalue)
        }) {
            return Err(format!(
                "{name} {record_type}: a multivalue answer is records, not an alias"
            ));
        }
        if let Some(target) = group
            .members
            .iter()
            .find_map(|member| member.alias.as_ref())
        {
            let target = LowerName::new(target);
            if target == owner || !self.origin.zone_of(&target) {
                return Err(format!(
                    "{name} {record_type}: an alias must name another record set of the zone"
                ));
            }
        }
        let mut each = owner.clone();
        while each != self.origin && self.names.insert(each.clone()) {
            each = each.base_name();
        }
        self.record_count += group
            .members
            .iter()
            .map(|member| member.data.len())
            .sum::<usize>();
        let has_aliases = group.members.iter().any(|member| member.alias.is_some());
        let locates = group.members.iter().any(|member| member.policy.locates());
        let candidates = group
            .members
            .iter()
            .map(|member| crate::policy::Candidate {
                id: member.id.clone(),
                policy: member.policy.clone(),
                healthy: true,
            })
            .collect();
        self.policies.insert(
            (owner, record_type),
            Arc::new(PolicyEntry {
                group,
                candidates,
                has_aliases,
                locates,
            }),
        );
        Ok(())
    }

    /// Checks the aliases of the zone's routing groups once they are all added: none may
    /// lead back to its own group (an answer would follow it round until its depth ran
    /// out, at each query), and the aliases followed from one group, through the groups
    /// they name, may reach at most [`MAX_ALIAS_REACH`] members (each query's choice and
    /// each target health evaluation follows every one of them).
    pub fn check_aliases(&self) -> Result<(), String> {
        /// How many members a group's aliases reach, or `None` while it is being counted
        /// (met again: a cycle).
        fn reach(
            zone: &Zone,
            at: &(LowerName, RecordType),
            counted: &mut HashMap<(LowerName, RecordType), Option<usize>>,
        ) -> Result<usize, String> {
            match counted.get(at) {
                Some(Some(reach)) => return Ok(*reach),
                Some(None) => {
                    return Err(format!("{} {}: its aliases lead back to it", at.0, at.1));
                }
                None => {}
            }
            let Some(entry) = zone.policies.get(at) else {
                return Ok(0);
            };
            counted.insert(at.clone(), None);
            let mut total = 0usize;
            for member in &entry.group.members {
                total += 1;
                if let Some(target) = &member.alias {
                    let target = (LowerName::new(target), at.1);
                    total = total.saturating_add(reach(zone, &target, counted)?);
                }
                if total > MAX_ALIAS_REACH {
                    return Err(format!(
                        "{} {}: its aliases reach more than {MAX_ALIAS_REACH} records through the groups they name",
                        at.0, at.1
                    ));
                }
            }
            counted.insert(at.clone(), Some(total));
            Ok(total)
        }
        let mut counted = HashMap::new();
        for at in self.policies.keys() {
            reach(self, at, &mut counted)?;
        }
        Ok(())
    }

    /// The policy group of one name and type, with its members as the choice sees them
    /// (built once; their health is read from the members at each choice).
    pub fn policy_entry(
        &self,
        name: &LowerName,
        record_type: RecordType,
    ) -> Option<&Arc<PolicyEntry>> {
        self.policies.get(&(name.clone(), record_type))
    }

    /// Whether a member of a policy group at a `record_type` name is healthy: its own check,
    /// and, for an alias that evaluates its target's health, a healthy record at the target.
    pub fn member_healthy(&self, member: &PolicyMember, record_type: RecordType) -> bool {
        self.member_healthy_within(member, record_type, 8)
    }

    fn member_healthy_within(
        &self,
        member: &PolicyMember,
        record_type: RecordType,
        depth: u8,
    ) -> bool {
        if !member.is_healthy() {
            return false;
        }
        match (&member.alias, member.evaluate_target_health) {
            (Some(target), true) if depth > 0 => {
                let target = LowerName::new(target);
                self.rrset(&target, record_type).is_some()
                    || self
                        .policy_entry(&target, record_type)
                        .is_some_and(|entry| {
                            entry.group.members.iter().any(|member| {
                                self.member_healthy_within(member, record_type, depth - 1)
                            })
                        })
            }
            (Some(_), true) => false,
            _ => true,
        }
    }

    /// The zone's name.
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// Its SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// How many records it holds.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// The records of one name and type.
    pub fn rrset(&self, name: &LowerName, record_type: RecordType) -> Option<&Arc<[Record]>> {
        self.rrsets.get(&(name.clone(), record_type))
    }

    /// Every record set at a name.
    pub fn rrsets_at<'z>(&'z self, name: &'z LowerName) -> impl Iterator<Item = &'z Arc<[Record]>> {
        self.types
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(move |record_type| self.rrset(name, *record_type))
    }

    /// The types of the routing groups at `name` (a scan of every group: for ANY, which
    /// only TCP asks for).
    pub fn policy_types_at<'z>(
        &'z self,
        name: &'z LowerName,
    ) -> impl Iterator<Item = RecordType> + 'z {
        self.policies
            .keys()
            .filter(move |(owner, _)| owner == name)
            .map(|(_, record_type)| *record_type)
    }

    /// Whether a name exists in the zone (with records, or with names below it).
    pub fn contains(&self, name: &LowerName) -> bool {
        self.names.contains(name)
    }

    /// The delegation point at or above `name` (below the apex), if `name` is delegated.
    pub fn delegation_of(&self, name: &LowerName) -> Option<LowerName> {
        if self.delegations.is_empty() {
            return None;
        }
        let mut candidate = name.clone();
        let mut found = None;
        while candidate != self.origin && self.origin.zone_of(&candidate) {
            if self.delegations.contains(&candidate) {
                // The highest delegation point wins: data under it is not ours.
                found = Some(candidate.clone());
            }
            candidate = candidate.base_name();
        }
        found
    }

    /// The SOA record as a negative answer carries it: its TTL is the lesser of its own
    /// and its MINIMUM field (RFC 2308).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }
}

/// The line a zone file's parse error is on: the first prefix of the file (cut at line
/// ends) that fails with the same error. Only for files small enough to parse again and
/// again.
fn line_of_error(
    text: &str,
    path: Option<&Path>,
    origin: Option<&Name>,
    error: &str,
) -> Option<usize> {
    const MAX_LINES: usize = 5_000;
    let ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(index, _)| index + 1)
        .chain(std::iter::once(text.len()))
        .take(MAX_LINES)
        .collect();
    ends.iter()
        .position(|end| {
            let prefix = &text[..*end];
            matches!(
                Parser::new(prefix, path.map(Path::to_path_buf), origin.cloned()).parse(),
                Err(other) if other.to_string() == error
            )
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::Zone;

    const ZONE: &str = "$ORIGIN shop.test.
$TTL 300
@       IN SOA ns1 hostmaster 1 7200 3600 1209600 60
@       IN NS  ns1
ns1     IN A   127.0.0.53
www     IN A   127.1.0.1
a.b.c   IN A   127.1.0.2
sub     IN NS  ns.sub
ns.sub  IN A   127.9.0.1
";

    #[test]
    fn names_between_an_owner_and_the_apex_exist() {
        let zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
        let name = |text: &str| {
            hickory_proto::rr::LowerName::new(
                &hickory_proto::rr::Name::from_ascii(text).expect("name"),
            )
        };
        assert!(zone.contains(&name("b.c.shop.test.")));
        assert!(zone.contains(&name("c.shop.test.")));
        assert!(!zone.contains(&name("d.shop.test.")));
        assert_eq!(zone.record_count(), 7);
        assert_eq!(
            zone.delegation_of(&name("x.ns.sub.shop.test.")),
            Some(name("sub.shop.test."))
        );
        assert_eq!(zone.delegation_of(&name("www.shop.test.")), None);
        // A negative answer's SOA lives no longer than the zone's MINIMUM.
        assert_eq!(zone.negative_soa().ttl, 60);
    }

    /// A CNAME is alone at its name, whether a routing policy answers it or the others:
    /// never at the apex (its SOA and NS), nor where a group of another type is.
    #[test]
    fn a_group_of_cnames_is_alone_at_its_name() {
        use super::{PolicyGroup, PolicyMember};
        use crate::policy::Policy;
        use hickory_proto::rr::{Name, RData, RecordType, rdata::CNAME};
        let group = |data: RData| PolicyGroup {
            ttl: 30,
            members: vec![PolicyMember {
                id: "one".to_owned(),
                policy: Policy::Weighted { weight: 1 },
                data: vec![data],
                health: None,
                alias: None,
                evaluate_target_health: false,
            }],
        };
        let cname = || {
            group(RData::CNAME(CNAME(
                Name::from_ascii("www.shop.test.").expect("name"),
            )))
        };
        let address = || group(RData::A(std::net::Ipv4Addr::new(127, 1, 0, 9).into()));
        let name = |text: &str| Name::from_ascii(text).expect("name");
        let mut zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
        let at_apex = zone
            .add_policy_group(&name("shop.test."), RecordType::CNAME, cname())
            .expect_err("a CNAME beside the SOA");
        assert!(at_apex.contains("must be alone"), "{at_apex}");
        zone.add_policy_group(&name("app.shop.test."), RecordType::A, address())
            .expect("an address group");
        let beside = zone
            .add_policy_group(&name("app.shop.test."), RecordType::CNAME, cname())
            .expect_err("a CNAME beside a group");
        assert!(beside.contains("must be alone"), "{beside}");
        zone.add_policy_group(&name("alias.shop.test."), RecordType::CNAME, cname())
            .expect("a CNAME alone");
        let after = zone
            .add_policy_group(&name("alias.shop.test."), RecordType::A, address())
            .expect_err("a group beside a CNAME group");
        assert!(after.contains("must be alone"), "{after}");
    }

    /// Aliases that lead back to their group, or that reach too many members through the
    /// groups they name, are refused once the zone's groups are all in.
    #[test]
    fn aliases_may_not_loop_nor_fan_out_without_end() {
        use super::{MAX_ALIAS_REACH, PolicyGroup, PolicyMember};
        use crate::policy::Policy;
        use hickory_proto::rr::{Name, RecordType};
        let name = |text: &str| Name::from_ascii(text).expect("name");
        let aliases = |count: usize, target: &str| PolicyGroup {
            ttl: 30,
            members: (0..count)
                .map(|n| PolicyMember {
                    id: format!("m{n}"),
                    policy: Policy::Weighted { weight: 1 },
                    data: Vec::new(),
                    health: None,
                    alias: Some(name(target)),
                    evaluate_target_health: true,
                })
                .collect(),
        };
        let mut zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
        zone.add_policy_group(
            &name("a.shop.test."),
            RecordType::A,
            aliases(2, "b.shop.test."),
        )
        .expect("a");
        zone.check_aliases()
            .expect("an alias to a name without records yet");
        zone.add_policy_group(
            &name("b.shop.test."),
            RecordType::A,
            aliases(2, "a.shop.test."),
        )
        .expect("b");
        let looped = zone.check_aliases().expect_err("a loop");
        assert!(looped.contains("lead back"), "{looped}");

        let mut zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
        zone.add_policy_group(
            &name("x.shop.test."),
            RecordType::A,
            aliases(40, "y.shop.test."),
        )
        .expect("x");
        zone.add_policy_group(
            &name("y.shop.test."),
            RecordType::A,
            aliases(40, "www.shop.test."),
        )
        .expect("y");
        let wide = zone.check_aliases().expect_err("40 times 40 members");
        assert!(wide.contains(&MAX_ALIAS_REACH.to_string()), "{wide}");
        // A multivalue answer takes no alias.
        let mut multivalue = aliases(1, "www.shop.test.");
        multivalue.members[0].policy = Policy::Multivalue;
        let refused = zone
            .add_policy_group(&name("m.shop.test."), RecordType::A, multivalue)
            .expect_err("a multivalue alias");
        assert!(refused.contains("multivalue"), "{refused}");
    }

    #[test]
    fn broken_zones_are_refused_with_their_line() {
        let cases = [
            (
                "$ORIGIN shop.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\nwww IN A 300.1.1.1\n",
                Some(4),
                "address",
            ),
            (
                "$ORIGIN shop.test.\n$TTL 60\nwww IN A 127.0.0.1\n",
                None,
                "no SOA",
            ),
            (
                "$ORIGIN shop.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\nwww IN CNAME a\nwww IN A 127.0.0.1\n",
                None,
                "must be alone",
            ),
            (
                "$ORIGIN shop.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\nother.example. IN A 127.0.0.1\n",
                None,
                "outside the zone",
            ),
        ];
        for (text, line, message) in cases {
            let error = Zone::parse(text, "bad.zone", None, None).expect_err(message);
            assert_eq!(error.line, line, "{error}");
            assert!(error.to_string().contains(message), "{error}");
            assert!(error.to_string().starts_with("bad.zone"), "{error}");
        }
    }
}
