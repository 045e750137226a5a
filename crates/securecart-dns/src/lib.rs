//! SecureCart's authoritative DNS server.
//!
//! - [`zone`]: zones read from RFC 1035 zone files and indexed for answering.
//! - [`answer`]: the answer to a question, a pure function of the zones (RFC 1034, 2308,
//!   4592).
//! - [`wire`]: query bytes in, response bytes out: checks, EDNS, truncation, and the kept
//!   bytes of plain answers.
//! - [`server`]: UDP and TCP sockets, reloads without dropping queries.
//! - [`policy`]: Route 53's routing policies, as a pure choice among a group's records.
//! - [`config`]: a zone described in plain values (the topology's) built and its checks started.
//! - [`geo`]: an address's country (offline registry data) and continent.
//! - [`places`]: a place for each country, where nothing places a client more closely.
//! - [`health`]: Route 53's health checks (HTTP, HTTPS, TCP, calculated, an edge's target
//!   groups), each keeping a flag.
//!
//! Policy records come from the topology's `[dns]` (through [`config`]); the client is
//! placed from EDNS Client Subnet or the resolver's address.

pub mod answer;
pub mod config;
pub mod geo;
pub mod health;
pub mod places;
pub mod policy;
pub mod server;
pub mod wire;
pub mod zone;

pub use answer::{Answer, Catalog};
pub use server::DnsServer;
pub use wire::{Responder, Transport};
pub use zone::{Zone, ZoneError};
