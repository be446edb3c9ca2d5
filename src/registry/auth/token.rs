//! Bearer tokens: the claims (who, which repositories, which actions,
//! until when) as base64url JSON, followed by an HMAC-SHA256 over that
//! text with the registry's `token_secret`. Clients treat tokens as
//! opaque; only the registry that signed one accepts it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long an issued token is valid.
pub const TOKEN_LIFETIME_SECS: u64 = 3600;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user it was issued to; `None` for anonymous clients.
    pub sub: Option<String>,
    /// Granted access, per resource.
    pub access: Vec<Access>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Actions granted on one resource (`repository` name, or `registry`
/// `catalog`), as in the token spec's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of our format.
    #[error("token is malformed")]
    Malformed,
    /// Signed with another secret, or altered.
    #[error("token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("token has expired")]
    Expired,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

/// Sign `claims` with `secret`.
pub fn issue(secret: &[u8], claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, &payload).finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// Check a token's signature and expiry; return its claims.
pub fn verify(secret: &[u8], token: &str) -> Result<Claims, TokenError> {
    let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, payload)
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims = decode_claims(&json)?;
    if claims.exp <= now() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The parsing entry point of a token's claims: its payload's JSON, read
/// once [`verify`] has checked the signature over it (so only a holder
/// of the secret chooses these bytes; the fuzz targets call it directly).
pub fn decode_claims(json: &[u8]) -> Result<Claims, TokenError> {
    serde_json::from_slice(json).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: Some("zuul".into()),
            access: vec![Access {
                kind: "repository".into(),
                name: "org/img".into(),
                actions: vec!["pull".into()],
            }],
            exp,
        }
    }

    #[test]
    fn round_trips_and_refuses_foreign_or_expired_tokens() {
        let token = issue(b"one", &claims(now() + 60));
        let verified = verify(b"one", &token).expect("our own token verifies");
        assert_eq!(verified.sub.as_deref(), Some("zuul"));
        assert_eq!(verified.access[0].name, "org/img");
        assert_eq!(verify(b"two", &token), Err(TokenError::BadSignature));
        assert_eq!(verify(b"one", "garbage"), Err(TokenError::Malformed));
        let old = issue(b"one", &claims(now() - 1));
        assert_eq!(verify(b"one", &old), Err(TokenError::Expired));
    }
}
