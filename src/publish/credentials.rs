//! The logins for the target registries, and the regular expressions
//! limiting which repositories each may write: the docker family's one
//! `docker_credentials`, or the container family's
//! `container_registry_credentials`, one entry per registry host, looked up
//! by each image's `registry`.

use std::collections::BTreeMap;

use regex_lite::Regex;
use serde::Deserialize;

use crate::ansible::Secrets;
use crate::client::Endpoint;
use crate::oci::Reference;
use crate::zuul::ContainerImage;

/// `docker_credentials`, from a Zuul secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerCredentials {
    /// User.
    pub username: String,
    /// Password or access token (never printed).
    pub password: String,
    /// A regular expression every repository must match (searched, not
    /// anchored, as zuul-jobs does); absent means any.
    #[serde(default)]
    pub repository: Option<String>,
    /// Hosts (`host` or `host:port`) other than the registry's own that
    /// may receive these credentials as its token realm, e.g. `gitlab.com`
    /// for `registry.gitlab.com`. Any other realm host gets no password.
    #[serde(default)]
    pub token_hosts: Vec<String>,
}

impl std::fmt::Debug for DockerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerCredentials")
            .field("username", &self.username)
            .field("password", &"********")
            .field("repository", &self.repository)
            .field("token_hosts", &self.token_hosts)
            .finish()
    }
}

/// A repository the credentials may not write, or a pattern that is not a
/// regular expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermitError {
    /// The pattern does not compile.
    #[error(
        "docker_credentials.repository {pattern:?} is not a valid regular expression: {reason}"
    )]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// The regex engine's explanation.
        reason: String,
    },
    /// A repository does not match.
    #[error("docker_images[{index}].repository {repository:?} is not permitted by docker_credentials.repository {pattern:?}")]
    NotPermitted {
        /// Position in `docker_images`.
        index: usize,
        /// The repository.
        repository: String,
        /// The pattern.
        pattern: String,
    },
}

impl DockerCredentials {
    /// The endpoint of `registry` logged in with these credentials, trusting
    /// `ca_pem` (when given and not blank) besides the system's roots.
    pub fn endpoint(&self, registry: &str, ca_pem: Option<&str>) -> Endpoint {
        let mut endpoint = Endpoint::new(registry).with_credentials(&self.username, &self.password);
        for host in &self.token_hosts {
            endpoint = endpoint.allow_token_host(host);
        }
        match ca_pem {
            Some(pem) if !pem.trim().is_empty() => endpoint.with_ca_pem(pem),
            _ => endpoint,
        }
    }

    /// Check every repository, in order, against the pattern.
    pub fn permit<'a>(
        &self,
        repositories: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), PermitError> {
        let Some(pattern) = &self.repository else {
            return Ok(());
        };
        let regex = Regex::new(pattern).map_err(|e| PermitError::BadPattern {
            pattern: pattern.clone(),
            reason: e.to_string(),
        })?;
        for (index, repository) in repositories.into_iter().enumerate() {
            if !regex.is_match(repository) {
                return Err(PermitError::NotPermitted {
                    index,
                    repository: repository.to_string(),
                    pattern: pattern.clone(),
                });
            }
        }
        Ok(())
    }
}

/// One entry of `container_registry_credentials`: the login for one
/// registry host. A quay.io entry used only to remove tags may carry just
/// an `api_token`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// User.
    #[serde(default)]
    pub username: Option<String>,
    /// Password or access token (never printed).
    #[serde(default)]
    pub password: Option<String>,
    /// A regular expression every repository must match (searched, as
    /// zuul-jobs does); absent means any.
    #[serde(default)]
    pub repository: Option<String>,
    /// quay.io's OAuth application token, for its tag API (never printed).
    #[serde(default)]
    pub api_token: Option<String>,
    /// The registry's API for tag removal: `quay`, `docker`, or `registry`
    /// (the distribution spec); guessed from the host when absent.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// As [`DockerCredentials::token_hosts`].
    #[serde(default)]
    pub token_hosts: Vec<String>,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("repository", &self.repository)
            .field("type", &self.kind)
            .finish_non_exhaustive()
    }
}

impl From<&DockerCredentials> for RegistryCredentials {
    fn from(c: &DockerCredentials) -> RegistryCredentials {
        RegistryCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            repository: c.repository.clone(),
            api_token: None,
            kind: None,
            token_hosts: c.token_hosts.clone(),
        }
    }
}

impl RegistryCredentials {
    /// The endpoint of `registry` logged in with these credentials (when
    /// they have a user and password), trusting `ca_pem` (when given and
    /// not blank) besides the system's roots.
    pub fn endpoint(&self, registry: &str, ca_pem: Option<&str>) -> Endpoint {
        let mut endpoint = Endpoint::new(registry);
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            endpoint = endpoint.with_credentials(username, password);
        }
        for host in &self.token_hosts {
            endpoint = endpoint.allow_token_host(host);
        }
        match ca_pem {
            Some(pem) if !pem.trim().is_empty() => endpoint.with_ca_pem(pem),
            _ => endpoint,
        }
    }

    /// User and password, or `None` when either is missing.
    pub fn login(&self) -> Option<(&str, &str)> {
        Some((self.username.as_deref()?, self.password.as_deref()?))
    }
}

/// Where the logins come from: which family's variable.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `docker_credentials`: one login, for the one target registry.
    Docker(RegistryCredentials),
    /// `container_registry_credentials`: a login per registry host.
    Container(BTreeMap<String, RegistryCredentials>),
}

/// Why the credentials cannot publish an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Neither variable, or both.
    #[error("give exactly one of docker_credentials and container_registry_credentials")]
    NotOne,
    /// An image's registry has no entry.
    #[error(
        "container_images[{index}] ({repository}): registry {registry:?} has no entry in \
         container_registry_credentials (it has {known:?}); nothing was pushed"
    )]
    NoEntry {
        /// Position in `container_images`.
        index: usize,
        /// The image's repository.
        repository: String,
        /// The image's registry.
        registry: String,
        /// The hosts that have credentials.
        known: Vec<String>,
    },
    /// An image's `registry` is not the host its repository names, so its
    /// registry's credentials would go to another host.
    #[error(
        "container_images[{index}].registry {registry:?} is not the registry of its repository \
         {repository:?} ({host}); nothing was pushed"
    )]
    OtherHost {
        /// Position in `container_images`.
        index: usize,
        /// The image's repository.
        repository: String,
        /// The image's registry.
        registry: String,
        /// The host the repository names.
        host: String,
    },
    /// A repository its registry's pattern does not allow.
    #[error(
        "container_images[{index}].repository {repository:?} is not permitted by \
         container_registry_credentials[{registry:?}].repository {pattern:?}; nothing was pushed"
    )]
    NotPermitted {
        /// Position in `container_images`.
        index: usize,
        /// The repository.
        repository: String,
        /// The registry.
        registry: String,
        /// The pattern.
        pattern: String,
    },
    /// A pattern that is not a regular expression.
    #[error(
        "container_registry_credentials[{registry:?}].repository {pattern:?} is not a valid \
         regular expression: {reason}"
    )]
    BadPattern {
        /// The registry.
        registry: String,
        /// The pattern.
        pattern: String,
        /// The regex engine's explanation.
        reason: String,
    },
    /// The docker family's check failed.
    #[error(transparent)]
    Docker(#[from] PermitError),
}

impl Credentials {
    /// The one of `docker_credentials` and `container_registry_credentials`
    /// that is given.
    pub fn from_args(
        docker: Option<&DockerCredentials>,
        container: Option<&BTreeMap<String, RegistryCredentials>>,
    ) -> Result<Credentials, CredentialsError> {
        match (docker, container) {
            (Some(docker), None) => Ok(Credentials::Docker(docker.into())),
            (None, Some(map)) => Ok(Credentials::Container(map.clone())),
            _ => Err(CredentialsError::NotOne),
        }
    }

    /// [`Credentials::from_args`], every password and API token
    /// registered with `secrets` before anything can print them.
    pub fn given(
        docker: Option<&DockerCredentials>,
        container: Option<&BTreeMap<String, RegistryCredentials>>,
        secrets: &mut Secrets,
    ) -> Result<Credentials, CredentialsError> {
        let credentials = Credentials::from_args(docker, container)?;
        credentials.mask(secrets);
        Ok(credentials)
    }

    /// Register every password and API token with `secrets`.
    pub fn mask(&self, secrets: &mut Secrets) {
        let all: Vec<&RegistryCredentials> = match self {
            Credentials::Docker(one) => vec![one],
            Credentials::Container(map) => map.values().collect(),
        };
        for c in all {
            for secret in [&c.password, &c.api_token].into_iter().flatten() {
                secrets.add(secret.clone());
            }
        }
    }

    /// The login for `registry` (the docker family's one login is for any).
    pub fn for_registry(&self, registry: &str) -> Option<&RegistryCredentials> {
        match self {
            Credentials::Docker(one) => Some(one),
            Credentials::Container(map) => map.get(registry).or_else(|| {
                // Docker Hub under any of its names.
                let hub = ["docker.io", "index.docker.io", "registry-1.docker.io"];
                hub.contains(&registry)
                    .then(|| hub.iter().find_map(|h| map.get(*h)))
                    .flatten()
            }),
        }
    }

    /// Check, before anything is sent, that every image (published at
    /// `targets[i]`, its repository on its registry) has a login for its
    /// registry that may write its repository; returns the registry key of
    /// each image.
    pub fn permit(
        &self,
        images: &[ContainerImage],
        targets: &[Reference],
    ) -> Result<Vec<String>, CredentialsError> {
        match self {
            Credentials::Docker(one) => {
                let docker = DockerCredentials {
                    username: String::new(),
                    password: String::new(),
                    repository: one.repository.clone(),
                    token_hosts: Vec::new(),
                };
                docker.permit(images.iter().map(|i| i.repository.as_str()))?;
                Ok(targets.iter().map(|t| t.registry.clone()).collect())
            }
            Credentials::Container(map) => {
                let mut keys = Vec::with_capacity(images.len());
                for (index, (image, target)) in images.iter().zip(targets).enumerate() {
                    let registry = image
                        .registry
                        .clone()
                        .unwrap_or_else(|| target.registry.clone());
                    if !same_host(&registry, &target.registry) {
                        return Err(CredentialsError::OtherHost {
                            index,
                            repository: image.repository.clone(),
                            registry,
                            host: target.registry.clone(),
                        });
                    }
                    let Some(login) = self.for_registry(&registry) else {
                        return Err(CredentialsError::NoEntry {
                            index,
                            repository: image.repository.clone(),
                            registry,
                            known: map.keys().cloned().collect(),
                        });
                    };
                    if let Some(pattern) = &login.repository {
                        let regex =
                            Regex::new(pattern).map_err(|e| CredentialsError::BadPattern {
                                registry: registry.clone(),
                                pattern: pattern.clone(),
                                reason: e.to_string(),
                            })?;
                        if !regex.is_match(&image.repository) {
                            return Err(CredentialsError::NotPermitted {
                                index,
                                repository: image.repository.clone(),
                                registry,
                                pattern: pattern.clone(),
                            });
                        }
                    }
                    keys.push(registry);
                }
                Ok(keys)
            }
        }
    }
}

/// Whether two registry names are the same host (Docker Hub has several).
fn same_host(a: &str, b: &str) -> bool {
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    a == b || (hub(a) && hub(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(pattern: Option<&str>) -> DockerCredentials {
        DockerCredentials {
            username: "u".into(),
            password: "secret-pw".into(),
            repository: pattern.map(str::to_string),
            token_hosts: Vec::new(),
        }
    }

    #[test]
    fn token_hosts_from_the_secret_may_receive_the_login_and_no_others() {
        let secret: DockerCredentials = serde_json::from_value(serde_json::json!({
            "username": "u", "password": "secret-pw", "token_hosts": ["gitlab.com"]
        }))
        .unwrap();
        let gitlab = secret.endpoint("registry.gitlab.com", Some("  "));
        assert!(gitlab.is_token_host("gitlab.com", 443));
        assert!(gitlab.is_token_host("registry.gitlab.com", 443));
        assert!(!gitlab.is_token_host("evil.example.org", 443));
        assert!(gitlab.ca_pem.is_none(), "a blank CA is no CA");
        let plain = creds(None).endpoint("registry.gitlab.com", None);
        assert!(!plain.is_token_host("gitlab.com", 443));
        assert!(!format!("{secret:?}").contains("secret-pw"));
    }

    #[test]
    fn repositories_are_searched_not_anchored() {
        assert_eq!(creds(None).permit(["any/thing"]), Ok(()));
        assert_eq!(creds(Some("^org/")).permit(["org/a", "org/b"]), Ok(()));
        assert_eq!(creds(Some("org")).permit(["myorg/a"]), Ok(()));
        assert_eq!(
            creds(Some("^org/"))
                .permit(["org/a", "other/b"])
                .unwrap_err()
                .to_string(),
            "docker_images[1].repository \"other/b\" is not permitted by \
             docker_credentials.repository \"^org/\""
        );
        assert!(creds(Some("("))
            .permit(["a"])
            .unwrap_err()
            .to_string()
            .starts_with(
                "docker_credentials.repository \"(\" is not a valid regular expression: "
            ));
        assert!(!format!("{:?}", creds(None)).contains("secret-pw"));
    }
}
