//! The OCI data model shared by the registry server and the client:
//! content digests, repository names, references, media types and the
//! manifest / index documents.

pub mod digest;
pub mod media_type;
pub mod name;
pub mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use name::{NameError, RepositoryName, Tag};
pub use reference::{Reference, ReferenceError};
