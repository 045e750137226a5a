//! Where an address is: its country from the offline IP-to-country data the `iptocc`
//! crate ships (built from the regional Internet registries' delegation files), and the
//! country's continent from the table below (GeoNames' continent codes, as Route 53's
//! geolocation uses them).

use std::net::IpAddr;

/// Countries by continent, as two-letter codes.
const CONTINENTS: [(&str, &str); 7] = [
    (
        "AF",
        "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG \
         ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
    ),
    ("AN", "AQ BV GS HM TF"),
    (
        "AS",
        "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK \
         MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
    ),
    (
        "EU",
        "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI \
         LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
    ),
    (
        "NA",
        "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI \
         PA PM PR SV SX TC TT US VC VG VI",
    ),
    (
        "OC",
        "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
    ),
    ("SA", "AR BO BR CL CO EC FK GF GY PE PY SR UY VE"),
];

/// The continent of a country.
pub fn continent_of(country: &str) -> Option<&'static str> {
    CONTINENTS
        .iter()
        .find(|(_, countries)| countries.split_whitespace().any(|code| code == country))
        .map(|(continent, _)| *continent)
}

/// The country and continent of an address, when the registries' data places it.
pub fn locate(address: IpAddr) -> Option<(&'static str, Option<&'static str>)> {
    let country = iptocc::country_code(address)?;
    Some((country, continent_of(country)))
}

#[cfg(test)]
mod tests {
    use super::{CONTINENTS, continent_of, locate};

    #[test]
    fn countries_have_one_continent_and_addresses_a_country() {
        let mut seen = std::collections::HashSet::new();
        for (_, countries) in CONTINENTS {
            for country in countries.split_whitespace() {
                assert_eq!(country.len(), 2, "{country}");
                assert!(seen.insert(country), "{country} is listed twice");
            }
        }
        assert!(seen.len() > 240, "{}", seen.len());
        for (country, continent) in [
            ("US", "NA"),
            ("FR", "EU"),
            ("JP", "AS"),
            ("BR", "SA"),
            ("AU", "OC"),
            ("NG", "AF"),
        ] {
            assert_eq!(continent_of(country), Some(continent));
        }
        // Loopback and private addresses are in no country.
        assert_eq!(locate("127.0.0.1".parse().expect("address")), None);
        assert_eq!(locate("10.1.2.3".parse().expect("address")), None);
        // A block a registry delegated: 1.1.1.0/24 is APNIC's, registered in Australia.
        assert_eq!(
            locate("1.1.1.1".parse().expect("address")).map(|(country, _)| country),
            Some("AU")
        );
    }
}
