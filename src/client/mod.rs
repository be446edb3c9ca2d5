//! Registry client and copy engine: transport (TLS per registry, auth),
//! the protocol operations, and copying images between registries.

pub mod catalog;
