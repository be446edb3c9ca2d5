//! Upload: publish each tag under its temporary tag on the target
//! registry. From the buildset registry, the copy engine moves it
//! registry to registry (every platform, blobs the target has skipped),
//! with the credentials in memory only. Without a buildset registry the
//! local daemon pushes it, the credentials in a temporary `DOCKER_CONFIG`
//! removed afterwards.

use std::collections::HashMap;
use std::sync::Arc;

use super::targets::TagUpload;
use crate::builder::{docker::Docker, BuildError, Builder, RegistryLogin};
use crate::client::{
    copy_reference, predict_copy, CopyOptions, CopyReport, Error as ClientError, Registry,
    RemoteRegistry,
};
use crate::oci::{Digest, Reference};

/// One tag published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Uploaded {
    /// The final tag it is meant for.
    pub tag: String,
    /// Where it now is (`docker.io/org/app:change_42_latest`).
    pub target: String,
    /// Its digest, when the copy engine moved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Whether the target changed (it did not already hold this image
    /// under that tag).
    pub changed: bool,
}

impl Uploaded {
    /// What a push from the daemon of `upload` reports before it runs: a
    /// push always writes the tag.
    pub fn predicted_push(upload: &TagUpload) -> Uploaded {
        Uploaded {
            tag: upload.tag.clone(),
            target: upload.target.to_string(),
            digest: None,
            changed: true,
        }
    }
}

/// Copy every upload from `source` to the target registry `targets` holds
/// a handle for (by registry name); in check mode, only find out with
/// read-only requests which tags would change.
pub async fn copy_from_buildset(
    source: &Arc<RemoteRegistry>,
    targets: &HashMap<String, Arc<RemoteRegistry>>,
    uploads: &[TagUpload],
    check_mode: bool,
) -> Result<Vec<Uploaded>, ClientError> {
    let mut done = Vec::with_capacity(uploads.len());
    for upload in uploads {
        let Some(from) = &upload.source else {
            continue;
        };
        let target = &targets[&upload.target.registry];
        let report = copy_or_predict(source, from, target, &upload.target, check_mode).await?;
        done.push(Uploaded {
            tag: upload.tag.clone(),
            target: upload.target.to_string(),
            digest: report.digest,
            changed: report.changed,
        });
    }
    Ok(done)
}

/// Copy `from` on `source` to `to` on `target` (every platform, blobs the
/// target has skipped); in check mode only find out, with read-only
/// requests, whether it would change.
pub async fn copy_or_predict<S: Registry, D: Registry>(
    source: &Arc<S>,
    from: &Reference,
    target: &Arc<D>,
    to: &Reference,
    check_mode: bool,
) -> Result<CopyReport, ClientError> {
    if check_mode {
        predict_copy(source.as_ref(), from, target.as_ref(), to).await
    } else {
        copy_reference(source, from, target, to, &CopyOptions::default()).await
    }
}

/// Push every upload from the local Docker daemon, logging in with
/// `username`/`password` for the target registry only.
pub fn push_from_daemon(
    uploads: &[TagUpload],
    username: &str,
    password: &str,
) -> Result<Vec<Uploaded>, BuildError> {
    let mut done = Vec::with_capacity(uploads.len());
    let mut log = Vec::new();
    for upload in uploads {
        let login = RegistryLogin {
            authority: upload.target.registry.clone(),
            username: username.to_string(),
            password: password.to_string(),
            ca_pem: None,
        };
        Docker.push(&upload.local, &upload.target.to_string(), &login, &mut log)?;
        done.push(Uploaded::predicted_push(upload));
    }
    Ok(done)
}
