//! Configuration from the environment (`VK_WS_*` variables).

use crate::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

/// The HS256 secret the local server uses when `VK_WS_JWT_SECRET` is not set.
///
/// Only for local development: it is public, so anyone can mint tokens with it.
/// Lambda mode never falls back to it.
pub const DEV_SECRET: &str = "venturekit-ws-dev-secret-do-not-use-in-production";

/// Default number of management API posts in flight during a fan-out
/// (`VK_WS_FANOUT_CONCURRENCY`).
pub const DEFAULT_FANOUT_CONCURRENCY: usize = 32;

/// How tokens are verified.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret (`VK_WS_JWT_SECRET`).
    Secret(Vec<u8>),
    /// A PEM public key (`VK_WS_JWT_PUBLIC_KEY`): RSA, EC (P-256/P-384) or Ed25519.
    PublicKeyPem(String),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        match self {
            JwtKey::Secret(_) => f.write_str("Secret(<redacted>)"),
            JwtKey::PublicKeyPem(_) => f.write_str("PublicKeyPem(..)"),
        }
    }
}

/// Everything the runtime reads from the environment.
///
/// Start from [`Config::default`] or [`Config::from_env`] and set fields: new settings are
/// added without breaking you (the struct is `#[non_exhaustive]`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `VK_WS_TABLE`: the DynamoDB table (required on Lambda).
    pub table: Option<String>,
    /// The token verification key; `None` when neither a secret nor a public key is set.
    pub jwt_key: Option<JwtKey>,
    /// `VK_WS_JWKS_URL`.
    pub jwks_url: Option<String>,
    /// `VK_WS_JWT_ISSUER`: required `iss` when set.
    pub issuer: Option<String>,
    /// `VK_WS_JWT_AUDIENCE`: required `aud` when set.
    pub audience: Option<String>,
    /// `VK_WS_JWT_TOKEN_USE`: required `token_use` claim (Cognito: `id` or `access`).
    pub token_use: Option<String>,
    /// `VK_WS_JWKS_MIN_REFRESH_SEC`: least time between two JWKS fetches, default 10.
    pub jwks_min_refresh: Duration,
    /// `VK_WS_TENANT_CLAIM`: the claim listing the tenants a token may join.
    pub tenant_claim: String,
    /// `VK_WS_TOPICS_TABLE`: the DynamoDB table of topic memberships (Lambda).
    pub topics_table: Option<String>,
    /// `VK_WS_MAX_TOPICS`: most topics per connection, default 50.
    pub max_topics: usize,
    /// `VK_WS_ROLES_CLAIM`: the claim listing the caller's roles (a string or an array of
    /// strings), default `roles` (Cognito: `cognito:groups`).
    pub roles_claim: String,
    /// `VK_WS_KEEP_CLAIMS`: further claims (comma-separated) kept on the record at `auth`.
    pub keep_claims: Vec<String>,
    /// `VK_WS_AUTH_TIMEOUT_SEC`: how long a connection may stay unauthenticated.
    pub auth_timeout: Duration,
    /// `VK_WS_SESSION_TTL_SEC`: lifetime of an authenticated record.
    pub session_ttl: Duration,
    /// `VK_WS_LISTEN`: the local server's address.
    pub listen: SocketAddr,
    /// `VK_WS_MANAGEMENT_ENDPOINT`: management API endpoint override.
    pub management_endpoint: Option<String>,
    /// `VK_WS_FANOUT_CONCURRENCY`: posts in flight per fan-out, default 32.
    pub fanout_concurrency: usize,
    /// `VK_WS_DELIVERY_TIMEOUT_MS`: limit for one management API call, default 3000.
    pub delivery_timeout: Duration,
    /// `VK_WS_SCAN_SEGMENTS`: parallel scan segments for broadcast and the sweeper, default 1.
    pub scan_segments: u32,
    /// `VK_WS_FANOUT_QUEUE_URL`: the SQS queue that large fan-outs spill to (Lambda). Unset:
    /// every fan-out stays in the invocation that started it.
    pub fanout_queue_url: Option<String>,
    /// `VK_WS_SPILL_THRESHOLD`: a broadcast or topic publish to more connections than this is
    /// split into segments on the fan-out queue, default 2000.
    pub spill_threshold: usize,
    /// `VK_WS_FANOUT_RATE`: management API posts per second that all fan-out workers share,
    /// default 5000 (half of API Gateway's default account rate of 10,000/s).
    pub fanout_rate: u32,
    /// `VK_WS_FANOUT_WORKERS`: how many worker invocations may run at once (the queue's event
    /// source `MaximumConcurrency`), default 10; each paces itself to
    /// `fanout_rate / fanout_workers` posts per second.
    pub fanout_workers: u32,
    /// `VK_WS_ROUTE_RESPONSE=1` (Lambda): the API's message routes have a route response,
    /// so the reply to a message travels back in the function's response instead of a
    /// management API `POST` (one call less per message). Off by default: without a route
    /// response, API Gateway drops a response body. The generated template sets both.
    pub route_response: bool,
    /// `VK_WS_RATE_LIMIT_PER_SEC`: sustained inbound messages per connection (0 = no limit), default 20.
    pub rate_limit_per_sec: u32,
    /// `VK_WS_RATE_LIMIT_BURST`: messages allowed per window of `burst / rate` seconds, default 40.
    pub rate_limit_burst: u32,
    /// `VK_WS_MAX_AUTH_FAILURES`: failed `auth` attempts before the connection is closed, default 5.
    pub max_auth_failures: u32,
    /// `VK_WS_MAX_TOKEN_BYTES`: longest accepted token, default 8192.
    pub max_token_bytes: usize,
    /// `VK_WS_ALLOW_DEV_SECRET=1`: let the local server listen beyond loopback with the public
    /// dev secret (refused by default).
    pub allow_dev_secret: bool,
    /// `VK_WS_ENV`: the environment of `venturekit.toml` to use (`dev` locally by default).
    pub env: Option<String>,
    /// Stage-wide throttling of the local server (rate, burst), from `venturekit.toml`.
    pub stage_throttle: Option<(u32, u32)>,
    /// `VK_WS_IDLE_TIMEOUT_SEC` (local server): idle timeout. Unset: the environment's
    /// `websocket.idleTimeoutSec` from `venturekit.toml`, else 600 (API Gateway's).
    pub idle_timeout: Option<Duration>,
    /// `VK_WS_MAX_CONNECTION_SEC` (local server): maximum connection duration, default 7200.
    pub max_connection: Duration,
    /// `VK_WS_LOCAL_API_TOKEN` (local server): bearer token that lets peers beyond loopback
    /// use the management API and `/_vk/*`. Unset: those are served to loopback peers only.
    pub local_api_token: Option<String>,
    /// `VK_WS_LOCAL_ORDERED=1` (local server): dispatch one connection's messages one after
    /// another, for debugging. Off by default: like API Gateway, messages run concurrently.
    pub local_ordered: bool,
    /// `VK_WS_PANIC_PROBE=1`: registers the built-in `vk:panic-probe` action, which panics,
    /// to check a build's panic strategy. Never in production.
    pub panic_probe: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            table: None,
            jwt_key: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            tenant_claim: "tenantId".to_owned(),
            topics_table: None,
            max_topics: crate::topics::DEFAULT_MAX_TOPICS,
            roles_claim: "roles".to_owned(),
            keep_claims: Vec::new(),
            token_use: None,
            jwks_min_refresh: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(30),
            session_ttl: Duration::from_secs(7200),
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            management_endpoint: None,
            fanout_concurrency: DEFAULT_FANOUT_CONCURRENCY,
            delivery_timeout: Duration::from_secs(3),
            scan_segments: 1,
            fanout_queue_url: None,
            spill_threshold: crate::fanout::DEFAULT_SPILL_THRESHOLD,
            fanout_rate: crate::fanout::DEFAULT_FANOUT_RATE,
            fanout_workers: crate::fanout::DEFAULT_FANOUT_WORKERS,
            route_response: false,
            rate_limit_per_sec: 20,
            rate_limit_burst: 40,
            max_auth_failures: 5,
            max_token_bytes: 8192,
            allow_dev_secret: false,
            env: None,
            stage_throttle: None,
            idle_timeout: None,
            max_connection: Duration::from_secs(7200),
            local_api_token: None,
            local_ordered: false,
            panic_probe: false,
        }
    }
}

impl Config {
    /// Reads the `VK_WS_*` variables. Invalid values are errors naming the variable.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup` (handy in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Config {
            table: var("VK_WS_TABLE"),
            ..Config::default()
        };
        let secret = var("VK_WS_JWT_SECRET");
        let public_key = var("VK_WS_JWT_PUBLIC_KEY");
        config.jwks_url = var("VK_WS_JWKS_URL");
        let configured = [
            secret.is_some(),
            public_key.is_some(),
            config.jwks_url.is_some(),
        ];
        if configured.iter().filter(|set| **set).count() > 1 {
            return Err(Error::Config(
                "set only one of VK_WS_JWT_SECRET, VK_WS_JWT_PUBLIC_KEY and VK_WS_JWKS_URL".into(),
            ));
        }
        config.jwt_key = match (secret, public_key) {
            (Some(secret), _) => Some(JwtKey::Secret(secret.into_bytes())),
            (None, Some(pem)) => Some(JwtKey::PublicKeyPem(read_pem(&pem)?)),
            (None, None) => None,
        };
        config.issuer = var("VK_WS_JWT_ISSUER");
        if let Some(v) = var("VK_WS_JWT_TOKEN_USE") {
            match v.trim() {
                "id" | "access" => config.token_use = Some(v.trim().to_owned()),
                other => {
                    return Err(Error::Config(format!(
                        "VK_WS_JWT_TOKEN_USE must be `id` or `access`, got `{other}`"
                    )));
                }
            }
        }
        if let Some(v) = var("VK_WS_JWKS_MIN_REFRESH_SEC") {
            config.jwks_min_refresh = seconds("VK_WS_JWKS_MIN_REFRESH_SEC", &v, 1, 3600)?;
        }
        if let Some(url) = &config.jwks_url {
            check_jwks_url(url)?;
        }
        config.audience = var("VK_WS_JWT_AUDIENCE");
        if let Some(claim) = var("VK_WS_TENANT_CLAIM") {
            config.tenant_claim = claim;
        }
        config.topics_table = var("VK_WS_TOPICS_TABLE");
        if let Some(v) = var("VK_WS_MAX_TOPICS") {
            config.max_topics = number("VK_WS_MAX_TOPICS", &v, 1, 1000)? as usize;
        }
        if let Some(claim) = var("VK_WS_ROLES_CLAIM") {
            config.roles_claim = claim.trim().to_owned();
        }
        if let Some(list) = var("VK_WS_KEEP_CLAIMS") {
            config.keep_claims = list
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = var("VK_WS_AUTH_TIMEOUT_SEC") {
            config.auth_timeout = seconds("VK_WS_AUTH_TIMEOUT_SEC", &v, 1, 7200)?;
        }
        if let Some(v) = var("VK_WS_SESSION_TTL_SEC") {
            config.session_ttl = seconds("VK_WS_SESSION_TTL_SEC", &v, 1, 7 * 24 * 3600)?;
        }
        if let Some(v) = var("VK_WS_IDLE_TIMEOUT_SEC") {
            config.idle_timeout = Some(seconds("VK_WS_IDLE_TIMEOUT_SEC", &v, 1, 7200)?);
        }
        if let Some(v) = var("VK_WS_MAX_CONNECTION_SEC") {
            config.max_connection = seconds("VK_WS_MAX_CONNECTION_SEC", &v, 1, 7200)?;
        }
        if let Some(v) = var("VK_WS_LISTEN") {
            config.listen =
                parse_listen(&v).map_err(|e| Error::Config(format!("VK_WS_LISTEN: {e}")))?;
        }
        config.management_endpoint = var("VK_WS_MANAGEMENT_ENDPOINT");
        config.env = var("VK_WS_ENV");
        if let Some(v) = var("VK_WS_FANOUT_CONCURRENCY") {
            config.fanout_concurrency = number("VK_WS_FANOUT_CONCURRENCY", &v, 1, 1000)? as usize;
        }
        config.fanout_queue_url = var("VK_WS_FANOUT_QUEUE_URL");
        if let Some(v) = var("VK_WS_SPILL_THRESHOLD") {
            config.spill_threshold = number("VK_WS_SPILL_THRESHOLD", &v, 1, 1_000_000)? as usize;
        }
        if let Some(v) = var("VK_WS_FANOUT_RATE") {
            config.fanout_rate = number("VK_WS_FANOUT_RATE", &v, 1, 1_000_000)? as u32;
        }
        if let Some(v) = var("VK_WS_FANOUT_WORKERS") {
            config.fanout_workers = number("VK_WS_FANOUT_WORKERS", &v, 1, 1000)? as u32;
        }
        if let Some(v) = var("VK_WS_DELIVERY_TIMEOUT_MS") {
            config.delivery_timeout =
                Duration::from_millis(number("VK_WS_DELIVERY_TIMEOUT_MS", &v, 10, 60_000)?);
        }
        if let Some(v) = var("VK_WS_RATE_LIMIT_PER_SEC") {
            config.rate_limit_per_sec = number("VK_WS_RATE_LIMIT_PER_SEC", &v, 0, 100_000)? as u32;
        }
        if let Some(v) = var("VK_WS_RATE_LIMIT_BURST") {
            config.rate_limit_burst = number("VK_WS_RATE_LIMIT_BURST", &v, 1, 1_000_000)? as u32;
        }
        if config.rate_limit_per_sec > 0 && config.rate_limit_burst < config.rate_limit_per_sec {
            return Err(Error::Config(format!(
                "VK_WS_RATE_LIMIT_BURST ({}) must be at least VK_WS_RATE_LIMIT_PER_SEC ({})",
                config.rate_limit_burst, config.rate_limit_per_sec
            )));
        }
        if let Some(v) = var("VK_WS_MAX_AUTH_FAILURES") {
            config.max_auth_failures = number("VK_WS_MAX_AUTH_FAILURES", &v, 1, 1000)? as u32;
        }
        if let Some(v) = var("VK_WS_MAX_TOKEN_BYTES") {
            config.max_token_bytes = number("VK_WS_MAX_TOKEN_BYTES", &v, 256, 65_536)? as usize;
        }
        if let Some(v) = var("VK_WS_ALLOW_DEV_SECRET") {
            config.allow_dev_secret = matches!(v.trim(), "1" | "true" | "yes");
        }
        config.local_api_token = var("VK_WS_LOCAL_API_TOKEN").map(|t| t.trim().to_owned());
        if let Some(v) = var("VK_WS_LOCAL_ORDERED") {
            config.local_ordered = matches!(v.trim(), "1" | "true" | "yes");
        }
        if let Some(v) = var("VK_WS_ROUTE_RESPONSE") {
            config.route_response = matches!(v.trim(), "1" | "true" | "yes");
        }
        if let Some(v) = var("VK_WS_PANIC_PROBE") {
            config.panic_probe = matches!(v.trim(), "1" | "true" | "yes");
        }
        if let Some(v) = var("VK_WS_SCAN_SEGMENTS") {
            config.scan_segments = number("VK_WS_SCAN_SEGMENTS", &v, 1, 64)? as u32;
        }
        Ok(config)
    }
}

impl Config {
    /// The claims kept on a connection record at `auth`: the roles claim, `scope`, `scp`,
    /// then `VK_WS_KEEP_CLAIMS`, without repeats.
    pub fn kept_claim_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let all = [self.roles_claim.as_str(), "scope", "scp"]
            .into_iter()
            .chain(self.keep_claims.iter().map(String::as_str));
        for name in all {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        names
    }
}

/// A listen address: `127.0.0.1:3001`, `[::1]:3001`, or a host name that resolves, like
/// `localhost:3001` (its first address).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let hint =
        || format!("expected an address like 127.0.0.1:3001 or localhost:3001, got `{text}`");
    if !text.contains(':') {
        return Err(hint());
    }
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(hint)
}

/// JWKS must come over HTTPS; plain HTTP only to loopback (tests, local stand-ins).
fn check_jwks_url(url: &str) -> Result<(), Error> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    if url.starts_with("https://") || loopback.iter().any(|p| url.starts_with(p)) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "VK_WS_JWKS_URL must be an https:// URL (plain http is allowed only on loopback), got `{url}`"
        )))
    }
}

fn number(name: &str, value: &str, min: u64, max: u64) -> Result<u64, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::Config(format!(
            "{name} must be a whole number from {min} to {max}, got `{value}`"
        ))),
    }
}

fn seconds(name: &str, value: &str, min: u64, max: u64) -> Result<Duration, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(Error::Config(format!(
            "{name} must be a whole number of seconds from {min} to {max}, got `{value}`"
        ))),
    }
}

/// `VK_WS_JWT_PUBLIC_KEY` holds either the PEM text itself (newlines may be written `\n`)
/// or the path of a PEM file.
fn read_pem(value: &str) -> Result<String, Error> {
    let trimmed = value.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.replace("\\n", "\n"));
    }
    std::fs::read_to_string(trimmed).map_err(|e| {
        Error::Config(format!(
            "VK_WS_JWT_PUBLIC_KEY is neither PEM text nor a readable file (`{trimmed}`: {e})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.auth_timeout, Duration::from_secs(30));
        assert_eq!(c.session_ttl, Duration::from_secs(7200));
        assert_eq!(c.listen.to_string(), "127.0.0.1:3001");
        assert_eq!(c.tenant_claim, "tenantId");
        assert!(c.jwt_key.is_none());
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = cfg(&[("VK_WS_AUTH_TIMEOUT_SEC", "soon")]).unwrap_err();
        assert!(err.to_string().contains("VK_WS_AUTH_TIMEOUT_SEC"), "{err}");
        let err = cfg(&[("VK_WS_LISTEN", "nowhere")]).unwrap_err();
        assert!(err.to_string().contains("VK_WS_LISTEN"), "{err}");
    }

    #[test]
    fn two_key_sources_are_refused() {
        let err = cfg(&[
            ("VK_WS_JWT_SECRET", "s"),
            ("VK_WS_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("only one"), "{err}");
    }

    #[test]
    fn secret_is_never_printed() {
        let c = cfg(&[("VK_WS_JWT_SECRET", "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
