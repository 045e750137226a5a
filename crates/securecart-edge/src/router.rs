//! Path rules compiled once into a table sorted by prefix length, so that the first match is
//! the longest: a request is matched without consulting rules that cannot win.
//!
//! A pure function of (rules, path): tested as a table.

/// The compiled rules.
#[derive(Debug, Clone)]
pub struct PathRouter {
    /// (prefix, target group index), longest prefix first.
    rules: Vec<(String, usize)>,
}

impl PathRouter {
    /// Compiles rules given as (prefix, target group index).
    pub fn new(rules: impl IntoIterator<Item = (String, usize)>) -> Self {
        let mut rules: Vec<(String, usize)> = rules.into_iter().collect();
        // Longest first; equal lengths keep the file's order.
        rules.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Self { rules }
    }

    /// The index of the rule that serves `path`, and its target group: the rule with the
    /// longest prefix of `path`.
    pub fn route(&self, path: &str) -> Option<(usize, usize)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, (prefix, _))| path.starts_with(prefix.as_str()))
            .map(|(rule, (_, group))| (rule, *group))
    }

    /// The prefix of a rule, as its name in logs and metrics.
    pub fn prefix(&self, rule: usize) -> &str {
        self.rules
            .get(rule)
            .map_or("", |(prefix, _)| prefix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::PathRouter;

    #[test]
    fn the_longest_prefix_wins() {
        let router = PathRouter::new([
            ("/".to_owned(), 0),
            ("/api/catalog/".to_owned(), 1),
            ("/api/cart".to_owned(), 2),
            ("/images/".to_owned(), 1),
        ]);
        let cases = [
            ("/", Some(0)),
            ("/products/7", Some(0)),
            ("/api/catalog/products", Some(1)),
            ("/api/catalog", Some(0)),
            ("/api/cart", Some(2)),
            ("/api/cart/items/3", Some(2)),
            ("/api/cartography", Some(2)),
            ("/images/products/1.svg", Some(1)),
        ];
        for (path, group) in cases {
            assert_eq!(router.route(path).map(|(_, group)| group), group, "{path}");
        }
        let without_default = PathRouter::new([("/api/".to_owned(), 0)]);
        assert_eq!(without_default.route("/index.html"), None);
        assert_eq!(
            without_default
                .route("/api/x")
                .map(|(rule, _)| without_default.prefix(rule)),
            Some("/api/")
        );
    }
}
