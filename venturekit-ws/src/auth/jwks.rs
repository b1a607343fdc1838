//! Verification with keys from a JWKS endpoint (Cognito, Auth0, any OIDC provider).
//!
//! - Keys are fetched over HTTPS on first use (not at cold start), cached, and selected by
//!   the token's `kid`.
//! - An unknown `kid` triggers a refresh (key rotation), but at most one fetch per
//!   `VK_WS_JWKS_MIN_REFRESH_SEC`, and one at a time, so a flood of bogus `kid`s cannot
//!   hammer the provider. A set older than an hour is refreshed on next use.
//! - The accepted algorithm comes from the key (its `alg`, or its type and curve), never
//!   from the token alone; symmetric (`oct`) keys in a JWKS are ignored.

use super::{AuthFailure, ClaimRules, VerifiedToken, base_validation, decode_token, token_failure};
use crate::config::Config;
use crate::error::Error;
use crate::protocol::ErrorCode;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

const MAX_AGE: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 256 * 1024;

struct Key {
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Key>,
    fetched_at: Option<Instant>,
}

/// A verifier backed by a JWKS URL.
pub struct JwksVerifier {
    url: String,
    http: reqwest::Client,
    config: Config,
    rules: ClaimRules,
    min_refresh: Duration,
    set: RwLock<KeySet>,
    /// When the last fetch started; held while fetching (single flight).
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("url", &self.url)
            .field("min_refresh", &self.min_refresh)
            .finish_non_exhaustive()
    }
}

fn invalid(message: &str) -> AuthFailure {
    AuthFailure::new(ErrorCode::InvalidToken, message)
}

/// The algorithms a JWK may verify: its `alg` if it names one, else its type and curve.
fn algorithms_for(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Vec<Algorithm>> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        // Shared secrets have no place in a public key set.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        Some(named) => {
            let named = Algorithm::try_from(named).ok()?;
            family.contains(&named).then(|| vec![named])
        }
        None => Some(family),
    }
}

impl JwksVerifier {
    /// A verifier for `url` with the issuer, audience, tenant claim and `token_use` of `config`.
    pub fn new(url: &str, config: &Config) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the JWKS HTTP client: {e}")))?;
        Ok(JwksVerifier {
            url: url.to_owned(),
            http,
            config: config.clone(),
            rules: ClaimRules::from_config(config),
            min_refresh: config.jwks_min_refresh,
            set: RwLock::new(KeySet::default()),
            last_fetch: Mutex::new(None),
        })
    }

    /// Verifies a token against the key its `kid` names.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthFailure> {
        self.verify_at(token, crate::clock::now_secs()).await
    }

    /// [`JwksVerifier::verify`], with `exp` and `nbf` checked at `now_secs` (epoch seconds).
    pub async fn verify_at(
        &self,
        token: &str,
        now_secs: i64,
    ) -> Result<VerifiedToken, AuthFailure> {
        super::check_critical_header(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| token_failure(e.kind()))?;
        let kid = header.kid.unwrap_or_default();
        self.ensure_key(&kid).await?;
        let set = self.set.read().await;
        let key = match set.keys.get(&kid) {
            Some(key) => key,
            // No `kid` in the token: acceptable only when the set holds exactly one key.
            None if kid.is_empty() && set.keys.len() == 1 => set
                .keys
                .values()
                .next()
                .ok_or_else(|| invalid("unknown signing key"))?,
            None if kid.is_empty() => return Err(invalid("token has no `kid`")),
            None => return Err(invalid("token `kid` names no known signing key")),
        };
        decode_token(token, &key.decoding, &key.validation, &self.rules, now_secs)
    }

    /// Makes sure the set is loaded, fresh, and (if possible) knows `kid`.
    async fn ensure_key(&self, kid: &str) -> Result<(), AuthFailure> {
        {
            let set = self.set.read().await;
            let fresh = set.fetched_at.is_some_and(|t| t.elapsed() < MAX_AGE);
            let known = set.keys.contains_key(kid) || (kid.is_empty() && set.keys.len() == 1);
            if fresh && known {
                return Ok(());
            }
        }
        let mut last = self.last_fetch.lock().await;
        if let Some(at) = *last
            && at.elapsed() < self.min_refresh
        {
            // Refreshed recently (or another request just did): use what we have.
            return if self.set.read().await.fetched_at.is_some() {
                Ok(())
            } else {
                Err(AuthFailure::new(
                    ErrorCode::Internal,
                    "signing keys are unavailable; try again later",
                ))
            };
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let mut set = self.set.write().await;
                set.keys = keys;
                set.fetched_at = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                tracing::error!(url = %self.url, error = %e, "fetching the JWKS failed");
                if self.set.read().await.fetched_at.is_some() {
                    Ok(())
                } else {
                    Err(AuthFailure::new(
                        ErrorCode::Internal,
                        "signing keys are unavailable; try again later",
                    ))
                }
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, String> {
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("JWKS of {} bytes is too large", body.len()));
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let Some(algorithms) = algorithms_for(jwk) else {
                continue;
            };
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            keys.insert(
                kid,
                Key {
                    decoding,
                    validation: base_validation(&self.config, algorithms),
                },
            );
        }
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
        Ok(keys)
    }
}
