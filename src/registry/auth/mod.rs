//! Who may do what, like zuul-registry: the registry's users (bcrypt
//! hashes from the config) may pull, push and delete; anyone may pull when
//! `anonymous_pull` is on. Clients authenticate with `Basic` directly or
//! with a bearer token from `/auth/token` (see [`token`]).
//!
//! Docker sends its Docker Hub credentials to mirrors, so credentials we
//! do not know are treated as anonymous for pulls, never for pushes.

pub mod token;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::Digest as _;

use crate::oci::RepositoryName;
use crate::registry::config::ServerConfig;
use token::{Access, Claims, TokenError};

/// An action on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read manifests, blobs and tags.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests and tags.
    Delete,
}

impl Action {
    /// The name used in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// The actions a client asks for when it needs this one (what goes in
    /// the challenge's `scope`).
    fn scope_actions(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "pull,push",
            Action::Delete => "delete",
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// `/v2/`: any authenticated client (or anonymous when pulls are open).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// An action on a repository.
    Repository(RepositoryName, Action),
}

impl Need {
    fn scope(&self) -> Option<String> {
        match self {
            Need::Base => None,
            Need::Catalog => Some("registry:catalog:*".into()),
            Need::Repository(name, action) => {
                Some(format!("repository:{name}:{}", action.scope_actions()))
            }
        }
    }
}

/// Who is asking, from the `Authorization` header.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// Basic credentials we do not know (e.g. Docker Hub's, sent to a mirror).
    UnknownCredentials,
    /// A registry user, by Basic credentials.
    User(String),
    /// A valid token we signed.
    Token(Claims),
    /// A bearer token we refuse.
    BadToken(TokenError),
}

/// Why a request is refused: what the challenge should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The scope the client should ask a token for.
    pub scope: Option<String>,
    /// `invalid_token` or `insufficient_scope`, per RFC 6750.
    pub error: Option<&'static str>,
    /// Safe detail for the error body.
    pub detail: String,
}

/// Decides who may do what; holds the users, the token secret and a cache
/// of verified passwords (bcrypt is slow by design, clients send Basic
/// credentials with every request).
pub struct Authenticator {
    users: HashMap<String, String>,
    secret: Vec<u8>,
    anonymous_pull: bool,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Authenticator {
    /// From the server's configuration.
    pub fn new(config: &ServerConfig) -> Authenticator {
        Authenticator {
            users: config
                .users
                .iter()
                .map(|u| (u.username.clone(), u.password_bcrypt.clone()))
                .collect(),
            secret: config.token_secret.as_bytes().to_vec(),
            anonymous_pull: config.anonymous_pull,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Whether anonymous clients may pull.
    pub fn anonymous_pull(&self) -> bool {
        self.anonymous_pull
    }

    /// Who sent this `Authorization` header.
    pub async fn identify(&self, authorization: Option<&str>) -> Identity {
        let Some(value) = authorization else {
            return Identity::Anonymous;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return match token::verify(&self.secret, rest.trim()) {
                Ok(claims) => Identity::Token(claims),
                Err(e) => Identity::BadToken(e),
            };
        }
        if scheme.eq_ignore_ascii_case("basic") {
            if let Some((user, password)) = decode_basic(rest.trim()) {
                if self.check_password(&user, &password).await {
                    return Identity::User(user);
                }
            }
            return Identity::UnknownCredentials;
        }
        Identity::UnknownCredentials
    }

    /// Whether `user`/`password` are a registry user's.
    pub async fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user).cloned() else {
            return false;
        };
        let key: [u8; 32] = sha2::Sha256::digest(format!("{user}\0{password}\0{hash}")).into();
        if self.verified_cache().contains(&key) {
            return true;
        }
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false);
        if ok {
            self.verified_cache().insert(key);
        }
        ok
    }

    fn verified_cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `identity` may do what `need` names.
    pub fn authorize(&self, identity: &Identity, need: &Need) -> Result<(), Refusal> {
        let refuse = |error: Option<&'static str>, detail: &str| Refusal {
            scope: need.scope(),
            error,
            detail: detail.to_string(),
        };
        let open_pull = self.anonymous_pull
            && matches!(need, Need::Catalog | Need::Repository(_, Action::Pull));
        match identity {
            Identity::User(_) => Ok(()),
            Identity::Anonymous | Identity::UnknownCredentials if open_pull => Ok(()),
            Identity::Anonymous => Err(refuse(None, "authentication required")),
            Identity::UnknownCredentials => Err(refuse(None, "invalid username or password")),
            Identity::BadToken(e) => Err(refuse(Some("invalid_token"), &e.to_string())),
            Identity::Token(claims) => {
                let granted = match need {
                    Need::Base => true,
                    Need::Catalog => grants(claims, "registry", "catalog", "*"),
                    Need::Repository(name, action) => {
                        grants(claims, "repository", name.as_str(), action.as_str())
                    }
                };
                if granted {
                    Ok(())
                } else {
                    Err(refuse(
                        Some("insufficient_scope"),
                        "the token does not grant this access",
                    ))
                }
            }
        }
    }

    /// Issue a token for the scopes a client asked for, granting what
    /// `identity` may have. `None` when the credentials must be refused
    /// (unknown credentials asking for no scope: a failed login).
    pub fn grant(&self, identity: &Identity, scopes: &[String]) -> Option<String> {
        let user = match identity {
            Identity::User(user) => Some(user.clone()),
            Identity::UnknownCredentials if scopes.is_empty() => return None,
            Identity::Anonymous | Identity::UnknownCredentials => None,
            Identity::Token(_) | Identity::BadToken(_) => return None,
        };
        if user.is_none() && !self.anonymous_pull {
            return None;
        }
        let access = scopes
            .iter()
            .filter_map(|scope| parse_scope(scope))
            .filter_map(|mut access| {
                if user.is_none() {
                    access.actions.retain(|a| a == "pull" || a == "*");
                    if access.kind == "repository" {
                        access.actions = if access.actions.is_empty() {
                            vec![]
                        } else {
                            vec!["pull".into()]
                        };
                    }
                }
                (!access.actions.is_empty()).then_some(access)
            })
            .collect();
        let claims = Claims {
            sub: user,
            access,
            exp: token::now() + token::TOKEN_LIFETIME_SECS,
        };
        Some(token::issue(&self.secret, &claims))
    }

    /// The `WWW-Authenticate` challenge for a refused request.
    pub fn challenge(&self, scheme: &str, host: &str, refusal: &Refusal) -> String {
        let mut challenge =
            format!("Bearer realm=\"{scheme}://{host}/auth/token\",service=\"{host}\"");
        if let Some(scope) = &refusal.scope {
            challenge.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = refusal.error {
            challenge.push_str(&format!(",error=\"{error}\""));
        }
        challenge
    }
}

/// Whether `claims` grant `action` on the resource.
fn grants(claims: &Claims, kind: &str, name: &str, action: &str) -> bool {
    claims.access.iter().any(|a| {
        a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
    })
}

/// `repository:<name>:<actions>` or `registry:catalog:*`.
fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions = actions
        .split(',')
        .filter(|a| matches!(*a, "pull" | "push" | "delete" | "*"))
        .map(str::to_string)
        .collect();
    match kind {
        "repository" if name.parse::<RepositoryName>().is_ok() => {}
        "registry" if name == "catalog" => {}
        _ => return None,
    }
    Some(Access {
        kind: kind.to_string(),
        name: name.to_string(),
        actions,
    })
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::config::{ServerConfig, User};

    fn authenticator(anonymous_pull: bool) -> Authenticator {
        Authenticator::new(&ServerConfig {
            listen: vec![],
            tls: None,
            storage: "/nonexistent".into(),
            users: vec![User {
                username: "zuul".into(),
                password_bcrypt: bcrypt::hash("pw", 4).unwrap(),
            }],
            token_secret: "secret".into(),
            anonymous_pull,
            delete_enabled: true,
        })
    }

    fn granted(auth: &Authenticator, identity: &Identity, scope: &str) -> Vec<Access> {
        let token = auth.grant(identity, &[scope.to_string()]).expect("a token");
        token::verify(b"secret", &token).unwrap().access
    }

    #[test]
    fn scopes_parse_names_with_slashes_and_drop_unknown_actions() {
        let access = parse_scope("repository:quay.io/org/img:pull,push,launch").unwrap();
        assert_eq!(access.name, "quay.io/org/img");
        assert_eq!(access.actions, ["pull", "push"]);
        assert!(parse_scope("repository:Bad/Name:pull").is_none());
        assert!(parse_scope("registry:catalog:*").is_some());
        assert!(parse_scope("nonsense").is_none());
    }

    #[test]
    fn anonymous_and_unknown_credentials_get_pull_only() {
        let auth = authenticator(true);
        for identity in [Identity::Anonymous, Identity::UnknownCredentials] {
            let access = granted(&auth, &identity, "repository:org/img:pull,push");
            assert_eq!(access[0].actions, ["pull"]);
        }
        let user = granted(
            &auth,
            &Identity::User("zuul".into()),
            "repository:org/img:pull,push",
        );
        assert_eq!(user[0].actions, ["pull", "push"]);
        // A login (no scope) with unknown credentials is refused.
        assert!(auth.grant(&Identity::UnknownCredentials, &[]).is_none());
        assert!(auth.grant(&Identity::Anonymous, &[]).is_some());
    }

    #[test]
    fn without_anonymous_pull_only_users_get_tokens() {
        let auth = authenticator(false);
        let scope = ["repository:org/img:pull".to_string()];
        assert!(auth.grant(&Identity::Anonymous, &scope).is_none());
        assert!(auth.grant(&Identity::UnknownCredentials, &scope).is_none());
        let need = Need::Repository("org/img".parse().unwrap(), Action::Pull);
        assert!(auth.authorize(&Identity::Anonymous, &need).is_err());
        assert!(auth
            .authorize(&Identity::User("zuul".into()), &need)
            .is_ok());
    }

    #[tokio::test]
    async fn basic_credentials_identify_users() {
        let auth = authenticator(true);
        let basic = |creds: &str| format!("Basic {}", STANDARD.encode(creds));
        assert!(matches!(
            auth.identify(Some(&basic("zuul:pw"))).await,
            Identity::User(u) if u == "zuul"
        ));
        // Twice: the second answer comes from the cache.
        assert!(matches!(
            auth.identify(Some(&basic("zuul:pw"))).await,
            Identity::User(_)
        ));
        assert!(matches!(
            auth.identify(Some(&basic("zuul:nope"))).await,
            Identity::UnknownCredentials
        ));
        assert!(matches!(auth.identify(None).await, Identity::Anonymous));
        assert!(matches!(
            auth.identify(Some("Bearer x.y")).await,
            Identity::BadToken(_)
        ));
    }
}
