//! `docker_credentials`: the login for the target registry, and the
//! regular expression limiting which repositories it may write.

use regex_lite::Regex;
use serde::Deserialize;

use crate::client::Endpoint;

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
