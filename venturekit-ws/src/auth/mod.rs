//! Token verification and the tenant rule.
//!
//! The algorithm is pinned to the configured key type: an HS256 secret accepts only HS256,
//! an RSA key only RS*/PS*, an EC key only ES*, an Ed25519 key only EdDSA. `alg: none`
//! is never accepted, and a token cannot pick HS256 to turn a public key into an HMAC secret.

use crate::claims::{Claims, MAX_KEPT_CLAIMS_BYTES};
use crate::config::{Config, JwtKey};
use crate::error::Error;
use crate::protocol::ErrorCode;
mod jwks;

pub use jwks::JwksVerifier;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Who a connection belongs to once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user_id: String,
    /// The tenant the connection joined, if any.
    pub tenant_id: Option<String>,
    /// The token's `email` claim, if present.
    pub email: Option<String>,
    /// The claims kept on the record: roles, scopes, and those named in `VK_WS_KEEP_CLAIMS`.
    pub claims: Claims,
}

/// The claims of a verified token that the framework uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`.
    pub sub: String,
    /// `email`, when present and a string.
    pub email: Option<String>,
    /// The tenant claim: `None` when the token has no such claim.
    pub tenants: Option<Vec<String>>,
    /// The claims to keep on the connection record.
    pub claims: Claims,
}

/// Why an `auth` message was refused. Messages are safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// The wire code (`invalid_token`, `token_expired`, `forbidden_tenant`, …).
    pub code: ErrorCode,
    /// A human-readable reason, free of secrets and internals.
    pub message: String,
}

impl AuthFailure {
    /// A failure with a client-safe message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AuthFailure {
            code,
            message: message.into(),
        }
    }
}

/// How claims are read once the signature checks out.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    tenant_claim: String,
    /// Required `token_use` (Cognito: `id` or `access`).
    token_use: Option<String>,
    /// For Cognito access tokens, which carry `client_id` instead of `aud`.
    client_id: Option<String>,
    /// Claims copied onto the record: the roles claim, `scope`, `scp`, `VK_WS_KEEP_CLAIMS`.
    kept: Vec<String>,
}

impl ClaimRules {
    pub(crate) fn from_config(config: &Config) -> Self {
        let access = config.token_use.as_deref() == Some("access");
        ClaimRules {
            tenant_claim: config.tenant_claim.clone(),
            token_use: config.token_use.clone(),
            client_id: if access {
                config.audience.clone()
            } else {
                None
            },
            kept: config.kept_claim_names(),
        }
    }
}

/// The validation shared by every key source: `exp`/`nbf` with [`LEEWAY_SECS`], required
/// `sub`, and the configured issuer/audience, which must be present, not merely correct
/// when present.
pub(crate) fn base_validation(config: &Config, algorithms: Vec<Algorithm>) -> Validation {
    let mut validation = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::RS256));
    validation.algorithms = algorithms;
    validation.leeway = LEEWAY_SECS;
    // `exp` and `nbf` are checked by `check_times` against the runtime's clock (the JWT
    // library would read the system time); their presence is still checked here.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = &config.issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    let access_token = config.token_use.as_deref() == Some("access");
    match &config.audience {
        // Cognito access tokens have no `aud`; `client_id` is checked by the claim rules.
        Some(aud) if !access_token => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        _ => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// Longest `sub` or tenant accepted, in bytes: both become DynamoDB index keys, whose
/// partition key values may not exceed 2048 bytes. A longer value is `invalid_token`.
pub const MAX_ID_BYTES: usize = 1024;

/// Refuses a token whose protected header lists critical extensions (`crit`, RFC 7515
/// section 4.1.11): this verifier understands none, so such a token must be rejected.
pub(crate) fn check_critical_header(token: &str) -> Result<(), AuthFailure> {
    use base64::Engine;
    let Some(header) = token.split('.').next() else {
        return Ok(());
    };
    // A header that does not decode is left to the JWT library, which reports it.
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return Ok(());
    };
    let Ok(fields) = serde_json::from_slice::<Map<String, Value>>(&bytes) else {
        return Ok(());
    };
    if fields.contains_key("crit") {
        return Err(AuthFailure::new(
            ErrorCode::InvalidToken,
            "token header lists critical extensions (`crit`) this server does not understand",
        ));
    }
    Ok(())
}

/// Verifies `token` with `key` at `now_secs` (epoch seconds) and reads the claims.
pub(crate) fn decode_token(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
    rules: &ClaimRules,
    now_secs: i64,
) -> Result<VerifiedToken, AuthFailure> {
    check_critical_header(token)?;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map_err(|e| token_failure(e.kind()))?;
    check_times(&data.claims, now_secs)?;
    extract(data.claims, rules)
}

/// `exp` (required) and `nbf` (when present) against `now_secs`, with [`LEEWAY_SECS`].
/// Numeric dates are non-negative numbers; fractions are rounded.
fn check_times(claims: &Map<String, Value>, now_secs: i64) -> Result<(), AuthFailure> {
    fn numeric_date(value: &Value) -> Option<i128> {
        match value.as_u64() {
            Some(n) => Some(i128::from(n)),
            None => value
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f.round() as i128),
        }
    }
    let now = i128::from(now_secs);
    let leeway = i128::from(LEEWAY_SECS);
    let wrong_types = || token_failure(&ErrorKind::InvalidClaimFormat("exp".into()));
    let exp = claims
        .get("exp")
        .ok_or_else(|| token_failure(&ErrorKind::MissingRequiredClaim("exp".into())))?;
    if numeric_date(exp).ok_or_else(wrong_types)? < now - leeway {
        return Err(token_failure(&ErrorKind::ExpiredSignature));
    }
    if let Some(nbf) = claims.get("nbf")
        && numeric_date(nbf).ok_or_else(wrong_types)? > now + leeway
    {
        return Err(token_failure(&ErrorKind::ImmatureSignature));
    }
    Ok(())
}

fn extract(claims: Map<String, Value>, rules: &ClaimRules) -> Result<VerifiedToken, AuthFailure> {
    let invalid = |message: &str| AuthFailure::new(ErrorCode::InvalidToken, message);
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(invalid("token `sub` must be a non-empty string")),
    };
    if sub.len() > MAX_ID_BYTES {
        return Err(invalid("token `sub` is longer than 1024 bytes"));
    }
    if let Some(expected) = &rules.token_use
        && claims.get("token_use").and_then(Value::as_str) != Some(expected.as_str())
    {
        return Err(invalid("token `token_use` is not accepted"));
    }
    if let Some(client_id) = &rules.client_id
        && claims.get("client_id").and_then(Value::as_str) != Some(client_id.as_str())
    {
        return Err(invalid("token `client_id` is not accepted"));
    }
    let email = match claims.get("email") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let tenants = match claims.get(&rules.tenant_claim) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => {
            let mut tenants = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => tenants.push(s.clone()),
                    _ => return Err(bad_tenant_claim(&rules.tenant_claim)),
                }
            }
            Some(tenants)
        }
        Some(_) => return Err(bad_tenant_claim(&rules.tenant_claim)),
    };
    if let Some(tenants) = &tenants
        && tenants
            .iter()
            .any(|t| t.is_empty() || t.len() > MAX_ID_BYTES)
    {
        return Err(AuthFailure::new(
            ErrorCode::InvalidToken,
            format!(
                "token claim `{}` lists an empty tenant or one longer than 1024 bytes",
                rules.tenant_claim
            ),
        ));
    }
    let mut kept = Map::new();
    for name in &rules.kept {
        if let Some(value) = claims.get(name) {
            kept.insert(name.clone(), value.clone());
        }
    }
    let kept = Claims::new(kept);
    if kept.json_len() > MAX_KEPT_CLAIMS_BYTES {
        return Err(invalid(
            "the token's kept claims (roles, scopes, VK_WS_KEEP_CLAIMS) exceed 2 KB in total",
        ));
    }
    Ok(VerifiedToken {
        sub,
        email,
        tenants,
        claims: kept,
    })
}

/// Verifies tokens with one configured key (HS256 secret or PEM public key).
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    rules: ClaimRules,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier for `key`, honouring the issuer, audience and tenant claim of `config`.
    pub fn new(key: &JwtKey, config: &Config) -> Result<Self, Error> {
        let (decoding, algorithms) = match key {
            JwtKey::Secret(secret) => (DecodingKey::from_secret(secret), vec![Algorithm::HS256]),
            JwtKey::PublicKeyPem(pem) => public_key(pem.as_bytes())?,
        };
        Ok(Verifier {
            key: decoding,
            validation: base_validation(config, algorithms),
            rules: ClaimRules::from_config(config),
        })
    }

    /// Verifies signature, algorithm, `exp`/`nbf`, `iss`/`aud`, and reads `sub`, `email`
    /// and the tenant claim.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthFailure> {
        self.verify_at(token, crate::clock::now_secs())
    }

    /// [`Verifier::verify`], with `exp` and `nbf` checked at `now_secs` (epoch seconds).
    pub fn verify_at(&self, token: &str, now_secs: i64) -> Result<VerifiedToken, AuthFailure> {
        decode_token(token, &self.key, &self.validation, &self.rules, now_secs)
    }
}

/// Any source of verification keys: one static key, or a JWKS endpoint.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per process; boxing buys nothing
pub enum TokenVerifier {
    /// `VK_WS_JWT_SECRET` or `VK_WS_JWT_PUBLIC_KEY`.
    Key(Verifier),
    /// `VK_WS_JWKS_URL`.
    Jwks(JwksVerifier),
}

impl TokenVerifier {
    /// Verifies a token (fetching signing keys first when a JWKS needs it).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthFailure> {
        self.verify_at(token, crate::clock::now_secs()).await
    }

    /// [`TokenVerifier::verify`], with `exp` and `nbf` checked at `now_secs` (epoch seconds).
    pub async fn verify_at(
        &self,
        token: &str,
        now_secs: i64,
    ) -> Result<VerifiedToken, AuthFailure> {
        match self {
            TokenVerifier::Key(v) => v.verify_at(token, now_secs),
            TokenVerifier::Jwks(v) => v.verify_at(token, now_secs).await,
        }
    }
}

fn bad_tenant_claim(name: &str) -> AuthFailure {
    AuthFailure::new(
        ErrorCode::InvalidToken,
        format!("token claim `{name}` must be a string or an array of strings"),
    )
}

fn public_key(pem: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), Error> {
    use Algorithm::*;
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, vec![ES256, ES384]));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, vec![EdDSA]));
    }
    Err(Error::Config(
        "VK_WS_JWT_PUBLIC_KEY is not an RSA, EC or Ed25519 public key in PEM form".into(),
    ))
}

pub(crate) fn token_failure(kind: &ErrorKind) -> AuthFailure {
    let message = match kind {
        ErrorKind::ExpiredSignature => {
            return AuthFailure::new(ErrorCode::TokenExpired, "token has expired");
        }
        ErrorKind::ImmatureSignature => "token is not valid yet (`nbf`)",
        ErrorKind::InvalidSignature => "token signature is invalid",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::InvalidAudience => "token audience is not accepted",
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => "token algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
            "token is missing the `exp` claim"
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => {
            "token is missing the `sub` claim"
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => {
            "token is missing the `iss` claim"
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
            "token is missing the `aud` claim"
        }
        ErrorKind::InvalidClaimFormat(_) => "token claims have the wrong types",
        _ => "token is malformed",
    };
    AuthFailure::new(ErrorCode::InvalidToken, message)
}

/// Applies the tenant rule.
///
/// - a requested tenant must be listed in the token's tenant claim;
/// - with no request and exactly one tenant in the claim, that tenant is joined;
/// - a token without the claim joins no tenant, unless `trust_client_tenant` is set
///   (insecure: the client then chooses its tenant freely).
pub fn resolve_tenant(
    token: &VerifiedToken,
    requested: Option<&str>,
    trust_client_tenant: bool,
) -> Result<Option<String>, AuthFailure> {
    match (&token.tenants, requested) {
        (Some(tenants), Some(wanted)) => {
            if tenants.iter().any(|t| t == wanted) {
                Ok(Some(wanted.to_owned()))
            } else {
                Err(AuthFailure::new(
                    ErrorCode::ForbiddenTenant,
                    "the token does not grant access to the requested tenant",
                ))
            }
        }
        (Some(tenants), None) if tenants.len() == 1 => Ok(Some(tenants[0].clone())),
        (Some(_), None) | (None, None) => Ok(None),
        (None, Some(wanted)) if trust_client_tenant => Ok(Some(wanted.to_owned())),
        (None, Some(_)) => Err(AuthFailure::new(
            ErrorCode::ForbiddenTenant,
            "the token carries no tenant claim, so it may not join a tenant",
        )),
    }
}

/// What a development token should say. See [`mint_dev_token`].
#[derive(Debug, Clone, Default)]
pub struct DevToken {
    /// `sub`: the user id.
    pub sub: String,
    /// Tenants to list in the tenant claim (one becomes a string, several an array).
    pub tenants: Vec<String>,
    /// `email`.
    pub email: Option<String>,
    /// Lifetime in seconds (default 3600 when 0).
    pub ttl_secs: u64,
    /// Roles, written to the roles claim (`VK_WS_ROLES_CLAIM`, default `roles`) as an array.
    pub roles: Vec<String>,
    /// Scopes, written space-separated to `scope`.
    pub scopes: Vec<String>,
    /// Further claims, verbatim (e.g. `{"plan": "pro"}` with `VK_WS_KEEP_CLAIMS=plan`).
    pub claims: Map<String, Value>,
}

/// Signs a development token with the HS256 secret of `config` (or [`crate::config::DEV_SECRET`]
/// when `secret` is the dev secret), adding `iss`/`aud` when they are configured.
pub fn mint_dev_token(secret: &[u8], spec: &DevToken, config: &Config) -> Result<String, Error> {
    mint_dev_token_at(secret, spec, config, crate::clock::now_secs())
}

/// [`mint_dev_token`], issued at `now_secs` (epoch seconds; `iat`, and `exp` from the TTL).
pub fn mint_dev_token_at(
    secret: &[u8],
    spec: &DevToken,
    config: &Config,
    now_secs: i64,
) -> Result<String, Error> {
    let now = u64::try_from(now_secs).unwrap_or(0);
    let ttl = if spec.ttl_secs == 0 {
        3600
    } else {
        spec.ttl_secs
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(spec.sub.clone()));
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl).into());
    if let Some(email) = &spec.email {
        claims.insert("email".into(), Value::String(email.clone()));
    }
    match spec.tenants.as_slice() {
        [] => {}
        [one] => {
            claims.insert(config.tenant_claim.clone(), Value::String(one.clone()));
        }
        many => {
            claims.insert(config.tenant_claim.clone(), many.to_vec().into());
        }
    }
    if !spec.roles.is_empty() {
        claims.insert(config.roles_claim.clone(), spec.roles.clone().into());
    }
    if !spec.scopes.is_empty() {
        claims.insert("scope".into(), Value::String(spec.scopes.join(" ")));
    }
    for (name, value) in &spec.claims {
        claims.insert(name.clone(), value.clone());
    }
    if let Some(iss) = &config.issuer {
        claims.insert("iss".into(), Value::String(iss.clone()));
    }
    if let Some(aud) = &config.audience {
        claims.insert("aud".into(), Value::String(aud.clone()));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| Error::Config(format!("could not sign the dev token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(tenants: Option<&[&str]>) -> VerifiedToken {
        VerifiedToken {
            sub: "alice".into(),
            email: None,
            tenants: tenants.map(|t| t.iter().map(|s| s.to_string()).collect()),
            claims: Claims::default(),
        }
    }

    #[test]
    fn tenant_rule() {
        let one = token(Some(&["acme"]));
        assert_eq!(
            resolve_tenant(&one, None, false).unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(
            resolve_tenant(&one, Some("acme"), false)
                .unwrap()
                .as_deref(),
            Some("acme")
        );
        let err = resolve_tenant(&one, Some("globex"), false).unwrap_err();
        assert_eq!(err.code, ErrorCode::ForbiddenTenant);

        let two = token(Some(&["acme", "globex"]));
        assert_eq!(resolve_tenant(&two, None, false).unwrap(), None);
        assert_eq!(
            resolve_tenant(&two, Some("globex"), false)
                .unwrap()
                .as_deref(),
            Some("globex")
        );

        let none = token(None);
        assert_eq!(resolve_tenant(&none, None, false).unwrap(), None);
        let err = resolve_tenant(&none, Some("acme"), false).unwrap_err();
        assert_eq!(err.code, ErrorCode::ForbiddenTenant);
        assert_eq!(
            resolve_tenant(&none, Some("acme"), true)
                .unwrap()
                .as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn dev_token_round_trips() {
        let config = Config::default();
        let secret = b"s3cret".to_vec();
        let verifier = Verifier::new(&JwtKey::Secret(secret.clone()), &config).unwrap();
        let spec = DevToken {
            sub: "alice".into(),
            tenants: vec!["acme".into()],
            email: Some("a@example.com".into()),
            ttl_secs: 60,
            roles: vec!["admin".into()],
            scopes: vec!["chat:read".into(), "chat:write".into()],
            claims: serde_json::json!({"plan": "pro"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let t = mint_dev_token(&secret, &spec, &config).unwrap();
        let v = verifier.verify(&t).unwrap();
        assert_eq!(v.sub, "alice");
        // Roles and scopes are kept; `plan` only when VK_WS_KEEP_CLAIMS names it.
        assert_eq!(v.claims.strings("roles"), ["admin"]);
        assert_eq!(v.claims.scopes(), ["chat:read", "chat:write"]);
        assert!(v.claims.get("plan").is_none());
        assert_eq!(v.email.as_deref(), Some("a@example.com"));
        assert_eq!(v.tenants, Some(vec!["acme".to_string()]));
    }
}
