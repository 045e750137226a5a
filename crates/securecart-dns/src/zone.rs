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
    /// refused where static records of that type, or a CNAME, already answer.
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
        {
            return Err(format!("{name} has a CNAME record, which must be alone"));
        }
        if group
            .members
            .iter()
            .flat_map(|member| &member.data)
            .any(|data| data.record_type() != record_type)
        {
            return Err(format!("{name} {record_type}: a value of another type"));
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
