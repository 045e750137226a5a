//! The generated catalog: the same 1,200 products on every machine and in every region, so
//! that tests, benchmarks and screenshots can name products by id.
//!
//! Products come from a seeded generator (SplitMix64), not from a data file: names and
//! descriptions are combinations of word lists, prices end in 99, and about one product in
//! thirty is out of stock so the storefront's out-of-stock path is exercised.

use securecart_store::{Category, Product};

/// How many products the generated catalog has.
pub const PRODUCT_COUNT: i64 = 1_200;

const CATEGORIES: [(&str, &str, [&str; 6]); 12] = [
    (
        "kitchen",
        "Kitchen",
        [
            "Skillet",
            "Kettle",
            "Knife Set",
            "Cutting Board",
            "Mixing Bowl",
            "Teapot",
        ],
    ),
    (
        "home",
        "Home",
        [
            "Lamp",
            "Throw Blanket",
            "Vase",
            "Wall Clock",
            "Cushion",
            "Mirror",
        ],
    ),
    (
        "outdoor",
        "Outdoor",
        [
            "Tent",
            "Lantern",
            "Hammock",
            "Camp Chair",
            "Cooler",
            "Backpack",
        ],
    ),
    (
        "electronics",
        "Electronics",
        [
            "Headphones",
            "Speaker",
            "Charger",
            "Keyboard",
            "Webcam",
            "Power Bank",
        ],
    ),
    (
        "books",
        "Books",
        [
            "Notebook",
            "Cookbook",
            "Atlas",
            "Journal",
            "Field Guide",
            "Sketchbook",
        ],
    ),
    (
        "toys",
        "Toys",
        [
            "Puzzle",
            "Kite",
            "Building Set",
            "Yo-Yo",
            "Board Game",
            "Plush Bear",
        ],
    ),
    (
        "garden",
        "Garden",
        [
            "Planter",
            "Watering Can",
            "Trowel",
            "Seed Kit",
            "Bird Feeder",
            "Hose Reel",
        ],
    ),
    (
        "sports",
        "Sports",
        [
            "Yoga Mat",
            "Water Bottle",
            "Jump Rope",
            "Tennis Racket",
            "Football",
            "Dumbbell",
        ],
    ),
    (
        "office",
        "Office",
        [
            "Desk Organizer",
            "Pen Set",
            "Stapler",
            "Monitor Stand",
            "Desk Lamp",
            "Planner",
        ],
    ),
    (
        "apparel",
        "Apparel",
        [
            "Scarf",
            "Beanie",
            "Rain Jacket",
            "Socks",
            "Gloves",
            "Tote Bag",
        ],
    ),
    (
        "beauty",
        "Beauty",
        [
            "Soap Bar",
            "Hand Cream",
            "Hair Brush",
            "Lip Balm",
            "Face Towel",
            "Candle",
        ],
    ),
    (
        "pets",
        "Pets",
        [
            "Dog Bowl",
            "Cat Tree",
            "Leash",
            "Pet Bed",
            "Chew Toy",
            "Grooming Brush",
        ],
    ),
];

const ADJECTIVES: [&str; 16] = [
    "Sturdy",
    "Classic",
    "Compact",
    "Deluxe",
    "Everyday",
    "Handmade",
    "Lightweight",
    "Modern",
    "Nordic",
    "Rustic",
    "Sleek",
    "Vintage",
    "Cozy",
    "Bright",
    "Quiet",
    "Travel",
];

const MATERIALS: [&str; 12] = [
    "Oak", "Bamboo", "Steel", "Linen", "Ceramic", "Cotton", "Walnut", "Copper", "Wool", "Glass",
    "Cork", "Slate",
];

const QUALITIES: [&str; 8] = [
    "built to last for years",
    "easy to clean and care for",
    "designed in a small studio",
    "made from responsibly sourced materials",
    "a favourite of our customers",
    "tested by our team for a month",
    "light enough to take anywhere",
    "finished by hand",
];

/// SplitMix64: a tiny, well-distributed generator; the catalog only needs it to be stable.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(state: &mut u64, items: &[T]) -> T {
    items[(splitmix64(state) % items.len() as u64) as usize]
}

/// The categories.
pub fn categories() -> Vec<Category> {
    CATEGORIES
        .iter()
        .map(|(slug, name, _)| Category {
            slug: (*slug).to_owned(),
            name: (*name).to_owned(),
        })
        .collect()
}

/// The products, ids 1 to [`PRODUCT_COUNT`].
pub fn products() -> Vec<Product> {
    (1..=PRODUCT_COUNT).map(product).collect()
}

fn product(id: i64) -> Product {
    let mut state = 0x005E_C02E_CA27_u64 ^ (id as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let (slug, category_name, nouns) = CATEGORIES[(id as usize - 1) % CATEGORIES.len()];
    let adjective = pick(&mut state, &ADJECTIVES);
    let material = pick(&mut state, &MATERIALS);
    let noun = pick(&mut state, &nouns);
    let quality = pick(&mut state, &QUALITIES);
    let dollars = 3 + splitmix64(&mut state) % 250;
    let stock = if splitmix64(&mut state).is_multiple_of(30) {
        0
    } else {
        5 + splitmix64(&mut state) % 200
    };
    Product {
        id,
        name: format!("{adjective} {material} {noun}"),
        description: format!(
            "A {} {} in {}, {quality}. Item {id} of the SecureCart {} collection.",
            adjective.to_lowercase(),
            noun.to_lowercase(),
            material.to_lowercase(),
            category_name.to_lowercase()
        ),
        category: slug.to_owned(),
        category_name: category_name.to_owned(),
        price_minor: (dollars * 100 + 99) as i64,
        currency: "USD".to_owned(),
        stock: stock as i64,
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The product's picture: an SVG drawn from its id and name, so every product has its own
/// image without shipping image files.
pub fn product_image_svg(product: &Product) -> String {
    let mut state = product.id as u64;
    let hue = splitmix64(&mut state) % 360;
    let accent = (hue + 150) % 360;
    let shape = match splitmix64(&mut state) % 3 {
        0 => format!("<circle cx=\"200\" cy=\"175\" r=\"95\" fill=\"hsl({accent},65%,55%)\"/>"),
        1 => format!(
            "<rect x=\"110\" y=\"85\" width=\"180\" height=\"180\" rx=\"28\" fill=\"hsl({accent},65%,55%)\"/>"
        ),
        _ => format!("<polygon points=\"200,70 305,265 95,265\" fill=\"hsl({accent},65%,55%)\"/>"),
    };
    let initials: String = product
        .name
        .split_whitespace()
        .filter_map(|word| word.chars().next())
        .take(3)
        .collect();
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 400 400\" width=\"400\" height=\"400\" role=\"img\" aria-label=\"{label}\">",
            "<rect width=\"400\" height=\"400\" fill=\"hsl({hue},55%,88%)\"/>",
            "{shape}",
            "<text x=\"200\" y=\"195\" font-family=\"system-ui,sans-serif\" font-size=\"56\" font-weight=\"700\" fill=\"#fff\" text-anchor=\"middle\">{initials}</text>",
            "<text x=\"200\" y=\"345\" font-family=\"system-ui,sans-serif\" font-size=\"22\" fill=\"hsl({hue},40%,25%)\" text-anchor=\"middle\">{label}</text>",
            "</svg>"
        ),
        label = xml_escape(&product.name),
        hue = hue,
        shape = shape,
        initials = xml_escape(&initials),
    )
}

#[cfg(test)]
mod tests {
    use super::{PRODUCT_COUNT, categories, products};

    #[test]
    fn the_catalog_is_deterministic_and_large_enough() {
        let first = products();
        assert_eq!(first, products());
        assert_eq!(first.len() as i64, PRODUCT_COUNT);
        assert!(first.len() >= 1_000);
        let slugs: Vec<String> = categories()
            .into_iter()
            .map(|category| category.slug)
            .collect();
        assert!(
            first
                .iter()
                .all(|product| slugs.contains(&product.category))
        );
        assert!(
            first
                .iter()
                .all(|product| product.price_minor % 100 == 99 && product.price_minor > 0)
        );
        assert!(
            first.iter().any(|product| product.stock == 0),
            "some products are out of stock"
        );
        assert!(first.iter().filter(|product| product.stock > 0).count() > 1_000);
    }
}
