//! Authentication, the layer over the [`Transport`]: an [`Authenticator`]
//! sends each request through the transport with the `Authorization` it
//! needs. It learns the registry's challenge once (from `GET /v2/`), then
//! sends nothing, Basic credentials, or a token from the Bearer flow
//! Docker Hub, quay.io and zuul-registry use: ask the challenge's realm
//! for a token for the scopes a request needs (with Basic credentials
//! when we have them), and cache it per scope set until the registry
//! refuses it. Credentials go only to the registry's own origin (the
//! transport says which URLs are on it).
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
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use super::endpoint::Endpoint;
use super::error::{redact_url, Error, ErrorKind};
use super::limits::{read_limited, TOKEN_LIMIT};
use super::transport::{Body, Channel, Transport};

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

/// One registry's transport with authentication: what the operations of
/// `blob.rs`, `manifest.rs`, `tag.rs` send their requests through.
#[derive(Debug)]
pub(crate) struct Authenticator {
    /// Sends the requests.
    transport: Transport,
    /// The challenge, once learnt.
    challenge: tokio::sync::Mutex<Option<Challenge>>,
    /// Bearer tokens by scope set (scopes joined by a space), each slot
    /// locked on its own while its token is fetched.
    tokens: std::sync::Mutex<HashMap<String, TokenSlot>>,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<String>>>;

/// A token a registry issued for someone else to pull with.
#[derive(Clone, PartialEq, Eq)]
pub struct DelegatedToken {
    /// The token (a secret: never shown).
    pub token: String,
    /// Seconds it is valid, as the registry said (`None`: it did not say).
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for DelegatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelegatedToken")
            .field("token", &"********")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A token service's answer (Docker's `token`, OAuth2's `access_token`).
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Authenticator {
    /// Authentication over `transport`; nothing is learnt yet.
    pub(crate) fn new(transport: Transport) -> Authenticator {
        Authenticator {
            transport,
            challenge: tokio::sync::Mutex::default(),
            tokens: std::sync::Mutex::default(),
        }
    }

    /// The transport underneath (URLs, status checks, the endpoint).
    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Send a repeatable request needing `scopes` over the metadata pool,
    /// authenticated when it goes to the registry's own origin, retrying
    /// transient failures and re-authenticating once on 401. Any status
    /// is returned; [`Transport::check_status`] checks it.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        scopes: &[String],
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, Error> {
        self.send_via(Channel::Metadata, method, url, scopes, headers, body)
            .await
    }

    /// [`Authenticator::send`] through the pool `channel`.
    pub(crate) async fn send_via(
        &self,
        channel: Channel,
        method: Method,
        url: &str,
        scopes: &[String],
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, Error> {
        let own = self.transport.own_origin(&method, url)?;
        let mut reauthenticated = false;
        loop {
            let authorization = match own {
                true => self.authorization(scopes).await?,
                false => None,
            };
            let response = self
                .transport
                .send(
                    channel,
                    &method,
                    url,
                    &headers,
                    &body,
                    authorization.as_ref(),
                )
                .await?;
            // Another origin's challenge is not the registry's.
            if response.status() == StatusCode::UNAUTHORIZED
                && own
                && !reauthenticated
                && self
                    .unauthorized(scopes, authorization.as_ref(), &response)
                    .await
            {
                reauthenticated = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// Send a request whose body is a stream, once, authenticated when it
    /// goes to the registry's own origin (see [`Transport::send_once`]).
    pub(crate) async fn send_once(
        &self,
        method: Method,
        url: &str,
        scopes: &[String],
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let authorization = match self.transport.own_origin(&method, url)? {
            true => self.authorization(scopes).await?,
            false => None,
        };
        self.transport
            .send_once(&method, url, authorization, build)
            .await
    }

    /// The token slot of a scope set, made empty if new.
    fn slot(&self, key: &str) -> TokenSlot {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.entry(key.to_string()).or_default().clone()
    }

    /// The `Authorization` header for a request needing `scopes`, if any.
    async fn authorization(&self, scopes: &[String]) -> Result<Option<HeaderValue>, Error> {
        let challenge = self.challenge().await?;
        match challenge {
            Challenge::Anonymous => Ok(None),
            Challenge::Basic => Ok(self.basic_header()),
            Challenge::Bearer { realm, service } => {
                let slot = self.slot(&scopes.join(" "));
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
    async fn unauthorized(
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
        let mut challenge = self.challenge.lock().await;
        match (challenge.clone(), offered) {
            // A token expired or lacked a scope: forget it (unless a
            // concurrent request already replaced it) and fetch a fresh one.
            (Some(Challenge::Bearer { .. }), Some(new @ Challenge::Bearer { .. })) => {
                *challenge = Some(new);
                let slot = self.slot(&scopes.join(" "));
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
        let mut slot = self.challenge.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let url = format!("{}/v2/", self.endpoint().base_url());
        let response = self.get(&url, None).await?;
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
                        &self.endpoint().registry,
                        format!("GET {url}"),
                    )
                })?
            }
            _ => Challenge::Anonymous,
        };
        *slot = Some(challenge.clone());
        Ok(challenge)
    }

    /// A plain GET of the auth flow's own (`/v2/`, the token realm), sent
    /// with `authorization` as given.
    async fn get(&self, url: &str, authorization: Option<&HeaderValue>) -> Result<Response, Error> {
        let (method, headers) = (Method::GET, HeaderMap::new());
        self.transport
            .send(
                Channel::Metadata,
                &method,
                url,
                &headers,
                &Body::Empty,
                authorization,
            )
            .await
    }

    fn endpoint(&self) -> &Endpoint {
        self.transport.endpoint()
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let creds = self.endpoint().credentials.as_ref()?;
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
        let response = self.get(&url, self.basic_header().as_ref()).await?;
        let action = format!(
            "getting a token for {} from {}",
            if scopes.is_empty() {
                "the registry".to_string()
            } else {
                scopes.join(" ")
            },
            super::error::redact_url(&url)
        );
        let (token, _) = self.read_token(response, &action).await?;
        Ok(token)
    }

    /// A token service's 200 answer: the token and the lifetime it states.
    async fn read_token(
        &self,
        response: reqwest::Response,
        action: &str,
    ) -> Result<(String, Option<u64>), Error> {
        let response = self
            .transport
            .check_status(response, action, &[StatusCode::OK])
            .await?;
        let body = read_limited(
            response,
            TOKEN_LIMIT,
            "a token answer",
            &self.endpoint().registry,
            action,
        )
        .await?;
        let invalid = |why: String| {
            Error::new(
                ErrorKind::InvalidResponse(why),
                &self.endpoint().registry,
                action,
            )
        };
        let body: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("the token answer is not JSON: {e}")))?;
        let token = body
            .token
            .or(body.access_token)
            .ok_or_else(|| invalid("the token answer holds no token".into()))?;
        Ok((token, body.expires_in))
    }

    /// A pull-only token for `repositories`, valid `expires_in` seconds,
    /// asked of the registry's token realm with our credentials (a
    /// delegated token, as our site registry issues them: see
    /// docs/intermediate-registry.md). `None` when the registry does not
    /// answer with a Bearer challenge (it issues no tokens).
    pub(crate) async fn delegated_token(
        &self,
        repositories: &[String],
        expires_in: u64,
    ) -> Result<Option<DelegatedToken>, Error> {
        let Challenge::Bearer { realm, service } = self.challenge().await? else {
            return Ok(None);
        };
        let mut url = self.check_realm(&realm)?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &service {
                query.append_pair("service", service);
            }
            for repository in repositories {
                query.append_pair("scope", &repository_scope(repository, "pull"));
            }
            query.append_pair("expires_in", &expires_in.to_string());
        }
        let url = url.to_string();
        let action = format!(
            "asking for a pull-only token valid {expires_in} s from {}",
            redact_url(&url)
        );
        let response = self.get(&url, self.basic_header().as_ref()).await?;
        if response.status() == StatusCode::BAD_REQUEST {
            // OAuth2's refusal (RFC 6749 5.2) says why: the lifetime, say.
            let body = super::limits::read_prefix(response, super::limits::ERROR_BODY_LIMIT).await;
            let why = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error_description"].as_str().map(str::to_string))
                .unwrap_or_else(|| "400 Bad Request".to_string());
            return Err(Error::new(
                ErrorKind::Refused(format!("the token service refused: {why}")),
                &self.endpoint().registry,
                action,
            ));
        }
        let (token, expires_in) = self.read_token(response, &action).await?;
        Ok(Some(DelegatedToken { token, expires_in }))
    }

    /// The token realm as a URL, if the client may ask it for a token:
    /// not over plain HTTP for an `https` registry, and, when we hold
    /// credentials, on the registry's own host and port or an allowed one.
    fn check_realm(&self, realm: &str) -> Result<url::Url, Error> {
        let registry = &self.endpoint().registry;
        let action = "authenticating";
        let url = url::Url::parse(realm).map_err(|e| {
            Error::new(
                ErrorKind::Url(format!("the token realm {:?}: {e}", redact_url(realm))),
                registry,
                action,
            )
        })?;
        let shown = redact_url(realm);
        let user = self.endpoint().credentials.as_ref().map(|c| &c.username);
        let whose = match user {
            Some(user) => format!("the credentials of user {user:?}"),
            None => "a token request".to_string(),
        };
        if url.scheme() != "https" && !self.endpoint().insecure {
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
        if user.is_some() && !self.endpoint().is_token_host(host, port) {
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
