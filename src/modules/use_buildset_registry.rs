//! `use_buildset_registry`: not implemented yet (placeholder so the dispatch table is
//! complete; its issue replaces this file).

use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};

/// Arguments of `use_buildset_registry`.
#[derive(Debug, Deserialize)]
pub struct Args {}

/// The `use_buildset_registry` module.
pub struct UseBuildsetRegistry;

impl Module for UseBuildsetRegistry {
    type Args = Args;

    fn run(_args: Args, _ctx: &mut Context) -> anyhow::Result<Outcome> {
        anyhow::bail!("use_buildset_registry is not implemented yet")
    }
}
