//! `pull_from_intermediate_registry`: not implemented yet (placeholder so the dispatch table is
//! complete; its issue replaces this file).

use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};

/// Arguments of `pull_from_intermediate_registry`.
#[derive(Debug, Deserialize)]
pub struct Args {}

/// The `pull_from_intermediate_registry` module.
pub struct PullFromIntermediateRegistry;

impl Module for PullFromIntermediateRegistry {
    type Args = Args;

    fn run(_args: Args, _ctx: &mut Context) -> anyhow::Result<Outcome> {
        anyhow::bail!("pull_from_intermediate_registry is not implemented yet")
    }
}
