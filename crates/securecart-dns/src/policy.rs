//! Route 53's routing policies: which records of a group (same name and type, one routing
//! policy) answer a client. The choice is a pure function of (the group, each record's
//! health, the client's location, a seed), tested as tables.
//!
//! Health follows Route 53's rules: a record without a health check is healthy; when no
//! record of a group is healthy, every record counts as healthy and the policy chooses as
//! usual; weighted records of weight 0 are considered only when every record of a higher
//! weight is unhealthy.

use std::net::IpAddr;

use ipnet::IpNet;

/// How a record is chosen among its group.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// The one record set of its name and type.
    Simple,
    /// Chosen with probability weight / sum of the weights (0 to 255).
    Weighted {
        /// Its weight.
        weight: u8,
    },
    /// The record of the region with the least latency to the client.
    Latency {
        /// Its region.
        region: String,
    },
    /// The record of the most specific location that holds the client.
    Geolocation {
        /// Its location.
        location: GeoLocation,
    },
    /// The record whose place is nearest the client after its bias (-99 to 99) grows or
    /// shrinks its area, as Route 53 computes it: biased distance = distance × (1 − bias /
    /// 100).
    Geoproximity {
        /// Its place: latitude and longitude in degrees.
        place: (f64, f64),
        /// Its bias.
        bias: i8,
    },
    /// The primary while it is healthy, else the secondary.
    Failover {
        /// Whether it is the primary.
        primary: bool,
    },
    /// Up to eight healthy records, in random order.
    Multivalue,
    /// The record of the CIDR collection location holding the client's address; `*` is
    /// the default location.
    IpBased {
        /// Its location name in the CIDR collection.
        location: String,
    },
}

impl Policy {
    /// Whether the choice reads where the client is (its place, country, continent or
    /// subdivision): latency, geolocation and geoproximity records. IP-based records read
    /// only its address; simple, weighted, failover and multivalue records choose the
    /// same for everyone.
    pub fn locates(&self) -> bool {
        matches!(
            self,
            Self::Latency { .. } | Self::Geolocation { .. } | Self::Geoproximity { .. }
        )
    }
}

/// A geolocation record's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoLocation {
    /// Every client no other record matches (`*`).
    Default,
    /// A continent, by its two-letter code (AF, AN, AS, EU, NA, OC, SA).
    Continent(String),
    /// A country, by its ISO 3166-1 alpha-2 code.
    Country(String),
    /// A subdivision of a country (a US state, say), by the country's code and its own.
    Subdivision(String, String),
}

/// Where a client is, as far as the server knows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientLocation {
    /// Its address (from EDNS Client Subnet, or the resolver's).
    pub address: Option<IpAddr>,
    /// Its continent's two-letter code.
    pub continent: Option<String>,
    /// Its country's ISO code.
    pub country: Option<String>,
    /// Its subdivision's code within the country.
    pub subdivision: Option<String>,
    /// Its latitude and longitude in degrees.
    pub place: Option<(f64, f64)>,
}

/// What the server knows beyond the records: the regions' places (for latency), a
/// measured latency table that overrides them, and the CIDR collection.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Each region's latitude and longitude.
    pub regions: Vec<(String, (f64, f64))>,
    /// Measured latencies in milliseconds: (region, client network, latency).
    pub latencies: Vec<(String, IpNet, f64)>,
    /// The CIDR collection: networks and their location names.
    pub cidr_locations: Vec<(IpNet, String)>,
    /// Where networks are (latitude, longitude): the local topology's loopback blocks are
    /// placed at their regions this way.
    pub places: Vec<(IpNet, (f64, f64))>,
    /// A MaxMind city database, for the subdivision and coordinates of any address.
    pub cities: Option<std::sync::Arc<crate::geo::CityDatabase>>,
}

impl Environment {
    /// What is known of the client at `address`: its place, from the most specific network
    /// of [`Environment::places`] that holds it, else from the city database, else its
    /// country's ([`crate::places`]); its country,
    /// continent and subdivision from the city database, else its country and continent
    /// from the registries' data ([`crate::geo`]).
    pub fn locate(&self, address: IpAddr) -> ClientLocation {
        let city = self
            .cities
            .as_ref()
            .and_then(|cities| cities.locate(address))
            .unwrap_or_default();
        let registries = || crate::geo::locate(address);
        let country = city
            .country
            .or_else(|| registries().map(|(country, _)| country.to_owned()));
        let continent = city.continent.or_else(|| {
            country
                .as_deref()
                .and_then(crate::geo::continent_of)
                .map(str::to_owned)
        });
        let place = self
            .places
            .iter()
            .filter(|(network, _)| network.contains(&address))
            .max_by_key(|(network, _)| network.prefix_len())
            .map(|(_, place)| *place)
            .or(city.coordinates)
            // Else its country's place, roughly (one of its cities).
            .or_else(|| country.as_deref().and_then(crate::places::of));
        ClientLocation {
            address: Some(address),
            country,
            continent,
            subdivision: city.subdivision,
            // A place the topology gives (a region's loopback block) before the database's.
            place,
        }
    }
}

/// One record of a group, as the choice sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its set identifier, to say which was chosen.
    pub id: String,
    /// Its routing policy.
    pub policy: Policy,
    /// Its health (a record without a health check is healthy).
    pub healthy: bool,
}

/// The records that answer, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Indices into the group, in answer order; empty when no record applies (a
    /// geolocation group with no record for the client and no default).
    pub chosen: Vec<usize>,
    /// Why, for `test-record`.
    pub reason: String,
}

/// The most records a multivalue answer holds.
pub const MAX_MULTIVALUE: usize = 8;

/// The mean radius of the Earth in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Chooses the records of `group` that answer `client`, and says why.
pub fn choose(
    group: &[Candidate],
    client: &ClientLocation,
    environment: &Environment,
    seed: u64,
) -> Choice {
    decide(
        group,
        &|index| group[index].healthy,
        client,
        environment,
        seed,
        true,
    )
}

/// Chooses as [`choose`] does, without composing the reasons (the answering path), with
/// each candidate's health from `health` rather than its `healthy` field, so that the
/// candidates can be built once.
pub fn choose_quietly(
    group: &[Candidate],
    health: &dyn Fn(usize) -> bool,
    client: &ClientLocation,
    environment: &Environment,
    seed: u64,
) -> Vec<usize> {
    decide(group, health, client, environment, seed, false).chosen
}

fn decide(
    group: &[Candidate],
    health: &dyn Fn(usize) -> bool,
    client: &ClientLocation,
    environment: &Environment,
    seed: u64,
    explain: bool,
) -> Choice {
    let say = |reason: &dyn Fn() -> String| if explain { reason() } else { String::new() };
    let Some(first) = group.first() else {
        return Choice {
            chosen: Vec::new(),
            reason: "no records".to_owned(),
        };
    };
    // Each record's health, read once: a check may change its flag at any moment, and a
    // choice must see one state (a flag that fell between two reads would leave the
    // weighted draw an empty pool).
    // (On the stack for groups of up to 64 records, as most are: a choice answers a query.)
    let mut few = [false; 64];
    let many: Vec<bool>;
    let flags: &[bool] = if group.len() <= few.len() {
        for (index, flag) in few.iter_mut().take(group.len()).enumerate() {
            *flag = health(index);
        }
        &few[..group.len()]
    } else {
        many = (0..group.len()).map(health).collect();
        &many
    };
    // No healthy record: all count as healthy (Route 53's rule).
    let fail_open = !flags.contains(&true);
    let healthy = |index: usize| fail_open || flags[index];
    let note = if fail_open {
        "; every record is unhealthy, so all count as healthy"
    } else {
        ""
    };
    // Every record's index (a range: the answering path allocates only what it returns).
    let all = 0..group.len();
    match &first.policy {
        Policy::Simple => Choice {
            chosen: all.collect(),
            reason: "simple routing: every value".to_owned(),
        },
        Policy::Weighted { .. } => {
            let weight = |index: usize| match group[index].policy {
                Policy::Weighted { weight } => u64::from(weight),
                _ => 0,
            };
            // The draw is over the healthy records of weight above 0; without any, over
            // the healthy ones (all of weight 0), each as likely as the others.
            let drawn = |index: usize| healthy(index) && weight(index) > 0;
            let total: u64 = all.clone().filter(|&index| drawn(index)).map(weight).sum();
            let zero = total == 0;
            let chosen = if zero {
                let pool = all.clone().filter(|&index| healthy(index));
                let nth = seed % pool.clone().count().max(1) as u64;
                pool.clone().nth(nth as usize).unwrap_or(0)
            } else {
                let mut draw = seed % total;
                let mut pool = all.clone().filter(|&index| drawn(index));
                let first = pool.clone().next().unwrap_or(0);
                pool.find(|&index| {
                    if draw < weight(index) {
                        true
                    } else {
                        draw -= weight(index);
                        false
                    }
                })
                .unwrap_or(first)
            };
            Choice {
                chosen: vec![chosen],
                reason: say(&|| {
                    format!(
                        "weighted: {} (weight {} of {total}){}{note}",
                        group[chosen].id,
                        weight(chosen),
                        if zero {
                            "; no healthy record of weight above 0, so weight-0 records count"
                        } else {
                            ""
                        }
                    )
                }),
            }
        }
        Policy::Latency { .. } => {
            let latency = |index: usize| match &group[index].policy {
                Policy::Latency { region } => estimated_latency(region, client, environment),
                _ => f64::INFINITY,
            };
            let chosen = all
                .clone()
                .filter(|&index| healthy(index))
                .min_by(|&a, &b| latency(a).total_cmp(&latency(b)))
                .unwrap_or(0);
            Choice {
                chosen: vec![chosen],
                reason: say(&|| {
                    format!(
                        "latency: {} is nearest the client (estimated {:.1} ms){note}",
                        group[chosen].id,
                        latency(chosen)
                    )
                }),
            }
        }
        Policy::Geolocation { .. } => {
            // The most specific location holding the client; an unhealthy one falls back to
            // the next larger one.
            let rank = |index: usize| -> Option<u8> {
                let Policy::Geolocation { location } = &group[index].policy else {
                    return None;
                };
                let same = |a: &Option<String>, b: &String| {
                    a.as_ref().is_some_and(|a| a.eq_ignore_ascii_case(b))
                };
                match location {
                    GeoLocation::Subdivision(country, subdivision) => {
                        (same(&client.country, country) && same(&client.subdivision, subdivision))
                            .then_some(3)
                    }
                    GeoLocation::Country(country) => same(&client.country, country).then_some(2),
                    GeoLocation::Continent(continent) => {
                        same(&client.continent, continent).then_some(1)
                    }
                    GeoLocation::Default => Some(0),
                }
            };
            let best = all
                .clone()
                .filter_map(|index| rank(index).map(|rank| (rank, index)))
                .filter(|&(_, index)| healthy(index))
                .max_by_key(|&(rank, _)| rank);
            match best {
                Some((rank, index)) => Choice {
                    chosen: vec![index],
                    reason: say(&|| {
                        format!(
                            "geolocation: {} matches the client's {}{note}",
                            group[index].id,
                            ["location by default", "continent", "country", "subdivision"]
                                [usize::from(rank)]
                        )
                    }),
                },
                None => Choice {
                    chosen: Vec::new(),
                    reason: "geolocation: no record for the client's location and no default"
                        .to_owned(),
                },
            }
        }
        Policy::Geoproximity { .. } => {
            let biased = |index: usize| match (&group[index].policy, client.place) {
                (Policy::Geoproximity { place, bias }, Some(client_place)) => {
                    distance_km(*place, client_place) * (1.0 - f64::from(*bias) / 100.0)
                }
                _ => f64::INFINITY,
            };
            let chosen = all
                .clone()
                .filter(|&index| healthy(index))
                .min_by(|&a, &b| biased(a).total_cmp(&biased(b)))
                .unwrap_or(0);
            Choice {
                chosen: vec![chosen],
                reason: say(&|| {
                    format!(
                        "geoproximity: {} is nearest after bias ({:.0} km){note}",
                        group[chosen].id,
                        biased(chosen)
                    )
                }),
            }
        }
        Policy::Failover { .. } => {
            let primary = all
                .clone()
                .find(|&index| matches!(group[index].policy, Policy::Failover { primary: true }));
            let secondary = all
                .clone()
                .find(|&index| matches!(group[index].policy, Policy::Failover { primary: false }));
            let (chosen, reason) = match (primary, secondary) {
                (Some(primary), _) if healthy(primary) => (primary, "the primary is healthy"),
                (_, Some(secondary)) if healthy(secondary) => {
                    (secondary, "the primary is unhealthy; the secondary answers")
                }
                (Some(primary), _) => (primary, "no healthy record; the primary answers"),
                (None, Some(secondary)) => (secondary, "only a secondary"),
                (None, None) => (0, "no failover records"),
            };
            Choice {
                chosen: vec![chosen],
                reason: say(&|| format!("failover: {}: {reason}{note}", group[chosen].id)),
            }
        }
        Policy::Multivalue => {
            let mut pool: Vec<usize> = all.clone().filter(|&index| healthy(index)).collect();
            shuffle(&mut pool, seed);
            pool.truncate(MAX_MULTIVALUE);
            Choice {
                reason: say(&|| {
                    format!(
                        "multivalue: {} healthy records in random order{note}",
                        pool.len()
                    )
                }),
                chosen: pool,
            }
        }
        Policy::IpBased { .. } => {
            let location = client.address.and_then(|address| {
                environment
                    .cidr_locations
                    .iter()
                    .filter(|(network, _)| network.contains(&address))
                    .max_by_key(|(network, _)| network.prefix_len())
                    .map(|(_, location)| location.as_str())
            });
            let of = |wanted: &str| {
                all.clone().find(|&index| {
                    matches!(&group[index].policy, Policy::IpBased { location } if location == wanted)
                })
            };
            let matched = location.and_then(of);
            let default = of("*");
            match (matched, default) {
                (Some(index), _) if healthy(index) => Choice {
                    chosen: vec![index],
                    reason: say(&|| {
                        format!(
                            "IP-based: the client's address is in location {}{note}",
                            location.unwrap_or("")
                        )
                    }),
                },
                (_, Some(index)) if healthy(index) => Choice {
                    chosen: vec![index],
                    reason: "IP-based: the default location answers".to_owned(),
                },
                _ => Choice {
                    chosen: Vec::new(),
                    reason: "IP-based: no healthy record for the client's location and no default"
                        .to_owned(),
                },
            }
        }
    }
}

/// A region's latency to a client in milliseconds: a measured figure for the client's
/// network if the environment has one, else the round trip light in fibre needs over the
/// great-circle distance (about 1 ms per 100 km); without the client's place, every region
/// ties.
pub fn estimated_latency(region: &str, client: &ClientLocation, environment: &Environment) -> f64 {
    if let Some(address) = client.address
        && let Some((_, _, latency)) = environment
            .latencies
            .iter()
            .filter(|(name, network, _)| name == region && network.contains(&address))
            .max_by_key(|(_, network, _)| network.prefix_len())
    {
        return *latency;
    }
    let place = environment
        .regions
        .iter()
        .find(|(name, _)| name == region)
        .map(|(_, place)| *place);
    match (place, client.place) {
        (Some(region_place), Some(client_place)) => distance_km(region_place, client_place) / 100.0,
        _ => f64::MAX,
    }
}

/// The great-circle distance between two places (haversine).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat_a, lon_a) = (a.0.to_radians(), a.1.to_radians());
    let (lat_b, lon_b) = (b.0.to_radians(), b.1.to_radians());
    let half_chord = ((lat_b - lat_a) / 2.0).sin().powi(2)
        + lat_a.cos() * lat_b.cos() * ((lon_b - lon_a) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * half_chord.sqrt().asin()
}

/// A Fisher-Yates shuffle driven by the seed (SplitMix64), so the choice stays a pure
/// function of its inputs.
fn shuffle(items: &mut [usize], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for index in (1..items.len()).rev() {
        let other = (next() % (index as u64 + 1)) as usize;
        items.swap(index, other);
    }
}

#[cfg(test)]
mod tests {
    use super::{Candidate, ClientLocation, Environment, GeoLocation, Policy, choose, distance_km};

    fn candidate(id: &str, policy: Policy, healthy: bool) -> Candidate {
        Candidate {
            id: id.to_owned(),
            policy,
            healthy,
        }
    }

    #[test]
    fn only_policies_that_read_the_clients_place_locate_it() {
        // The responder places the client only for these; the others must choose the same
        // for every client at one address.
        let far = ClientLocation {
            address: Some("203.0.113.9".parse().expect("address")),
            continent: Some("OC".to_owned()),
            country: Some("AU".to_owned()),
            subdivision: None,
            place: Some((-33.9, 151.2)),
        };
        let unplaced = ClientLocation {
            address: far.address,
            ..ClientLocation::default()
        };
        let cases = [
            (Policy::Simple, false),
            (Policy::Weighted { weight: 3 }, false),
            (Policy::Failover { primary: true }, false),
            (Policy::Multivalue, false),
            (
                Policy::Latency {
                    region: "us-east-1".to_owned(),
                },
                true,
            ),
            (
                Policy::Geolocation {
                    location: GeoLocation::Default,
                },
                true,
            ),
            (
                Policy::Geoproximity {
                    place: (0.0, 0.0),
                    bias: 0,
                },
                true,
            ),
            (
                Policy::IpBased {
                    location: "*".to_owned(),
                },
                false,
            ),
        ];
        for (policy, locates) in cases {
            assert_eq!(policy.locates(), locates, "{policy:?}");
            if !locates {
                let group = [
                    candidate("a", policy.clone(), true),
                    candidate("b", policy.clone(), true),
                ];
                for seed in 0..20 {
                    let environment = Environment::default();
                    assert_eq!(
                        choose(&group, &far, &environment, seed).chosen,
                        choose(&group, &unplaced, &environment, seed).chosen,
                        "{policy:?}"
                    );
                }
            }
        }
    }

    fn ids(group: &[Candidate], chosen: &[usize]) -> Vec<String> {
        chosen
            .iter()
            .map(|&index| group[index].id.clone())
            .collect()
    }

    fn weighted(id: &str, weight: u8, healthy: bool) -> Candidate {
        candidate(id, Policy::Weighted { weight }, healthy)
    }

    #[test]
    fn weighted_records_follow_their_weights_and_route_53s_health_rules() {
        let anywhere = ClientLocation::default();
        let environment = Environment::default();
        // (group, seed, chosen)
        let cases = [
            (vec![weighted("a", 1, true), weighted("b", 3, true)], 0, "a"),
            (vec![weighted("a", 1, true), weighted("b", 3, true)], 1, "b"),
            (vec![weighted("a", 1, true), weighted("b", 3, true)], 3, "b"),
            (vec![weighted("a", 1, true), weighted("b", 3, true)], 4, "a"),
            // An unhealthy record is skipped.
            (
                vec![weighted("a", 1, false), weighted("b", 3, true)],
                0,
                "b",
            ),
            // Weight 0 takes nothing while a weighted record is healthy...
            (vec![weighted("a", 0, true), weighted("b", 3, true)], 0, "b"),
            // ...and everything once none is.
            (
                vec![weighted("a", 0, true), weighted("b", 3, false)],
                2,
                "a",
            ),
            // Only weight-0 records: equal chances.
            (vec![weighted("a", 0, true), weighted("b", 0, true)], 1, "b"),
            // None healthy: all count as healthy.
            (
                vec![weighted("a", 1, false), weighted("b", 3, false)],
                0,
                "a",
            ),
        ];
        for (group, seed, expected) in cases {
            let choice = choose(&group, &anywhere, &environment, seed);
            assert_eq!(
                ids(&group, &choice.chosen),
                [expected],
                "{group:?} {seed}: {}",
                choice.reason
            );
        }
        // Over many seeds, the shares follow the weights.
        let group = vec![weighted("a", 1, true), weighted("b", 3, true)];
        let b = (0..4000)
            .filter(|seed| choose(&group, &anywhere, &environment, *seed).chosen == [1])
            .count();
        assert_eq!(b, 3000);

        // A health check that changes its flag while a choice is made (here, every flag
        // reads healthy once, then unhealthy): the choice sees one state of them.
        let group = vec![weighted("a", 1, true), weighted("b", 3, true)];
        for seed in 0..8 {
            let reads = std::cell::Cell::new(0);
            let flipping = |_: usize| {
                reads.set(reads.get() + 1);
                reads.get() <= group.len()
            };
            let chosen = super::choose_quietly(&group, &flipping, &anywhere, &environment, seed);
            assert_eq!(chosen.len(), 1, "{seed}");
        }
    }

    #[test]
    fn latency_records_send_a_client_to_the_nearest_healthy_region() {
        let environment = Environment {
            regions: vec![
                ("us-east-1".to_owned(), (38.9, -77.0)),
                ("eu-west-1".to_owned(), (53.3, -6.3)),
            ],
            latencies: vec![(
                "eu-west-1".to_owned(),
                "198.51.100.0/24".parse().expect("network"),
                1.0,
            )],
            cidr_locations: Vec::new(),
            places: Vec::new(),
            cities: None,
        };
        let latency = |region: &str, healthy: bool| {
            candidate(
                region,
                Policy::Latency {
                    region: region.to_owned(),
                },
                healthy,
            )
        };
        let new_york = ClientLocation {
            place: Some((40.7, -74.0)),
            ..ClientLocation::default()
        };
        let paris = ClientLocation {
            place: Some((48.9, 2.4)),
            ..ClientLocation::default()
        };
        let measured = ClientLocation {
            address: Some("198.51.100.7".parse().expect("address")),
            ..new_york.clone()
        };
        // (client, us healthy, eu healthy, chosen)
        let cases = [
            (&new_york, true, true, "us-east-1"),
            (&paris, true, true, "eu-west-1"),
            (&paris, true, false, "us-east-1"),
            (&paris, false, false, "eu-west-1"),
            // A measured latency overrides the distance.
            (&measured, true, true, "eu-west-1"),
        ];
        for (client, us, eu, expected) in cases {
            let group = vec![latency("us-east-1", us), latency("eu-west-1", eu)];
            let choice = choose(&group, client, &environment, 0);
            assert_eq!(ids(&group, &choice.chosen), [expected], "{}", choice.reason);
        }
    }

    #[test]
    fn without_a_city_database_a_client_is_placed_at_its_countrys_place() {
        // No topology block, no MaxMind database: the registries' country, and its place.
        let environment = Environment {
            regions: vec![
                ("us-east-1".to_owned(), (38.9, -77.0)),
                ("eu-west-1".to_owned(), (53.3, -6.3)),
                ("ap-southeast-2".to_owned(), (-33.9, 151.2)),
            ],
            ..Environment::default()
        };
        let group: Vec<Candidate> = ["us-east-1", "eu-west-1", "ap-southeast-2"]
            .into_iter()
            .map(|region| {
                candidate(
                    region,
                    Policy::Latency {
                        region: region.to_owned(),
                    },
                    true,
                )
            })
            .collect();
        // 1.1.1.0/24 is registered in Australia, 8.8.8.0/24 in the United States.
        for (address, country, expected) in [
            ("1.1.1.1", "AU", "ap-southeast-2"),
            ("8.8.8.8", "US", "us-east-1"),
        ] {
            let client = environment.locate(address.parse().expect("address"));
            assert_eq!(client.country.as_deref(), Some(country));
            assert_eq!(client.place, crate::places::of(country));
            let choice = choose(&group, &client, &environment, 0);
            assert_eq!(ids(&group, &choice.chosen), [expected], "{}", choice.reason);
        }
    }

    #[test]
    fn geolocation_takes_the_most_specific_healthy_location() {
        let geo = |id: &str, location: GeoLocation, healthy: bool| {
            candidate(id, Policy::Geolocation { location }, healthy)
        };
        let group = |washington: bool, us: bool| {
            vec![
                geo("default", GeoLocation::Default, true),
                geo("europe", GeoLocation::Continent("EU".to_owned()), true),
                geo("us", GeoLocation::Country("US".to_owned()), us),
                geo(
                    "washington",
                    GeoLocation::Subdivision("US".to_owned(), "WA".to_owned()),
                    washington,
                ),
            ]
        };
        let client = |continent: &str, country: &str, subdivision: Option<&str>| ClientLocation {
            continent: Some(continent.to_owned()),
            country: Some(country.to_owned()),
            subdivision: subdivision.map(str::to_owned),
            ..ClientLocation::default()
        };
        // (client, washington healthy, us healthy, chosen)
        let cases = [
            (client("NA", "US", Some("WA")), true, true, "washington"),
            (client("NA", "US", Some("NY")), true, true, "us"),
            (client("EU", "FR", None), true, true, "europe"),
            (client("AS", "JP", None), true, true, "default"),
            // An unhealthy location falls back to the next larger one.
            (client("NA", "US", Some("WA")), false, true, "us"),
            (client("NA", "US", Some("WA")), false, false, "default"),
        ];
        for (client, washington, us, expected) in cases {
            let group = group(washington, us);
            let choice = choose(&group, &client, &Environment::default(), 0);
            assert_eq!(ids(&group, &choice.chosen), [expected], "{}", choice.reason);
        }
        // A real address is placed by the registries' data: 1.1.1.1 is in Australia.
        let group = vec![
            geo("default", GeoLocation::Default, true),
            geo("oceania", GeoLocation::Continent("OC".to_owned()), true),
        ];
        let sydney = Environment::default().locate("1.1.1.1".parse().expect("address"));
        let choice = choose(&group, &sydney, &Environment::default(), 0);
        assert_eq!(
            ids(&group, &choice.chosen),
            ["oceania"],
            "{}",
            choice.reason
        );
        // No record for the client and no default: no answer.
        let group = vec![geo("us", GeoLocation::Country("US".to_owned()), true)];
        let choice = choose(
            &group,
            &client("EU", "FR", None),
            &Environment::default(),
            0,
        );
        assert!(choice.chosen.is_empty());
    }

    #[test]
    fn geoproximity_bias_grows_and_shrinks_a_region() {
        let proximity = |id: &str, place: (f64, f64), bias: i8| {
            candidate(id, Policy::Geoproximity { place, bias }, true)
        };
        // A client in Reykjavik: about 1,500 km from Dublin and 4,400 km from Washington.
        let reykjavik = ClientLocation {
            place: Some((64.1, -21.9)),
            ..ClientLocation::default()
        };
        let dublin = (53.3, -6.3);
        let washington = (38.9, -77.0);
        let dublin_km = distance_km(dublin, (64.1, -21.9));
        assert!((1400.0..1600.0).contains(&dublin_km), "{dublin_km}");
        // (washington's bias, dublin's bias, chosen)
        let cases = [
            (0, 0, "dublin"),
            (70, 0, "washington"),
            (0, -99, "dublin"),
            (40, -99, "washington"),
            (70, 50, "dublin"),
        ];
        for (washington_bias, dublin_bias, expected) in cases {
            let group = vec![
                proximity("washington", washington, washington_bias),
                proximity("dublin", dublin, dublin_bias),
            ];
            let choice = choose(&group, &reykjavik, &Environment::default(), 0);
            assert_eq!(ids(&group, &choice.chosen), [expected], "{}", choice.reason);
        }
    }

    #[test]
    fn failover_multivalue_and_ip_based_records_follow_route_53() {
        let anywhere = ClientLocation::default();
        let environment = Environment::default();
        let failover = |primary_healthy: bool, secondary_healthy: bool| {
            vec![
                candidate(
                    "primary",
                    Policy::Failover { primary: true },
                    primary_healthy,
                ),
                candidate(
                    "secondary",
                    Policy::Failover { primary: false },
                    secondary_healthy,
                ),
            ]
        };
        for (primary, secondary, expected) in [
            (true, true, "primary"),
            (true, false, "primary"),
            (false, true, "secondary"),
            (false, false, "primary"),
        ] {
            let group = failover(primary, secondary);
            let choice = choose(&group, &anywhere, &environment, 0);
            assert_eq!(ids(&group, &choice.chosen), [expected], "{}", choice.reason);
        }

        // Multivalue: up to eight healthy records; none healthy, up to eight of all.
        let group: Vec<Candidate> = (0..10)
            .map(|index| candidate(&format!("r{index}"), Policy::Multivalue, index % 3 != 0))
            .collect();
        let choice = choose(&group, &anywhere, &environment, 7);
        assert_eq!(choice.chosen.len(), 6);
        assert!(choice.chosen.iter().all(|&index| group[index].healthy));
        assert_ne!(
            choice.chosen,
            choose(&group, &anywhere, &environment, 8).chosen,
            "the order varies with the seed"
        );
        let sick: Vec<Candidate> = (0..10)
            .map(|index| candidate(&format!("r{index}"), Policy::Multivalue, false))
            .collect();
        assert_eq!(choose(&sick, &anywhere, &environment, 1).chosen.len(), 8);

        // A city database places a client in its subdivision (and a topology's place for
        // its network wins over the database's coordinates).
        let cities = Environment {
            cities: Some(std::sync::Arc::new(
                crate::geo::tests_support::city_database(),
            )),
            places: vec![("203.0.113.128/25".parse().expect("network"), (40.0, -74.0))],
            ..Environment::default()
        };
        let californian = cities.locate("203.0.113.7".parse().expect("address"));
        assert_eq!(
            (
                californian.continent.as_deref(),
                californian.country.as_deref(),
                californian.subdivision.as_deref()
            ),
            (Some("NA"), Some("US"), Some("CA"))
        );
        assert_eq!(californian.place, Some((37.7749, -122.4194)));
        assert_eq!(
            cities
                .locate("203.0.113.200".parse().expect("address"))
                .place,
            Some((40.0, -74.0))
        );
        let french = cities.locate("198.51.100.1".parse().expect("address"));
        assert_eq!(
            french.continent.as_deref(),
            Some("EU"),
            "the continent of its country"
        );
        let by_state = [
            candidate(
                "california",
                Policy::Geolocation {
                    location: GeoLocation::Subdivision("US".to_owned(), "CA".to_owned()),
                },
                true,
            ),
            candidate(
                "usa",
                Policy::Geolocation {
                    location: GeoLocation::Country("US".to_owned()),
                },
                true,
            ),
        ];
        assert_eq!(choose(&by_state, &californian, &cities, 1).chosen, [0]);

        // IP-based: the longest matching network's location, else the default.
        let environment = Environment {
            cidr_locations: vec![
                ("10.0.0.0/8".parse().expect("network"), "corp".to_owned()),
                ("10.1.0.0/16".parse().expect("network"), "lab".to_owned()),
            ],
            ..Environment::default()
        };
        let ip = |location: &str, healthy: bool| {
            candidate(
                location,
                Policy::IpBased {
                    location: location.to_owned(),
                },
                healthy,
            )
        };
        let from = |address: &str| ClientLocation {
            address: Some(address.parse().expect("address")),
            ..ClientLocation::default()
        };
        for (address, lab_healthy, expected) in [
            ("10.1.2.3", true, "lab"),
            ("10.2.2.3", true, "corp"),
            ("192.0.2.1", true, "*"),
            ("10.1.2.3", false, "*"),
        ] {
            let group = vec![ip("corp", true), ip("lab", lab_healthy), ip("*", true)];
            let choice = choose(&group, &from(address), &environment, 0);
            assert_eq!(
                ids(&group, &choice.chosen),
                [expected],
                "{address}: {}",
                choice.reason
            );
        }
    }
}
