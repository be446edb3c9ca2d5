//! Zuul's vocabulary, shared by every module: the registries' connection
//! facts, the image list, artifacts, the naming rules every part agrees on,
//! the executor's result data file, and the change records push leaves in
//! the intermediate registry.

pub mod naming;
pub mod records;
pub mod results;
pub mod types;

pub use naming::{
    authority, buildset_repository, full_repository, intermediate_tag, temporary_tag,
    BUILDSET_REGISTRY_ALIAS,
};
pub use types::{
    Artifact, BuildsetRegistry, ContainerImage, IntermediateRegistry, ZuulContext, ZuulItem,
    ZuulProject,
};
