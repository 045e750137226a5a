//! Where a field is in the file: from a field path to a line, and from a byte offset back to
//! the field path.
//!
//! serde reports errors by byte span, and validation reports them by field path; a person
//! needs both the line and the field's name. `toml_edit` keeps the span of every key and
//! value, so a second, span-keeping parse of the same text answers both questions.

use std::fmt;
use std::ops::Range;

use toml_edit::{Document, Item, TableLike, Value};

/// One step of a field path: a key of a table or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A table's key.
    Key(String),
    /// An array's element.
    Index(usize),
}

/// The path of a field, such as `regions[1].tiers.public`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The path with one more key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// The path with one more index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A line and column, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column in characters, from 1.
    pub column: usize,
}

/// The line and column of a byte offset in `text`.
pub fn position_of(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    Position { line, column }
}

/// The span-keeping view of a topology file.
pub struct Locator<'a> {
    text: &'a str,
    document: Option<Document<&'a str>>,
}

impl fmt::Debug for Locator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locator").finish_non_exhaustive()
    }
}

impl<'a> Locator<'a> {
    /// Parses `text` keeping spans. A text that is not TOML gives a locator that finds
    /// nothing; the TOML error itself already carries a position.
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            document: Document::parse(text).ok(),
        }
    }

    /// Where a field is: the span of its key when it has one (so that the line is the one
    /// where a person wrote the field), else of its value. A path that does not exist in the
    /// file (a missing field, filled by a default) is found at its deepest existing parent.
    pub fn position(&self, path: &FieldPath) -> Option<Position> {
        let document = self.document.as_ref()?;
        let mut best = None;
        let mut node = Node::Table(document.as_table());
        for segment in &path.0 {
            let (span, next) = match (node, segment) {
                (Node::Table(table), Segment::Key(key)) => {
                    let Some((key, item)) = table.get_key_value(key) else {
                        break;
                    };
                    (key.span().or_else(|| item.span()), Node::from_item(item))
                }
                (Node::Array(values), Segment::Index(index)) => match values.get(*index) {
                    Some(Element::Value(value)) => (value.span(), Node::from_value(value)),
                    Some(Element::Table(table)) => {
                        (table.span(), Some(Node::Table(table as &dyn TableLike)))
                    }
                    None => break,
                },
                _ => break,
            };
            if span.is_some() {
                best = span;
            }
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        best.map(|span| position_of(self.text, span.start))
    }

    /// The path of the innermost field whose key or value covers `offset`.
    pub fn path_at(&self, offset: usize) -> FieldPath {
        let Some(document) = self.document.as_ref() else {
            return FieldPath::default();
        };
        find(
            Node::Table(document.as_table()),
            offset,
            &FieldPath::default(),
        )
        .unwrap_or_default()
    }
}

/// Searches every child of `node`, deepest first: the spans of standard tables cover only
/// their headers, so a parent's span says nothing about where its children are.
fn find(node: Node<'_>, offset: usize, path: &FieldPath) -> Option<FieldPath> {
    match node {
        Node::Table(table) => table.iter().find_map(|(key, _)| {
            let (key_ref, item) = table.get_key_value(key)?;
            let child = path.key(key);
            Node::from_item(item)
                .and_then(|node| find(node, offset, &child))
                .or_else(|| {
                    (contains(key_ref.span(), offset) || contains(item.span(), offset))
                        .then_some(child)
                })
        }),
        Node::Array(elements) => (0..elements.len()).find_map(|index| {
            let child = path.index(index);
            let (span, node) = match elements.get(index)? {
                Element::Value(value) => (value.span(), Node::from_value(value)),
                Element::Table(table) => (table.span(), Some(Node::Table(table as &dyn TableLike))),
            };
            node.and_then(|node| find(node, offset, &child))
                .or_else(|| contains(span, offset).then_some(child))
        }),
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|span| span.start <= offset && offset < span.end.max(span.start + 1))
}

/// A table (standard or inline) or an array (of values or of tables) in the document.
#[derive(Clone, Copy)]
enum Node<'d> {
    Table(&'d dyn TableLike),
    Array(Elements<'d>),
}

#[derive(Clone, Copy)]
enum Elements<'d> {
    Values(&'d toml_edit::Array),
    Tables(&'d toml_edit::ArrayOfTables),
}

enum Element<'d> {
    Value(&'d Value),
    Table(&'d toml_edit::Table),
}

impl<'d> Elements<'d> {
    fn len(self) -> usize {
        match self {
            Elements::Values(array) => array.len(),
            Elements::Tables(tables) => tables.len(),
        }
    }

    fn get(self, index: usize) -> Option<Element<'d>> {
        match self {
            Elements::Values(array) => array.get(index).map(Element::Value),
            Elements::Tables(tables) => tables.get(index).map(Element::Table),
        }
    }
}

impl<'d> Node<'d> {
    fn from_item(item: &'d Item) -> Option<Self> {
        match item {
            Item::Table(table) => Some(Node::Table(table)),
            Item::ArrayOfTables(tables) => Some(Node::Array(Elements::Tables(tables))),
            Item::Value(value) => Self::from_value(value),
            Item::None => None,
        }
    }

    fn from_value(value: &'d Value) -> Option<Self> {
        match value {
            Value::Array(array) => Some(Node::Array(Elements::Values(array))),
            Value::InlineTable(table) => Some(Node::Table(table)),
            _ => None,
        }
    }
}
