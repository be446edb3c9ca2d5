//! The Ansible modules of the collection, one file each, and the table the
//! multi-call binary dispatches on. A module file holds only the module's
//! typed arguments and its glue; the work is done by the rooms below
//! (`client`, `registry`, `host`, `builder`, `zuul`).

use serde_json::Value;

use crate::ansible::{run_module, Invocation};

pub mod build_docker_image;
pub mod promote_docker_image;
pub mod pull_from_intermediate_registry;
pub mod push_to_intermediate_registry;
pub mod remove_registry_tag;
pub mod run_buildset_registry;
pub mod upload_docker_image;
pub mod use_buildset_registry;

/// A module entry point: an invocation in, the JSON result and whether it
/// failed out.
pub type Entry = fn(Invocation) -> (Value, bool);

/// Every module, by its short name (the last part of its FQCN).
pub const MODULES: &[(&str, Entry)] = &[
    (
        "build_docker_image",
        run_module::<build_docker_image::BuildDockerImage>,
    ),
    (
        "promote_docker_image",
        run_module::<promote_docker_image::PromoteDockerImage>,
    ),
    (
        "pull_from_intermediate_registry",
        run_module::<pull_from_intermediate_registry::PullFromIntermediateRegistry>,
    ),
    (
        "push_to_intermediate_registry",
        run_module::<push_to_intermediate_registry::PushToIntermediateRegistry>,
    ),
    (
        "remove_registry_tag",
        run_module::<remove_registry_tag::RemoveRegistryTag>,
    ),
    (
        "run_buildset_registry",
        run_module::<run_buildset_registry::RunBuildsetRegistry>,
    ),
    (
        "upload_docker_image",
        run_module::<upload_docker_image::UploadDockerImage>,
    ),
    (
        "use_buildset_registry",
        run_module::<use_buildset_registry::UseBuildsetRegistry>,
    ),
];

/// The entry point of a module by short name.
pub fn find(name: &str) -> Option<Entry> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}
