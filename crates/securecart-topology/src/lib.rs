//! The SecureCart topology file.
//!
//! A topology says which regions exist, which addresses each tier of a region has, which
//! services run how many replicas, and how the edge routes requests to them. It is read in
//! two stages: [`raw`] mirrors the file (serde, unknown keys rejected), and [`model`] is the
//! validated, resolved deployment the runtime uses, with every component's address.
//!
//! **API boundary:** the runtime crates never see the raw structs; they get a [`Topology`]
//! or the per-component settings the binary derives from it.

pub mod dns;
pub mod locate;
pub mod model;
pub mod raw;
pub mod waf;

use std::fmt;
use std::path::Path;

pub use model::{
    Algorithm, CacheBehavior, Component, DesyncMitigationMode, Edge, EdgeCache, EdgeShield,
    EdgeWaf, ErrorResponse, HealthCheck, Listener, ListenerMtls, ListenerProtocol, ListenerRule,
    ListenerWebAcl, Location, LogFormat, MinimumHealthy, OriginFailover, QueryStrings, Region,
    Role, RuleAction, RuleConditions, Service, ServiceKind, StoreKind, TargetGroup, Telemetry,
    Tiers, Topology, WafLogCondition, WafLogFilter, WafLogging, XffHeaderProcessing,
};

use locate::{FieldPath, Locator};

/// One finding in a topology file, placed at its file, line and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file's name as the user gave it, or `<embedded>` for the built-in topology.
    pub file: String,
    /// The line, from 1, when the field is written in the file.
    pub line: Option<usize>,
    /// The column, from 1, when the field is written in the file.
    pub column: Option<usize>,
    /// The field's path, such as `regions[1].tiers.public`; empty for the whole file.
    pub field: String,
    /// What is wrong or what to change.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology file {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type, or a key is unknown or
    /// missing.
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The file is well formed but some values are invalid; every one is listed.
    #[error("{}", render_all(.0))]
    Invalid(Vec<Diagnostic>),
}

impl TopologyError {
    /// Every diagnostic the error carries.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            TopologyError::Read { file, source } => vec![Diagnostic {
                file: file.clone(),
                line: None,
                column: None,
                field: String::new(),
                message: format!("cannot read the file: {source}"),
            }],
            TopologyError::Syntax(diagnostic) => vec![diagnostic.clone()],
            TopologyError::Invalid(diagnostics) => diagnostics.clone(),
        }
    }
}

fn render_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A loaded topology with the advice `securecart check` prints.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The resolved deployment.
    pub topology: Topology,
    /// Best-practice findings that do not stop the topology from running.
    pub advice: Vec<Diagnostic>,
}

/// The name used in diagnostics for the topology compiled into the binary.
pub const EMBEDDED_NAME: &str = "<embedded>";

/// Reads and resolves a topology file.
pub fn load_file(path: &Path) -> Result<Loaded, TopologyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Parses and resolves a topology from text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Loaded, TopologyError> {
    let locator = Locator::new(text);
    let raw: raw::RawTopology = toml::from_str(text).map_err(|error| {
        let offset = error.span().map(|span| span.start);
        let position = offset.map(|offset| locate::position_of(text, offset));
        let field = offset
            .map(|offset| locator.path_at(offset).to_string())
            .unwrap_or_default();
        TopologyError::Syntax(Diagnostic {
            file: file.to_owned(),
            line: position.map(|position| position.line),
            column: position.map(|position| position.column),
            field,
            message: error.message().trim().to_owned(),
        })
    })?;

    let mut findings = model::Findings::default();
    let resolved = model::resolve(&raw, &mut findings);
    let place = |path: &FieldPath, message: &str| {
        let position = locator.position(path);
        Diagnostic {
            file: file.to_owned(),
            line: position.map(|position| position.line),
            column: position.map(|position| position.column),
            field: path.to_string(),
            message: message.to_owned(),
        }
    };
    let advice = findings
        .advice
        .iter()
        .map(|advice| place(&advice.path, &advice.message))
        .collect();
    match resolved {
        Some(topology) if findings.problems.is_empty() => Ok(Loaded { topology, advice }),
        _ => Err(TopologyError::Invalid(
            findings
                .problems
                .iter()
                .map(|problem| place(&problem.path, &problem.message))
                .collect(),
        )),
    }
}

impl Topology {
    /// The region with this name.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|region| region.name == name)
    }

    /// Every component of every region.
    pub fn components(&self) -> impl Iterator<Item = &Component> {
        self.regions.iter().flat_map(Region::components)
    }

    /// The component with this id (`us-east-1/catalog-1`).
    pub fn component(&self, id: &str) -> Option<&Component> {
        let (region, name) = id.split_once('/')?;
        self.region(region)?
            .components()
            .find(|component| component.name == name)
    }
}
