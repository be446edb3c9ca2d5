//! What a request asks for: its parsed [`Route`] and method as one
//! [`Operation`], and the access that operation needs. The dispatcher
//! checks that access once, before any handler runs, so a handler never
//! decides who may call it.

use axum::http::Method;

use super::path::Route;
use crate::oci::RepositoryName;
use crate::registry::auth::{Action, Need};

/// One operation of the distribution API. References, digests and upload
/// ids are left as sent; handlers parse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `GET`/`HEAD /v2/`.
    Base,
    /// `GET /v2/_catalog`.
    Catalog,
    /// `GET /v2/<name>/tags/list`.
    ListTags(RepositoryName),
    /// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
    GetManifest {
        /// Repository.
        name: RepositoryName,
        /// Tag or digest.
        reference: String,
        /// `HEAD`: headers only.
        head: bool,
    },
    /// `PUT /v2/<name>/manifests/<reference>`.
    PutManifest(RepositoryName, String),
    /// `DELETE /v2/<name>/manifests/<reference>`.
    DeleteManifest(RepositoryName, String),
    /// `GET`/`HEAD /v2/<name>/blobs/<digest>`.
    GetBlob {
        /// Repository.
        name: RepositoryName,
        /// The blob's digest.
        digest: String,
        /// `HEAD`: headers only.
        head: bool,
    },
    /// `DELETE /v2/<name>/blobs/<digest>`.
    DeleteBlob(RepositoryName, String),
    /// `POST /v2/<name>/blobs/uploads/` (also monolithic and mount).
    StartUpload(RepositoryName),
    /// `GET /v2/<name>/blobs/uploads/<id>`.
    UploadStatus(RepositoryName, String),
    /// `PATCH /v2/<name>/blobs/uploads/<id>`.
    PatchUpload(RepositoryName, String),
    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`.
    FinishUpload(RepositoryName, String),
    /// `DELETE /v2/<name>/blobs/uploads/<id>`.
    CancelUpload(RepositoryName, String),
    /// `GET /v2/<name>/referrers/<digest>`.
    ListReferrers(RepositoryName, String),
    /// `PUT /v2/<name>/_speculative/sources`: record where blobs live.
    RecordSources(RepositoryName),
    /// `GET /v2/<name>/_speculative/sources`: list them (no credentials).
    ListSources(RepositoryName),
}

impl Operation {
    /// The operation `method` on `route` asks for; `None` when the API
    /// has no such operation.
    pub fn of(route: Route, method: &Method) -> Option<Operation> {
        let head = *method == Method::HEAD;
        let read = head || *method == Method::GET;
        Some(match route {
            Route::Base if read => Operation::Base,
            Route::Catalog if *method == Method::GET => Operation::Catalog,
            Route::Tags(name) if *method == Method::GET => Operation::ListTags(name),
            Route::Manifest(name, reference) if read => Operation::GetManifest {
                name,
                reference,
                head,
            },
            Route::Manifest(name, r) if *method == Method::PUT => Operation::PutManifest(name, r),
            Route::Manifest(name, r) if *method == Method::DELETE => {
                Operation::DeleteManifest(name, r)
            }
            Route::Blob(name, digest) if read => Operation::GetBlob { name, digest, head },
            Route::Blob(name, d) if *method == Method::DELETE => Operation::DeleteBlob(name, d),
            Route::Uploads(name) if *method == Method::POST => Operation::StartUpload(name),
            Route::Upload(name, id) if *method == Method::GET => Operation::UploadStatus(name, id),
            Route::Upload(name, id) if *method == Method::PATCH => Operation::PatchUpload(name, id),
            Route::Upload(name, id) if *method == Method::PUT => Operation::FinishUpload(name, id),
            Route::Upload(name, id) if *method == Method::DELETE => {
                Operation::CancelUpload(name, id)
            }
            Route::Referrers(name, d) if *method == Method::GET => {
                Operation::ListReferrers(name, d)
            }
            Route::Sources(name) if *method == Method::PUT => Operation::RecordSources(name),
            Route::Sources(name) if *method == Method::GET => Operation::ListSources(name),
            _ => return None,
        })
    }

    /// The access this operation needs. Reading an upload's state or
    /// cancelling it is part of pushing; a mount's extra need (pull on
    /// `from`) is the upload handler's, as it only decides 201 or 202.
    pub fn need(&self) -> Need {
        use Operation::*;
        let on = |name: &RepositoryName, action| Need::Repository(name.clone(), action);
        match self {
            Base => Need::Base,
            Catalog => Need::Catalog,
            ListTags(name)
            | GetManifest { name, .. }
            | GetBlob { name, .. }
            | ListReferrers(name, _)
            | ListSources(name) => on(name, Action::Pull),
            PutManifest(name, _)
            | StartUpload(name)
            | UploadStatus(name, _)
            | PatchUpload(name, _)
            | FinishUpload(name, _)
            | CancelUpload(name, _)
            | RecordSources(name) => on(name, Action::Push),
            DeleteManifest(name, _) | DeleteBlob(name, _) => on(name, Action::Delete),
        }
    }

    /// Whether this deletes content (a manifest, tag or blob): what the
    /// server's `delete_enabled` switch turns off. Cancelling an upload
    /// deletes nothing stored and stays allowed.
    pub fn deletes_content(&self) -> bool {
        matches!(
            self,
            Operation::DeleteManifest(..) | Operation::DeleteBlob(..)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METHODS: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];

    fn name() -> RepositoryName {
        "org/img".parse().unwrap()
    }

    /// What every method on `route` needs, in the order of [`METHODS`].
    fn needs(route: Route) -> Vec<Option<Need>> {
        METHODS
            .iter()
            .map(|m| Operation::of(route.clone(), m).map(|op| op.need()))
            .collect()
    }

    #[test]
    fn every_route_and_method_needs_exactly_its_access() {
        let pull = Some(Need::Repository(name(), Action::Pull));
        let push = Some(Need::Repository(name(), Action::Push));
        let delete = Some(Need::Repository(name(), Action::Delete));
        let s = String::from;
        //                 GET            HEAD           PUT           POST          PATCH         DELETE          OPTIONS
        let table = [
            (
                Route::Base,
                [
                    Some(Need::Base),
                    Some(Need::Base),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            ),
            (
                Route::Catalog,
                [Some(Need::Catalog), None, None, None, None, None, None],
            ),
            (
                Route::Tags(name()),
                [pull.clone(), None, None, None, None, None, None],
            ),
            (
                Route::Manifest(name(), s("v1")),
                [
                    pull.clone(),
                    pull.clone(),
                    push.clone(),
                    None,
                    None,
                    delete.clone(),
                    None,
                ],
            ),
            (
                Route::Blob(name(), s("sha256:00")),
                [
                    pull.clone(),
                    pull.clone(),
                    None,
                    None,
                    None,
                    delete.clone(),
                    None,
                ],
            ),
            (
                Route::Uploads(name()),
                [None, None, None, push.clone(), None, None, None],
            ),
            (
                Route::Upload(name(), s("id")),
                [
                    push.clone(),
                    None,
                    push.clone(),
                    None,
                    push.clone(),
                    push.clone(),
                    None,
                ],
            ),
            (
                Route::Referrers(name(), s("sha256:00")),
                [pull.clone(), None, None, None, None, None, None],
            ),
            (
                Route::Sources(name()),
                [pull.clone(), None, push.clone(), None, None, None, None],
            ),
        ];
        for (route, expected) in table {
            assert_eq!(needs(route.clone()), expected.to_vec(), "{route:?}");
        }
    }

    #[test]
    fn only_manifest_and_blob_deletes_delete_content() {
        let deleting: Vec<bool> = [
            Operation::DeleteManifest(name(), "v1".into()),
            Operation::DeleteBlob(name(), "sha256:00".into()),
            Operation::CancelUpload(name(), "id".into()),
            Operation::PutManifest(name(), "v1".into()),
        ]
        .iter()
        .map(Operation::deletes_content)
        .collect();
        assert_eq!(deleting, [true, true, false, false]);
    }
}
