//! Deployment: per-environment settings (`venturekit.toml`) and, with the cargo feature
//! `deploy`, the generated AWS SAM template (JSON, which SAM and CloudFormation read as they
//! read YAML). The settings are read at run time (route selection, idle timeout, throttling);
//! the template writer is only needed on a developer's machine, so Lambda builds leave it out.
//!
//! ```toml
//! [app]
//! name = "chat"                 # resource name prefix (default: the binary name)
//!
//! [env.dev]
//! preset = "dev"                # minimal | dev | production: Lambda size, timeout, log retention
//!
//! [env.dev.websocket]
//! enabled = true
//! routeSelectionExpression = "$request.body.action"
//! idleTimeoutSec = 600          # 1..=7200
//! throttleRateLimit = 100       # requests per second, 1..=10000
//! throttleBurstLimit = 200      # >= throttleRateLimit, <= 10000
//!
//! [env.prod]
//! preset = "production"
//! lambda = { memoryMb = 1024, architecture = "arm64" }   # optional overrides
//! ```
//!
//! Unknown keys, unknown presets and out-of-range values are errors that name the file, the
//! key and the allowed values.

#[cfg(feature = "deploy")]
mod template;

/// A DynamoDB table the app itself owns (beside the connections table): the generated
/// template creates it (on demand, string keys, optional TTL), passes its name to the
/// function in `env_var`, and grants the function exactly `actions` on it.
///
/// ```
/// use venturekit_ws::deploy::AppTable;
/// let history = AppTable::new("HistoryTable", "CHAT_HISTORY_TABLE", "scope")
///     .sort_key("at")
///     .ttl("ttl")
///     .allow(&["dynamodb:PutItem", "dynamodb:Query"]);
/// # let _ = history;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppTable {
    /// The CloudFormation logical id (e.g. `HistoryTable`).
    pub logical_id: String,
    /// The environment variable that carries the table name to the function.
    pub env_var: String,
    /// The partition key attribute (type S).
    pub partition_key: String,
    /// The sort key attribute (type S), if any.
    pub sort_key: Option<String>,
    /// The TTL attribute, if any.
    pub ttl_attribute: Option<String>,
    /// The DynamoDB actions the function may perform on it.
    pub actions: Vec<String>,
}

impl AppTable {
    /// A table with a string partition key, no sort key, no TTL, and no access yet.
    pub fn new(logical_id: &str, env_var: &str, partition_key: &str) -> Self {
        AppTable {
            logical_id: logical_id.to_owned(),
            env_var: env_var.to_owned(),
            partition_key: partition_key.to_owned(),
            sort_key: None,
            ttl_attribute: None,
            actions: Vec::new(),
        }
    }

    /// A string sort key.
    pub fn sort_key(mut self, attribute: &str) -> Self {
        self.sort_key = Some(attribute.to_owned());
        self
    }

    /// TTL on `attribute` (epoch seconds).
    pub fn ttl(mut self, attribute: &str) -> Self {
        self.ttl_attribute = Some(attribute.to_owned());
        self
    }

    /// Grants the function these DynamoDB actions on the table (least privilege: list
    /// only what the app calls).
    pub fn allow(mut self, actions: &[&str]) -> Self {
        self.actions = actions.iter().map(|a| (*a).to_owned()).collect();
        self
    }
}

#[cfg(feature = "deploy")]
pub use template::{template_value, to_text};

use serde::Deserialize;
use std::collections::BTreeMap;

/// A deployment configuration error, naming the file and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DeployError {
    /// The configuration file.
    pub file: String,
    /// What is wrong, with the key.
    pub message: String,
}

/// Lambda sizing presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 128 MB, 10 s, logs kept 3 days.
    Minimal,
    /// 256 MB, 10 s, logs kept 7 days.
    Dev,
    /// 512 MB, 15 s, logs kept 30 days.
    Production,
}

impl Preset {
    fn memory_mb(self) -> u32 {
        match self {
            Preset::Minimal => 128,
            Preset::Dev => 256,
            Preset::Production => 512,
        }
    }
    fn timeout_sec(self) -> u32 {
        match self {
            Preset::Minimal | Preset::Dev => 10,
            Preset::Production => 15,
        }
    }
    fn log_retention_days(self) -> u32 {
        match self {
            Preset::Minimal => 3,
            Preset::Dev => 7,
            Preset::Production => 30,
        }
    }
}

/// The file as written (everything optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    app: RawApp,
    #[serde(default)]
    env: BTreeMap<String, RawEnv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEnv {
    preset: Option<String>,
    #[serde(default)]
    websocket: RawWebSocket,
    #[serde(default)]
    lambda: RawLambda,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    sweeper: RawSweeper,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWebSocket {
    enabled: Option<bool>,
    route_selection_expression: Option<String>,
    idle_timeout_sec: Option<i64>,
    throttle_rate_limit: Option<i64>,
    throttle_burst_limit: Option<i64>,
    validate_requests: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLambda {
    memory_mb: Option<i64>,
    timeout_sec: Option<i64>,
    architecture: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLogs {
    retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweeper {
    schedule: Option<String>,
}

/// WebSocket API settings of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// Whether the WebSocket API is deployed / served.
    pub enabled: bool,
    /// `$request.body.<field>`.
    pub route_selection_expression: String,
    /// Idle timeout in seconds (API Gateway enforces 600 whatever this says).
    pub idle_timeout_sec: u32,
    /// Stage throttling: steady requests per second.
    pub throttle_rate_limit: u32,
    /// Stage throttling: burst.
    pub throttle_burst_limit: u32,
    /// API Gateway validates each action's message against its JSON Schema before the
    /// function runs (`validateRequests`, off by default; needs the `contract` feature).
    pub validate_requests: bool,
}

impl WebSocketSettings {
    /// The message field that selects the route (`action` for `$request.body.action`).
    pub fn selection_field(&self) -> &str {
        self.route_selection_expression
            .strip_prefix("$request.body.")
            .unwrap_or("action")
    }
}

/// Lambda settings of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaSettings {
    /// Memory in MB.
    pub memory_mb: u32,
    /// Timeout in seconds.
    pub timeout_sec: u32,
    /// `arm64` or `x86_64`.
    pub architecture: String,
}

/// One validated environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvConfig {
    /// The environment's name (also the API stage name).
    pub name: String,
    /// The preset it started from.
    pub preset: Preset,
    /// WebSocket API settings.
    pub websocket: WebSocketSettings,
    /// Lambda settings.
    pub lambda: LambdaSettings,
    /// CloudWatch log retention.
    pub log_retention_days: u32,
    /// EventBridge schedule of the sweeper.
    pub sweeper_schedule: String,
}

/// A validated `venturekit.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployConfig {
    /// The file it came from (for messages).
    pub file: String,
    /// `[app] name`.
    pub app_name: Option<String>,
    /// Environments by name.
    pub envs: BTreeMap<String, EnvConfig>,
}

const RETENTIONS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl DeployConfig {
    /// Parses and validates `text`, read from `file`.
    pub fn parse(file: &str, text: &str) -> Result<Self, DeployError> {
        let err = |message: String| DeployError {
            file: file.to_owned(),
            message,
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))?;
        if let Some(name) = &raw.app.name
            && (name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(err(format!(
                "app.name = {name:?} must be letters, digits and `-` (it prefixes AWS resource names)"
            )));
        }
        let mut envs = BTreeMap::new();
        for (name, env) in raw.env {
            let config = validate_env(&name, env).map_err(err)?;
            envs.insert(name, config);
        }
        Ok(DeployConfig {
            file: file.to_owned(),
            app_name: raw.app.name,
            envs,
        })
    }

    /// An environment by name, or an error listing the ones defined.
    pub fn env(&self, name: &str) -> Result<&EnvConfig, DeployError> {
        self.envs.get(name).ok_or_else(|| DeployError {
            file: self.file.clone(),
            message: format!(
                "no environment `{name}`; defined: {}",
                if self.envs.is_empty() {
                    "none".to_owned()
                } else {
                    self.envs
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        })
    }
}

fn range(key: &str, value: Option<i64>, default: u32, min: u32, max: u32) -> Result<u32, String> {
    match value {
        None => Ok(default),
        Some(v) if v >= i64::from(min) && v <= i64::from(max) => Ok(v as u32),
        Some(v) => Err(format!(
            "{key} = {v} is out of range: allowed {min}..={max}"
        )),
    }
}

fn validate_env(name: &str, raw: RawEnv) -> Result<EnvConfig, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        || name.len() > 128
    {
        return Err(format!(
            "env.{name}: environment names become API stage names: use letters, digits, `-` and `_`"
        ));
    }
    let key = |k: &str| format!("env.{name}.{k}");
    let preset = match raw.preset.as_deref() {
        None => Preset::Dev,
        Some("minimal") => Preset::Minimal,
        Some("dev") => Preset::Dev,
        Some("production") => Preset::Production,
        Some(other) => {
            return Err(format!(
                "{} = {other:?} is not a preset: allowed \"minimal\", \"dev\", \"production\"",
                key("preset")
            ));
        }
    };
    let ws = raw.websocket;
    let expression = ws
        .route_selection_expression
        .unwrap_or_else(|| "$request.body.action".to_owned());
    let field = expression.strip_prefix("$request.body.").unwrap_or("");
    if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{} = {expression:?} must have the form \"$request.body.<field>\" (e.g. \"$request.body.action\")",
            key("websocket.routeSelectionExpression")
        ));
    }
    let rate = range(
        &key("websocket.throttleRateLimit"),
        ws.throttle_rate_limit,
        500,
        1,
        10_000,
    )?;
    let burst = range(
        &key("websocket.throttleBurstLimit"),
        ws.throttle_burst_limit,
        rate.max(1000),
        1,
        10_000,
    )?;
    if burst < rate {
        return Err(format!(
            "{} = {burst} is below {} = {rate}: the burst must be at least the rate",
            key("websocket.throttleBurstLimit"),
            key("websocket.throttleRateLimit")
        ));
    }
    let websocket = WebSocketSettings {
        enabled: ws.enabled.unwrap_or(true),
        route_selection_expression: expression,
        idle_timeout_sec: range(
            &key("websocket.idleTimeoutSec"),
            ws.idle_timeout_sec,
            600,
            1,
            7200,
        )?,
        throttle_rate_limit: rate,
        throttle_burst_limit: burst,
        validate_requests: ws.validate_requests.unwrap_or(false),
    };
    let architecture = match raw.lambda.architecture.as_deref() {
        None | Some("arm64") => "arm64".to_owned(),
        Some("x86_64") => "x86_64".to_owned(),
        Some(other) => {
            return Err(format!(
                "{} = {other:?}: allowed \"arm64\", \"x86_64\"",
                key("lambda.architecture")
            ));
        }
    };
    let lambda = LambdaSettings {
        memory_mb: range(
            &key("lambda.memoryMb"),
            raw.lambda.memory_mb,
            preset.memory_mb(),
            128,
            10_240,
        )?,
        // API Gateway integrations time out at 29 s.
        timeout_sec: range(
            &key("lambda.timeoutSec"),
            raw.lambda.timeout_sec,
            preset.timeout_sec(),
            1,
            29,
        )?,
        architecture,
    };
    let log_retention_days = match raw.logs.retention_days {
        None => preset.log_retention_days(),
        Some(v) if v > 0 && RETENTIONS.contains(&(v as u32)) => v as u32,
        Some(v) => {
            return Err(format!(
                "{} = {v} is not a CloudWatch retention: allowed {}",
                key("logs.retentionDays"),
                RETENTIONS
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let sweeper_schedule = raw
        .sweeper
        .schedule
        .unwrap_or_else(|| "rate(1 minute)".to_owned());
    if !(sweeper_schedule.starts_with("rate(") || sweeper_schedule.starts_with("cron("))
        || !sweeper_schedule.ends_with(')')
    {
        return Err(format!(
            "{} = {sweeper_schedule:?} must be an EventBridge expression like \"rate(1 minute)\"",
            key("sweeper.schedule")
        ));
    }
    Ok(EnvConfig {
        name: name.to_owned(),
        preset,
        websocket,
        lambda,
        log_retention_days,
        sweeper_schedule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeployConfig, DeployError> {
        DeployConfig::parse("venturekit.toml", text)
    }

    #[test]
    fn defaults_and_presets() {
        let c = parse("[env.dev]\n[env.prod]\npreset = \"production\"\n").unwrap();
        let dev = c.env("dev").unwrap();
        assert_eq!(dev.preset, Preset::Dev);
        assert_eq!(
            dev.websocket.route_selection_expression,
            "$request.body.action"
        );
        assert_eq!(dev.websocket.idle_timeout_sec, 600);
        assert_eq!(dev.lambda.memory_mb, 256);
        assert_eq!(dev.lambda.architecture, "arm64");
        let prod = c.env("prod").unwrap();
        assert_eq!(prod.lambda.memory_mb, 512);
        assert_eq!(prod.log_retention_days, 30);
        assert!(
            c.env("staging")
                .unwrap_err()
                .to_string()
                .contains("`dev`, `prod`")
        );
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_values_name_file_key_and_range() {
        let e = error("[env.prod.websocket]\nidleTimeoutSec = 9000\n");
        assert!(e.starts_with("venturekit.toml: env.prod.websocket.idleTimeoutSec = 9000 is out of range: allowed 1..=7200"), "{e}");
        let e = error("[env.prod.websocket]\nthrottleRateLimit = 100\nthrottleBurstLimit = 50\n");
        assert!(
            e.contains("env.prod.websocket.throttleBurstLimit = 50 is below"),
            "{e}"
        );
        let e = error("[env.prod]\npreset = \"huge\"\n");
        assert!(e.contains("env.prod.preset = \"huge\" is not a preset: allowed \"minimal\", \"dev\", \"production\""), "{e}");
        let e = error("[env.prod.websocket]\nidleTimeout = 5\n");
        assert!(
            e.starts_with("venturekit.toml:") && e.contains("unknown field `idleTimeout`"),
            "{e}"
        );
        let e = error("[env.prod.websocket]\nrouteSelectionExpression = \"$request.header.x\"\n");
        assert!(e.contains("$request.body.<field>"), "{e}");
        let e = error("[env.prod.lambda]\narchitecture = \"sparc\"\n");
        assert!(e.contains("env.prod.lambda.architecture"), "{e}");
        let e = error("[env.prod.logs]\nretentionDays = 8\n");
        assert!(e.contains("env.prod.logs.retentionDays = 8"), "{e}");
        let e = error("[env.prod.websocket]\nidleTimeoutSec = \"long\"\n");
        assert!(e.starts_with("venturekit.toml:"), "{e}");
    }
}
