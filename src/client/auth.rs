//! Authentication: the registry's challenge (learnt once, from `GET /v2/`),
//! then anonymous, Basic, or the Bearer token flow Docker Hub, quay.io and
//! zuul-registry use: ask the challenge's realm for a token for the scopes
//! a request needs (with Basic credentials when we have them), and cache
//! it per scope set until the registry refuses it.
//!
//! The realm is the registry's word, so it is checked before anything is
//! sent there: for an `https` registry a realm over plain `http` is
//! refused, and when we hold credentials a realm on another host (or
//! port) than the registry's is refused unless the endpoint allows that
//! host ([`Endpoint::allow_token_host`](super::Endpoint::allow_token_host);
//! `auth.docker.io` for Docker Hub). A token fetch for one scope set does
//! not hold up requests of another.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::error::{redact_url, Error, ErrorKind};
use super::limits::{read_limited, TOKEN_LIMIT};
use super::transport::Transport;

/// What a registry asks of its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Nothing: `GET /v2/` answered 200.
    Anonymous,
    /// HTTP Basic on every request.
    Basic,
    /// A token from `realm`, for `service`, per scope.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// The `service` parameter to send, if the registry named one.
        service: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value; Bearer is preferred when a
/// registry offers several schemes.
pub fn parse_challenge(header: &str) -> Result<Challenge, String> {
    let challenges = http_auth::parse_challenges(header)
        .map_err(|e| format!("unparsable WWW-Authenticate header {header:?}: {e}"))?;
    let param = |c: &http_auth::ChallengeRef<'_>, name: &str| {
        c.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_unescaped())
    };
    if let Some(c) = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    {
        let realm = param(c, "realm")
            .ok_or_else(|| format!("Bearer challenge without a realm: {header:?}"))?;
        return Ok(Challenge::Bearer {
            realm,
            service: param(c, "service"),
        });
    }
    if challenges
        .iter()
        .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
    {
        return Ok(Challenge::Basic);
    }
    Err(format!("no Basic or Bearer challenge in {header:?}"))
}

/// The token scope for `actions` (`pull`, `pull,push`, `delete`) on a
/// repository.
pub fn repository_scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

/// Per-registry authentication state.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// The challenge, once learnt.
    challenge: tokio::sync::Mutex<Option<Challenge>>,
    /// Bearer tokens by scope set (scopes joined by a space), each slot
    /// locked on its own while its token is fetched.
    tokens: std::sync::Mutex<HashMap<String, TokenSlot>>,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<String>>>;

impl AuthState {
    /// The token slot of a scope set, made empty if new.
    fn slot(&self, key: &str) -> TokenSlot {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.entry(key.to_string()).or_default().clone()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Transport {
    /// The `Authorization` header for a request needing `scopes`, if any.
    pub(crate) async fn authorization(
        &self,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, Error> {
        let challenge = self.challenge().await?;
        match challenge {
            Challenge::Anonymous => Ok(None),
            Challenge::Basic => Ok(self.basic_header()),
            Challenge::Bearer { realm, service } => {
                let slot = self.auth.slot(&scopes.join(" "));
                let mut cached = slot.lock().await;
                if let Some(token) = cached.as_ref() {
                    return Ok(Some(bearer_header(token)));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scopes).await?;
                let header = bearer_header(&token);
                *cached = Some(token);
                Ok(Some(header))
            }
        }
    }

    /// React to a 401 to a request sent with `sent` (its `Authorization`
    /// header, if any): forget a refused token, or learn the challenge the
    /// registry sent with it. Returns whether retrying the request can help.
    pub(crate) async fn unauthorized(
        &self,
        scopes: &[String],
        sent: Option<&HeaderValue>,
        response: &reqwest::Response,
    ) -> bool {
        let offered = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| parse_challenge(h).ok());
        let mut challenge = self.auth.challenge.lock().await;
        match (challenge.clone(), offered) {
            // A token expired or lacked a scope: forget it (unless a
            // concurrent request already replaced it) and fetch a fresh one.
            (Some(Challenge::Bearer { .. }), Some(new @ Challenge::Bearer { .. })) => {
                *challenge = Some(new);
                let slot = self.auth.slot(&scopes.join(" "));
                let mut cached = slot.lock().await;
                let refused = cached
                    .as_ref()
                    .is_some_and(|t| Some(&bearer_header(t)) == sent);
                if refused {
                    *cached = None;
                }
                sent.is_some()
            }
            // `/v2/` was open but this request is not: authenticate from now on.
            (Some(Challenge::Anonymous), Some(new)) => {
                *challenge = Some(new);
                true
            }
            // Basic credentials refused: asking again will not help.
            _ => false,
        }
    }

    /// The registry's challenge, learnt with one `GET /v2/`.
    async fn challenge(&self) -> Result<Challenge, Error> {
        let mut slot = self.auth.challenge.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let url = format!("{}/v2/", self.endpoint.base_url());
        let response = self
            .execute(&Method::GET, &url, || self.http.get(&url))
            .await?;
        let challenge = match response.status() {
            StatusCode::UNAUTHORIZED => {
                let header = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                parse_challenge(header).map_err(|why| {
                    Error::new(
                        ErrorKind::InvalidResponse(why),
                        &self.endpoint.registry,
                        format!("GET {url}"),
                    )
                })?
            }
            _ => Challenge::Anonymous,
        };
        *slot = Some(challenge.clone());
        Ok(challenge)
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let creds = self.endpoint.credentials.as_ref()?;
        let raw = format!("{}:{}", creds.username, creds.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, Error> {
        let mut url = self.check_realm(realm)?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let url = url.to_string();
        let response = self
            .execute(&Method::GET, &url, || {
                let request = self.http.get(&url);
                match self.basic_header() {
                    Some(h) => request.header(reqwest::header::AUTHORIZATION, h),
                    None => request,
                }
            })
            .await?;
        let action = format!(
            "getting a token for {} from {}",
            if scopes.is_empty() {
                "the registry".to_string()
            } else {
                scopes.join(" ")
            },
            super::error::redact_url(&url)
        );
        let response = self.expect(response, &action, &[StatusCode::OK]).await?;
        let body = read_limited(
            response,
            TOKEN_LIMIT,
            "a token answer",
            &self.endpoint.registry,
            &action,
        )
        .await?;
        let body: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse(format!("the token answer is not JSON: {e}")),
                &self.endpoint.registry,
                action.clone(),
            )
        })?;
        body.token.or(body.access_token).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse("the token answer holds no token".into()),
                &self.endpoint.registry,
                action,
            )
        })
    }

    /// The token realm as a URL, if the client may ask it for a token:
    /// not over plain HTTP for an `https` registry, and, when we hold
    /// credentials, on the registry's own host and port or an allowed one.
    fn check_realm(&self, realm: &str) -> Result<url::Url, Error> {
        let registry = &self.endpoint.registry;
        let action = "authenticating";
        let url = url::Url::parse(realm).map_err(|e| {
            Error::new(
                ErrorKind::Url(format!("the token realm {:?}: {e}", redact_url(realm))),
                registry,
                action,
            )
        })?;
        let shown = redact_url(realm);
        let user = self.endpoint.credentials.as_ref().map(|c| &c.username);
        let whose = match user {
            Some(user) => format!("the credentials of user {user:?}"),
            None => "a token request".to_string(),
        };
        if url.scheme() != "https" && !self.endpoint.insecure {
            return Err(Error::new(
                ErrorKind::Refused(format!(
                    "registry {registry} names the token realm {shown}, over plain {}; \
                     {whose} would travel unencrypted, so none is sent",
                    url.scheme()
                )),
                registry,
                action,
            ));
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or_default();
        if user.is_some() && !self.endpoint.is_token_host(host, port) {
            return Err(Error::new(
                ErrorKind::Refused(format!(
                    "registry {registry} names the token realm {shown}, on another host \
                     than its own; {whose} are not sent there unless that host is allowed \
                     as this registry's token host"
                )),
                registry,
                action,
            ));
        }
        Ok(url)
    }
}

fn bearer_header(token: &str) -> HeaderValue {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_challenges_registries_send() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            )
            .unwrap(),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm="https://r/t""#).unwrap(),
            Challenge::Bearer {
                realm: "https://r/t".into(),
                service: None
            }
        );
        assert!(parse_challenge("Negotiate").is_err());
    }
}
