//! The Ansible binary-module protocol, in one place.
//!
//! ansible-core copies a binary module to the node and runs it with one
//! argument: a JSON file holding the task's arguments plus internal
//! `_ansible_*` keys. The module prints exactly one JSON object on stdout.
//! This room turns that into: raw file → [`Invocation`] (internal keys split
//! off into a [`Context`]) → typed, validated arguments → the module's work →
//! one masked JSON result, also when the module panics.

pub mod invocation;
pub mod mask;
pub mod outcome;
pub mod runner;

pub use invocation::{Context, Invocation};
pub use mask::Secrets;
pub use outcome::{FileDiff, Outcome};
pub use runner::{run_module, Module};
