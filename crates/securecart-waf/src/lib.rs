//! SecureCart's web application firewall, the part of the edge that AWS WAF plays: web
//! ACLs of rules in priority order over the fields of a request, text transformations,
//! SQL injection and XSS detection (libinjection's, through the pure-Rust
//! `libinjectionrs`), IP sets, geographic and label matches, and managed rule groups.
//!
//! It decides; the edge's pipeline asks it (with the request's head and the start of its
//! body) and answers for it.
//!
//! **API boundary:** [`WebAcl`] and its [`Rule`]s, [`Inspection`], [`Verdict`], and the
//! [`managed`] groups.

pub mod acl;
pub mod inspect;
pub mod managed;
pub mod statement;
pub mod transform;

pub use acl::{Rule, RuleAction, Verdict, WebAcl};
pub use inspect::{Field, Inspection};
pub use statement::{Evidence, Statement};
pub use transform::Transform;
