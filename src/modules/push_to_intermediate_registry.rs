//! `push_to_intermediate_registry`: not implemented yet (placeholder so the dispatch table is
//! complete; its issue replaces this file).

use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};

/// Arguments of `push_to_intermediate_registry`.
#[derive(Debug, Deserialize)]
pub struct Args {}

/// The `push_to_intermediate_registry` module.
pub struct PushToIntermediateRegistry;

impl Module for PushToIntermediateRegistry {
    type Args = Args;

    fn run(_args: Args, _ctx: &mut Context) -> anyhow::Result<Outcome> {
        anyhow::bail!("push_to_intermediate_registry is not implemented yet")
    }
}
