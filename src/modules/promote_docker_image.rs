//! `promote_docker_image`: not implemented yet (placeholder so the dispatch table is
//! complete; its issue replaces this file).

use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};

/// Arguments of `promote_docker_image`.
#[derive(Debug, Deserialize)]
pub struct Args {}

/// The `promote_docker_image` module.
pub struct PromoteDockerImage;

impl Module for PromoteDockerImage {
    type Args = Args;

    fn run(_args: Args, _ctx: &mut Context) -> anyhow::Result<Outcome> {
        anyhow::bail!("promote_docker_image is not implemented yet")
    }
}
