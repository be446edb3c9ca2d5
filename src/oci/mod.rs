//! The OCI data model shared by the registry server and the client:
//! content digests, repository names, references (of images, and of a
//! manifest within a repository), media types and their rules, and the
//! manifest / index documents. Nothing here speaks HTTP or touches a
//! disk, and nothing here imports the client or the server.

pub mod digest;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{
    Children, Descriptor, ImageIndex, ImageManifest, Manifest, ManifestError, Platform,
};
pub use name::{NameError, RepositoryName, Tag};
pub use reference::{ImageReferenceError, ManifestReference, ManifestReferenceError, Reference};
