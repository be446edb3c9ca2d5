//! Who may do what. The registry's users (bcrypt hashes from the config)
//! have a role: read-write users pull, push and delete, read-only users
//! only pull; anyone may pull when `anonymous_pull` is on. Clients
//! authenticate with `Basic` directly or with a bearer token from
//! `/auth/token` (see [`token`]), which a user can also ask for on
//! someone else's behalf: a delegated token pulls only the repositories
//! it names, until the time it was asked for (see [`AccessControl::issue`]).
//! Such a token also works as the password of Basic credentials, for
//! clients that only take a user and a password.
//!
//! Docker sends its Docker Hub credentials to mirrors, so credentials we
//! do not know are treated as anonymous for pulls, never for pushes.

pub mod htpasswd;
pub mod passwords;
pub mod realm;
pub mod token;

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::oci::RepositoryName;
use crate::registry::config::{Role, ServerConfig};
use crate::registry::errors::ErrorCode;
use passwords::PasswordCheck;
use realm::Realm;
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

    /// Whether only reading is asked for.
    fn reads(&self) -> bool {
        !matches!(self, Need::Repository(_, Action::Push | Action::Delete))
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
    /// A valid token we signed (as a bearer token, or as a Basic password).
    Token(Claims),
    /// A token we refuse.
    BadToken(TokenError),
}

/// Why a request is refused: what the challenge should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `UNAUTHORIZED` (401: other credentials may do) or `DENIED` (403: a
    /// known user whose role does not allow it).
    pub code: ErrorCode,
    /// The scope the client should ask a token for.
    pub scope: Option<String>,
    /// `invalid_token` or `insufficient_scope`, per RFC 6750.
    pub error: Option<&'static str>,
    /// Safe detail for the error body.
    pub detail: String,
}

/// What a client asks of the token endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `scope` parameters, one scope each.
    pub scopes: Vec<String>,
    /// `expires_in`, in seconds: asks for a delegated token (pull only,
    /// the named repositories only, valid that long).
    pub expires_in: Option<u64>,
}

/// A token and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// Seconds from now until it expires.
    pub expires_in: u64,
}

/// Why the token endpoint refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Credentials we do not accept (401).
    #[error("invalid username or password")]
    BadCredentials,
    /// A delegated token asked for without a user's credentials (401).
    #[error("a delegated token (expires_in) needs a registry user's credentials")]
    DelegationNeedsUser,
    /// `expires_in` is 0 or above the maximum (400).
    #[error("expires_in={asked} is not between 1 and max_token_lifetime ({max} s)")]
    LifetimeOutOfRange {
        /// What was asked for.
        asked: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A delegated token that would grant nothing (400).
    #[error("a delegated token needs at least one scope=repository:NAME:pull")]
    NothingToDelegate,
}

/// Decides who may do what; holds the users' roles, their password
/// check, the token secret and where the token realm is.
pub struct AccessControl {
    roles: HashMap<String, Role>,
    passwords: PasswordCheck,
    secret: Vec<u8>,
    anonymous_pull: bool,
    realm: Realm,
    max_token_lifetime: u64,
}

impl AccessControl {
    /// From the server's configuration.
    pub fn new(config: &ServerConfig) -> AccessControl {
        AccessControl {
            roles: config
                .users
                .iter()
                .map(|u| (u.username.clone(), u.role))
                .collect(),
            passwords: PasswordCheck::new(
                config
                    .users
                    .iter()
                    .map(|u| (u.username.as_str(), u.password_bcrypt.as_str())),
            ),
            secret: config.token_secret.as_bytes().to_vec(),
            anonymous_pull: config.anonymous_pull,
            realm: Realm::new(config.public_url.as_ref(), &config.listen),
            max_token_lifetime: config.max_token_lifetime_secs,
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
                // A token of ours as the password (checked first: an HMAC
                // is cheap); an expired one has a valid signature, so it
                // is ours too. Anything else is a password.
                match token::verify(&self.secret, &password) {
                    Ok(claims) => return Identity::Token(claims),
                    Err(TokenError::Expired) => return Identity::BadToken(TokenError::Expired),
                    Err(_) => {}
                }
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
        self.passwords.check(user, password).await
    }

    /// Whether `identity` may do what `need` names.
    pub fn authorize(&self, identity: &Identity, need: &Need) -> Result<(), Refusal> {
        let refuse = |code: ErrorCode, error: Option<&'static str>, detail: &str| Refusal {
            code,
            scope: need.scope(),
            error,
            detail: detail.to_string(),
        };
        let unauthorized = |error, detail: &str| refuse(ErrorCode::Unauthorized, error, detail);
        // `/v2/` stays closed, so that clients learn where tokens are.
        let open_pull = self.anonymous_pull
            && matches!(need, Need::Catalog | Need::Repository(_, Action::Pull));
        match identity {
            Identity::User(user) => {
                if self.role_allows(Some(user), need) {
                    Ok(())
                } else {
                    Err(refuse(
                        ErrorCode::Denied,
                        None,
                        &format!("user {user:?} may only pull"),
                    ))
                }
            }
            Identity::Anonymous | Identity::UnknownCredentials if open_pull => Ok(()),
            Identity::Anonymous => Err(unauthorized(None, "authentication required")),
            Identity::UnknownCredentials => Err(unauthorized(None, "invalid username or password")),
            Identity::BadToken(e) => Err(unauthorized(Some("invalid_token"), &e.to_string())),
            Identity::Token(claims) => {
                if let Some(user) = &claims.sub {
                    if !self.roles.contains_key(user) {
                        return Err(unauthorized(
                            Some("invalid_token"),
                            "the token's user is no longer a registry user",
                        ));
                    }
                }
                let granted = match need {
                    Need::Base => true,
                    Need::Catalog => grants(claims, "registry", "catalog", "*"),
                    Need::Repository(name, action) => {
                        grants(claims, "repository", name.as_str(), action.as_str())
                    }
                };
                // What the token says, and still what its holder may do
                // (a role may have changed since it was issued).
                if granted && self.role_allows(claims.sub.as_deref(), need) {
                    Ok(())
                } else {
                    Err(unauthorized(
                        Some("insufficient_scope"),
                        "the token does not grant this access",
                    ))
                }
            }
        }
    }

    /// Whether `user` (`None`: anonymous) may do what `need` names by role.
    fn role_allows(&self, user: Option<&str>, need: &Need) -> bool {
        match user.map(|u| self.roles.get(u)) {
            None => self.anonymous_pull && need.reads(),
            Some(None) => false,
            Some(Some(Role::ReadWrite)) => true,
            Some(Some(Role::ReadOnly)) => need.reads(),
        }
    }

    /// Issue a token for the scopes a client asked for, granting what
    /// `identity` may have. `None` when the credentials must be refused.
    /// (The token endpoint uses [`AccessControl::issue`].)
    pub fn grant(&self, identity: &Identity, scopes: &[String]) -> Option<String> {
        let request = TokenRequest {
            scopes: scopes.to_vec(),
            expires_in: None,
        };
        self.issue(identity, &request).ok().map(|t| t.token)
    }

    /// Issue a token for what `request` asks, granting of it what
    /// `identity` may have: all of it for a read-write user, pulls for a
    /// read-only user or an anonymous client (when pulls are open), and
    /// no more than a token already grants when a token asks (a token
    /// never widens itself, nor outlives itself).
    ///
    /// With `expires_in` the token is delegated: it keeps only pulls of
    /// the named repositories and lives that long, at most the configured
    /// maximum; asking for longer is refused, not shortened, so whoever
    /// hands the token on knows how long it works.
    pub fn issue(
        &self,
        identity: &Identity,
        request: &TokenRequest,
    ) -> Result<IssuedToken, TokenRefusal> {
        let now = token::now();
        let (sub, limit) = match identity {
            Identity::User(user) => (Some(user.clone()), None),
            Identity::Token(claims) => (claims.sub.clone(), Some(claims)),
            Identity::UnknownCredentials if request.scopes.is_empty() => {
                return Err(TokenRefusal::BadCredentials)
            }
            Identity::Anonymous | Identity::UnknownCredentials if self.anonymous_pull => {
                if request.expires_in.is_some() {
                    return Err(TokenRefusal::DelegationNeedsUser);
                }
                (None, None)
            }
            _ => return Err(TokenRefusal::BadCredentials),
        };
        let role = sub.as_deref().and_then(|u| self.roles.get(u).copied());
        if sub.is_some() && role.is_none() {
            return Err(TokenRefusal::BadCredentials);
        }
        let lifetime = match request.expires_in {
            None => token::TOKEN_LIFETIME_SECS.min(self.max_token_lifetime),
            Some(asked) if asked == 0 || asked > self.max_token_lifetime => {
                return Err(TokenRefusal::LifetimeOutOfRange {
                    asked,
                    max: self.max_token_lifetime,
                })
            }
            Some(asked) => asked,
        };
        let delegated = request.expires_in.is_some();
        let access: Vec<Access> = request
            .scopes
            .iter()
            .filter_map(|scope| parse_scope(scope))
            .filter(|access| !delegated || access.kind == "repository")
            .filter_map(|mut access| {
                let pull_only = delegated || role != Some(Role::ReadWrite);
                if pull_only {
                    let pulls = access.actions.iter().any(|a| a == "pull" || a == "*");
                    access.actions = if pulls { vec!["pull".into()] } else { vec![] };
                }
                if let Some(claims) = limit {
                    access
                        .actions
                        .retain(|a| grants(claims, &access.kind, &access.name, a));
                }
                (!access.actions.is_empty()).then_some(access)
            })
            .collect();
        if delegated && access.is_empty() {
            return Err(TokenRefusal::NothingToDelegate);
        }
        let exp = match limit {
            Some(claims) => claims.exp.min(now + lifetime),
            None => now + lifetime,
        };
        let claims = Claims { sub, access, exp };
        Ok(IssuedToken {
            token: token::issue(&self.secret, &claims),
            expires_in: exp.saturating_sub(now),
        })
    }

    /// The `WWW-Authenticate` challenge for a refused request that came
    /// over `scheme` with the `Host` header `host` (see [`realm`]).
    pub fn challenge(&self, scheme: &str, host: &str, refusal: &Refusal) -> String {
        let (realm, service) = self.realm.for_request(scheme, host);
        let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
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

/// The parsing entry point of a token request's `scope`:
/// `repository:<name>:<actions>` or `registry:catalog:*`, keeping only
/// the actions the registry knows; `None` for anything else.
pub fn parse_scope(scope: &str) -> Option<Access> {
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
    use crate::registry::config::{ServerConfig, User, DEFAULT_MAX_TOKEN_LIFETIME_SECS};

    fn authenticator(anonymous_pull: bool) -> AccessControl {
        let user = |name: &str, role| User {
            username: name.into(),
            password_bcrypt: bcrypt::hash("pw", 4).unwrap(),
            role,
        };
        AccessControl::new(&ServerConfig {
            listen: vec![],
            tls: None,
            storage: "/nonexistent".into(),
            users: vec![
                user("zuul", Role::ReadWrite),
                user("reader", Role::ReadOnly),
            ],
            public_url: None,
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            token_secret: "secret".into(),
            anonymous_pull,
            delete_enabled: true,
            prune: None,
            limits: Default::default(),
        })
    }

    fn repo(name: &str, action: Action) -> Need {
        Need::Repository(name.parse().unwrap(), action)
    }

    fn delegate(
        auth: &AccessControl,
        identity: &Identity,
        scopes: &[&str],
        expires_in: u64,
    ) -> Result<(Claims, u64), TokenRefusal> {
        let request = TokenRequest {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_in: Some(expires_in),
        };
        let issued = auth.issue(identity, &request)?;
        Ok((
            token::verify(b"secret", &issued.token).unwrap(),
            issued.expires_in,
        ))
    }

    fn granted(auth: &AccessControl, identity: &Identity, scope: &str) -> Vec<Access> {
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

    #[test]
    fn a_read_only_user_pulls_and_is_denied_the_rest() {
        let auth = authenticator(false);
        let reader = Identity::User("reader".into());
        for need in [Need::Base, Need::Catalog, repo("org/img", Action::Pull)] {
            assert_eq!(auth.authorize(&reader, &need), Ok(()), "{need:?}");
        }
        for action in [Action::Push, Action::Delete] {
            let refusal = auth
                .authorize(&reader, &repo("org/img", action))
                .unwrap_err();
            assert_eq!(refusal.code, ErrorCode::Denied);
            assert_eq!(refusal.detail, "user \"reader\" may only pull");
        }
        // Its tokens hold pulls only, whatever it asks.
        let access = granted(&auth, &reader, "repository:org/img:pull,push,delete");
        assert_eq!(access[0].actions, ["pull"]);
        let writer = Identity::User("zuul".into());
        assert_eq!(
            auth.authorize(&writer, &repo("org/img", Action::Delete)),
            Ok(())
        );
    }

    #[test]
    fn delegated_tokens_pull_the_named_repositories_until_they_expire() {
        let auth = authenticator(false);
        let writer = Identity::User("zuul".into());
        let scopes = [
            "repository:org/a:pull,push",
            "repository:org/b:*",
            "registry:catalog:*",
        ];
        let (claims, expires_in) = delegate(&auth, &writer, &scopes, 600).unwrap();
        assert_eq!(expires_in, 600);
        assert!(claims.exp <= token::now() + 600);
        let names: Vec<_> = claims.access.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["org/a", "org/b"]);
        assert!(claims.access.iter().all(|a| a.actions == ["pull"]));
        let holder = Identity::Token(claims.clone());
        assert_eq!(
            auth.authorize(&holder, &repo("org/a", Action::Pull)),
            Ok(())
        );
        for need in [
            repo("org/a", Action::Push),
            repo("org/a", Action::Delete),
            repo("org/c", Action::Pull),
            Need::Catalog,
        ] {
            let refusal = auth.authorize(&holder, &need).unwrap_err();
            assert_eq!(refusal.error, Some("insufficient_scope"), "{need:?}");
            assert_eq!(refusal.code, ErrorCode::Unauthorized);
        }
        // The holder trades it for tokens no wider and no longer-lived.
        let request = TokenRequest {
            scopes: vec![
                "repository:org/a:pull,push".into(),
                "repository:org/c:pull".into(),
            ],
            expires_in: None,
        };
        let traded = auth.issue(&holder, &request).unwrap();
        let traded_claims = token::verify(b"secret", &traded.token).unwrap();
        assert_eq!(traded_claims.access.len(), 1);
        assert_eq!(traded_claims.access[0].actions, ["pull"]);
        assert!(traded_claims.exp <= claims.exp);
    }

    #[test]
    fn delegation_is_refused_beyond_the_maximum_without_a_user_or_a_repository() {
        let auth = authenticator(true);
        let writer = Identity::User("zuul".into());
        let scope = ["repository:org/a:pull"];
        let max = DEFAULT_MAX_TOKEN_LIFETIME_SECS;
        assert_eq!(
            delegate(&auth, &writer, &scope, max + 1).unwrap_err(),
            TokenRefusal::LifetimeOutOfRange {
                asked: max + 1,
                max
            }
        );
        assert!(delegate(&auth, &writer, &scope, max).is_ok());
        assert_eq!(
            delegate(&auth, &writer, &scope, 0).unwrap_err(),
            TokenRefusal::LifetimeOutOfRange { asked: 0, max }
        );
        assert_eq!(
            delegate(&auth, &Identity::Anonymous, &scope, 60).unwrap_err(),
            TokenRefusal::DelegationNeedsUser
        );
        assert_eq!(
            delegate(&auth, &writer, &["registry:catalog:*"], 60).unwrap_err(),
            TokenRefusal::NothingToDelegate
        );
    }

    #[tokio::test]
    async fn a_token_as_the_basic_password_identifies_as_the_token() {
        let auth = authenticator(false);
        let (claims, _) = delegate(
            &auth,
            &Identity::User("zuul".into()),
            &["repository:org/a:pull"],
            60,
        )
        .unwrap();
        let token = token::issue(b"secret", &claims);
        let basic = format!("Basic {}", STANDARD.encode(format!("token:{token}")));
        assert!(matches!(
            auth.identify(Some(&basic)).await,
            Identity::Token(c) if c == claims
        ));
        let expired = token::issue(b"secret", &Claims { exp: 1, ..claims });
        let basic = format!("Basic {}", STANDARD.encode(format!("token:{expired}")));
        assert!(matches!(
            auth.identify(Some(&basic)).await,
            Identity::BadToken(TokenError::Expired)
        ));
    }
}
