//! `build_docker_image`: not implemented yet (placeholder so the dispatch table is
//! complete; its issue replaces this file).

use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};

/// Arguments of `build_docker_image`.
#[derive(Debug, Deserialize)]
pub struct Args {}

/// The `build_docker_image` module.
pub struct BuildDockerImage;

impl Module for BuildDockerImage {
    type Args = Args;

    fn run(_args: Args, _ctx: &mut Context) -> anyhow::Result<Outcome> {
        anyhow::bail!("build_docker_image is not implemented yet")
    }
}
