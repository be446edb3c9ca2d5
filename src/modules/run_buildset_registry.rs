//! `run_buildset_registry`: not implemented yet (placeholder so the dispatch table is
//! complete; its issue replaces this file).

use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};

/// Arguments of `run_buildset_registry`.
#[derive(Debug, Deserialize)]
pub struct Args {}

/// The `run_buildset_registry` module.
pub struct RunBuildsetRegistry;

impl Module for RunBuildsetRegistry {
    type Args = Args;

    fn run(_args: Args, _ctx: &mut Context) -> anyhow::Result<Outcome> {
        anyhow::bail!("run_buildset_registry is not implemented yet")
    }
}
