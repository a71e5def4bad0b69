//! The contract between Caretrail services and with partners: identifiers, token claims,
//! roles and scopes, and the payloads of domain events. Types only; no behaviour beyond
//! parsing.

pub mod auth;
pub mod consent;
pub mod events;
pub mod identity;
pub mod ids;
pub mod ledger;
pub mod records;

pub use ids::*;
