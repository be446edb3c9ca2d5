//! The registry's repository catalog (`GET /v2/_catalog`), followed across
//! the spec's `Link` pages: what a buildset registry holds, for the
//! preload of `use_buildset_registry`. (Tags and digests come from the
//! [`Registry`](super::Registry) operations.)

use super::auth::Authenticator;
use super::error::Error;
use super::pages::for_each_page;
use crate::oci::RepositoryName;

/// The token scope the catalog needs on registries that use tokens.
const CATALOG_SCOPE: &str = "registry:catalog:*";

#[derive(serde::Deserialize)]
struct RepositoryList {
    #[serde(default)]
    repositories: Vec<String>,
}

/// Every repository the registry lists. Names that are not valid
/// repository names today are skipped.
pub(crate) async fn list(auth: &Authenticator) -> Result<Vec<RepositoryName>, Error> {
    let scopes = [CATALOG_SCOPE.to_string()];
    let mut repositories = Vec::new();
    for_each_page(
        auth,
        "_catalog",
        &scopes,
        "catalog",
        false,
        |page: RepositoryList| {
            repositories.extend(page.repositories.iter().filter_map(|r| r.parse().ok()));
        },
    )
    .await?;
    Ok(repositories)
}
