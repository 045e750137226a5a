//! Where an address is: its country from the offline IP-to-country data the `iptocc`
//! crate ships (built from the regional Internet registries' delegation files), and the
//! country's continent from the table below (GeoNames' continent codes, as Route 53's
//! geolocation uses them). A MaxMind city database (GeoIP2 or GeoLite2 City, read with
//! the `maxminddb` crate), when one is given, places an address more finely: its
//! subdivision and its coordinates.

use std::net::IpAddr;
use std::path::Path;

/// A MaxMind `.mmdb` database of cities (or countries), read whole into memory.
pub struct CityDatabase {
    reader: maxminddb::Reader<Vec<u8>>,
    description: String,
}

impl std::fmt::Debug for CityDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CityDatabase")
            .field("database", &self.description)
            .finish_non_exhaustive()
    }
}

/// What a city database says of an address.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CityPlace {
    /// The continent's two-letter code.
    pub continent: Option<String>,
    /// The country's ISO code.
    pub country: Option<String>,
    /// The largest subdivision's ISO code within the country (a US state, say).
    pub subdivision: Option<String>,
    /// Latitude and longitude in degrees.
    pub coordinates: Option<(f64, f64)>,
}

impl CityDatabase {
    /// Opens a database file; the error says what is wrong with it.
    pub fn open(path: &Path) -> Result<Self, String> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|error| format!("{}: not a MaxMind database: {error}", path.display()))?;
        let description = format!("{} ({})", path.display(), reader.metadata().database_type);
        Ok(Self {
            reader,
            description,
        })
    }

    /// A database from its bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|error| format!("not a MaxMind database: {error}"))?;
        let description = reader.metadata().database_type.clone();
        Ok(Self {
            reader,
            description,
        })
    }

    /// What the database says of `address`, if it holds it.
    pub fn locate(&self, address: IpAddr) -> Option<CityPlace> {
        let city: maxminddb::geoip2::City<'_> =
            self.reader.lookup(address).ok()?.decode().ok()??;
        let coordinates = city.location.latitude.zip(city.location.longitude);
        Some(CityPlace {
            continent: city.continent.code.map(str::to_owned),
            country: city.country.iso_code.map(str::to_owned),
            subdivision: city
                .subdivisions
                .first()
                .and_then(|subdivision| subdivision.iso_code)
                .map(str::to_owned),
            coordinates,
        })
    }
}

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
pub(crate) mod tests_support {
    use super::CityDatabase;

    /// A city database, written with the `mmdb-writer` crate as MaxMind's GeoIP2 City
    /// records are laid out: San Francisco's network, and a network with a country only.
    pub(crate) fn city_database() -> CityDatabase {
        let mut writer = mmdb_writer::Writer::new("GeoIP2-City");
        let san_francisco = serde_json::json!({
            "continent": { "code": "NA" },
            "country": { "iso_code": "US" },
            "subdivisions": [{ "iso_code": "CA" }],
            "location": { "latitude": 37.7749, "longitude": -122.4194 },
        });
        writer
            .insert(
                "203.0.113.0/24".parse::<ipnet::IpNet>().expect("network"),
                &san_francisco,
            )
            .expect("insert");
        let country_only = serde_json::json!({ "country": { "iso_code": "FR" } });
        writer
            .insert(
                "198.51.100.0/24".parse::<ipnet::IpNet>().expect("network"),
                &country_only,
            )
            .expect("insert");
        CityDatabase::from_bytes(writer.to_bytes().expect("bytes")).expect("database")
    }
}

#[cfg(test)]
mod tests {
    use super::{CONTINENTS, CityDatabase, CityPlace, continent_of, locate};

    use super::tests_support::city_database;

    #[test]
    fn a_city_database_places_addresses_to_the_subdivision() {
        let database = city_database();
        assert_eq!(
            database.locate("203.0.113.7".parse().expect("address")),
            Some(CityPlace {
                continent: Some("NA".to_owned()),
                country: Some("US".to_owned()),
                subdivision: Some("CA".to_owned()),
                coordinates: Some((37.7749, -122.4194)),
            })
        );
        let french = database
            .locate("198.51.100.1".parse().expect("address"))
            .expect("found");
        assert_eq!(
            (french.country.as_deref(), french.coordinates),
            (Some("FR"), None)
        );
        assert_eq!(database.locate("192.0.2.1".parse().expect("address")), None);
        assert!(CityDatabase::from_bytes(b"not a database".to_vec()).is_err());
        let missing = CityDatabase::open(std::path::Path::new("/nonexistent/city.mmdb"));
        assert!(
            missing
                .expect_err("no file")
                .contains("/nonexistent/city.mmdb")
        );
    }

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
