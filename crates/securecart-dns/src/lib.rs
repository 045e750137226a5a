//! SecureCart's authoritative DNS server.
//!
//! - [`zone`]: zones read from RFC 1035 zone files and indexed for answering.
//! - [`answer`]: the answer to a question, a pure function of the zones (RFC 1034, 2308,
//!   4592).
//! - [`wire`]: query bytes in, response bytes out: checks, EDNS, truncation, and the kept
//!   bytes of plain answers.
//! - [`server`]: UDP and TCP sockets, reloads without dropping queries.
//!
//! Route 53's routing policies and health checks come next (see the project's issues).

pub mod answer;
pub mod server;
pub mod wire;
pub mod zone;

pub use answer::{Answer, Catalog};
pub use server::DnsServer;
pub use wire::{Responder, Transport};
pub use zone::{Zone, ZoneError};
