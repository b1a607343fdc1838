//! [`App`]: registration, configuration and the command line (`serve`, `token`).

use crate::action::ActionDef;
use crate::auth::{DevToken, JwksVerifier, TokenVerifier, Verifier, mint_dev_token};
use crate::config::{Config, DEV_SECRET, JwtKey};
use crate::deploy::{DeployConfig, EnvConfig};
use crate::dispatch::{Dispatcher, DispatcherParts};
use crate::error::Error;
use crate::local::LocalServer;
use crate::store::{ConnectionStore, MemoryStore};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::sync::Arc;

/// A WebSocket application: actions plus configuration.
///
/// ```no_run
/// # use venturekit_ws::{App, actions, ws_action, Ctx, WsError};
/// #[ws_action("hello")]
/// async fn hello(ctx: Ctx) -> Result<String, WsError> {
///     Ok(format!("hello, {}", ctx.user_id().unwrap_or("stranger")))
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), venturekit_ws::Error> {
///     App::from_env()?.actions(actions![hello]).run().await
/// }
/// ```
pub struct App {
    config: Config,
    actions: Vec<ActionDef>,
    trust_client_tenant: bool,
    store: Option<Arc<dyn ConnectionStore>>,
    deploy: Option<DeployConfig>,
    name: Option<String>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("actions", &self.actions)
            .field("trust_client_tenant", &self.trust_client_tenant)
            .finish_non_exhaustive()
    }
}

/// Where the dispatcher will run; decides the JWT key fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The local server: without a configured key, the public dev secret is used (with a warning).
    Local,
    /// AWS Lambda: a key must be configured.
    Lambda,
}

#[derive(Parser)]
#[command(
    about = "A venturekit-ws WebSocket application",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local API Gateway emulator (the default).
    Serve {
        /// Address to listen on (default: VK_WS_LISTEN or 127.0.0.1:3001).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Environment of venturekit.toml whose settings to apply (default: VK_WS_ENV or dev).
        #[arg(long)]
        env: Option<String>,
    },
    /// Print (or write) the AWS SAM template of an environment of venturekit.toml.
    Template {
        /// The environment (becomes the API stage name).
        #[arg(long)]
        env: String,
        /// Write to this file instead of stdout; CodeUri is then relative to it.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Override the CodeUri (the `cargo lambda build` output directory).
        #[arg(long)]
        code_uri: Option<String>,
    },
    /// Print a development JWT signed with the configured HS256 secret.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// A tenant the token may join (repeat for several).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// The `email` claim.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

impl App {
    /// An app configured from the `VK_WS_*` environment variables.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(Config::from_env()?))
    }

    /// An app with an explicit configuration.
    pub fn new(config: Config) -> Self {
        App {
            config,
            actions: Vec::new(),
            trust_client_tenant: false,
            store: None,
            deploy: None,
            name: None,
        }
    }

    /// The cargo package/binary name, used in hints and generated templates (default: the
    /// running executable's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Registers the per-environment settings of `venturekit.toml` (usually embedded with
    /// `include_str!`, so Lambda and the local server use the same file). Invalid settings
    /// are an error naming the file, key and allowed range.
    ///
    /// The environment comes from `--env`, else `VK_WS_ENV`, else `dev` when defined.
    pub fn deploy_config(mut self, file: &str, text: &str) -> Result<Self, Error> {
        self.deploy =
            Some(DeployConfig::parse(file, text).map_err(|e| Error::Config(e.to_string()))?);
        Ok(self)
    }

    /// The selected environment's settings, if a `venturekit.toml` is registered.
    pub fn environment(&self) -> Result<Option<&EnvConfig>, Error> {
        let config_error = |e: crate::deploy::DeployError| Error::Config(e.to_string());
        match (&self.deploy, &self.config.env) {
            (Some(deploy), Some(name)) => deploy.env(name).map(Some).map_err(config_error),
            (Some(deploy), None) => Ok(deploy.envs.get("dev")),
            (None, Some(name)) => Err(Error::Config(format!(
                "VK_WS_ENV={name}, but the app registers no venturekit.toml (App::deploy_config)"
            ))),
            (None, None) => Ok(None),
        }
    }

    /// Registers actions (usually `actions![a, b, c]`). Duplicates are reported when the
    /// app starts.
    pub fn actions(mut self, defs: impl IntoIterator<Item = ActionDef>) -> Self {
        self.actions.extend(defs);
        self
    }

    /// Registers one action.
    pub fn action(mut self, def: ActionDef) -> Self {
        self.actions.push(def);
        self
    }

    /// **Insecure.** Lets a token without a tenant claim join whatever tenant the client
    /// asks for. Only for apps where tenants are not a security boundary.
    pub fn trust_client_tenant(mut self, trust: bool) -> Self {
        self.trust_client_tenant = trust;
        self
    }

    /// Uses `store` instead of the default for the mode.
    pub fn store(mut self, store: Arc<dyn ConnectionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Mutable configuration (e.g. to shorten timeouts in tests).
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    fn token_verifier(&self, mode: Mode) -> Result<TokenVerifier, Error> {
        if let Some(url) = &self.config.jwks_url {
            return Ok(TokenVerifier::Jwks(JwksVerifier::new(url, &self.config)?));
        }
        let key = self.jwt_key(mode)?;
        Ok(TokenVerifier::Key(Verifier::new(&key, &self.config)?))
    }

    fn jwt_key(&self, mode: Mode) -> Result<JwtKey, Error> {
        match (&self.config.jwt_key, mode) {
            (Some(key), _) => Ok(key.clone()),
            (None, Mode::Local) => {
                tracing::warn!(
                    "VK_WS_JWT_SECRET is not set: using the public development secret. Never deploy like this."
                );
                Ok(JwtKey::Secret(DEV_SECRET.as_bytes().to_vec()))
            }
            (None, Mode::Lambda) => Err(Error::Config(
                "no JWT configuration: set VK_WS_JWT_SECRET (HS256) or VK_WS_JWT_PUBLIC_KEY (PEM)"
                    .into(),
            )),
        }
    }

    /// Builds the dispatcher, checking the registered actions.
    pub fn dispatcher(&self, mode: Mode) -> Result<Dispatcher, Error> {
        let verifier = self.token_verifier(mode)?;
        let selection_field = match self.environment()? {
            Some(env) => env.websocket.selection_field().to_owned(),
            None => "action".to_owned(),
        };
        let store = match (&self.store, mode) {
            (Some(store), _) => store.clone(),
            (None, Mode::Local) => Arc::new(MemoryStore::new()),
            (None, Mode::Lambda) => {
                return Err(Error::Lambda(
                    "no connection store: Lambda mode needs the DynamoDB store (an in-memory store would lose connections between invocations)".into(),
                ));
            }
        };
        Dispatcher::new(DispatcherParts {
            actions: self.actions.clone(),
            verifier,
            store,
            auth_timeout_secs: self.config.auth_timeout.as_secs() as i64,
            session_ttl_secs: self.config.session_ttl.as_secs() as i64,
            trust_client_tenant: self.trust_client_tenant,
            fanout_concurrency: self.config.fanout_concurrency,
            limits: crate::dispatch::Limits::from_config(&self.config),
            selection_field,
        })
    }

    /// Binds the local server on `addr` without serving yet (use port 0 in tests).
    pub async fn local_server(&self, addr: SocketAddr) -> Result<LocalServer, Error> {
        if self.config.jwt_key.is_none()
            && !addr.ip().is_loopback()
            && !self.config.allow_dev_secret
        {
            return Err(Error::Config(format!(
                "refusing to listen on {addr} with the public dev secret: anyone could mint tokens. Set VK_WS_JWT_SECRET (or VK_WS_JWT_PUBLIC_KEY), or VK_WS_ALLOW_DEV_SECRET=1 if you really mean it"
            )));
        }
        let dispatcher = self.dispatcher(Mode::Local)?;
        let mut config = self.config.clone();
        if let Some(env) = self.environment()? {
            if !env.websocket.enabled {
                return Err(Error::Config(format!(
                    "websocket.enabled = false for env `{}`: nothing to serve",
                    env.name
                )));
            }
            // An explicit setting (VK_WS_IDLE_TIMEOUT_SEC, or set in code) wins over the file.
            config.idle_timeout =
                config
                    .idle_timeout
                    .or(Some(std::time::Duration::from_secs(u64::from(
                        env.websocket.idle_timeout_sec,
                    ))));
            config.stage_throttle = Some((
                env.websocket.throttle_rate_limit,
                env.websocket.throttle_burst_limit,
            ));
        }
        LocalServer::bind(dispatcher, &config, addr).await
    }

    /// Runs the app: under `lambda_runtime` when `AWS_LAMBDA_RUNTIME_API` is set, otherwise
    /// the command line (`serve`, the default, or `token`).
    pub async fn run(self) -> Result<(), Error> {
        init_logging();
        warn_if_panic_aborts();
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty()) {
            return self.run_lambda().await;
        }
        let cli = Cli::parse();
        match cli.command {
            None => self.serve(None).await,
            Some(Command::Serve { listen, env }) => {
                let mut app = self;
                if env.is_some() {
                    app.config.env = env;
                }
                app.serve(listen).await
            }
            Some(Command::Template { env, out, code_uri }) => {
                self.write_template(&env, out.as_deref(), code_uri)
            }
            Some(Command::Token {
                sub,
                tenants,
                email,
                ttl,
            }) => self.print_token(DevToken {
                sub,
                tenants,
                email,
                ttl_secs: ttl,
            }),
        }
    }

    async fn run_lambda(self) -> Result<(), Error> {
        let table = self
            .config
            .table
            .clone()
            .ok_or_else(|| Error::Config("VK_WS_TABLE is required on Lambda".into()))?;
        // Check the JWT configuration before touching AWS, for a clear startup error.
        self.token_verifier(Mode::Lambda)?;
        let sdk = crate::aws::sdk_config().await;
        let store = crate::aws::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
            .with_scan_segments(self.config.scan_segments);
        let api = crate::aws::ManagementApi::new(&sdk, &self.config);
        let dispatcher = self.store(Arc::new(store)).dispatcher(Mode::Lambda)?;
        crate::lambda::run(dispatcher, api).await
    }

    async fn serve(self, listen: Option<SocketAddr>) -> Result<(), Error> {
        let addr = listen.unwrap_or(self.config.listen);
        let server = self.local_server(addr).await?;
        let bound = server.local_addr();
        let bin = self.binary_name();
        eprintln!(
            "\nventurekit-ws local server (API Gateway emulator)\n\
             \x20 WebSocket:      ws://{bound}\n\
             \x20 Dev console:    http://{bound}/\n\
             \x20 Management API: http://{bound}/@connections/{{connectionId}}\n\
             \x20 Records:        http://{bound}/_vk/connections\n\
             \x20 Get a token:    cargo run -p {bin} -- token --sub alice [--tenant acme]\n\
             \x20 Then send:      {{\"action\":\"auth\",\"token\":\"<token>\"}}\n"
        );
        server
            .serve_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    }

    fn binary_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        std::env::args()
            .next()
            .and_then(|p| {
                std::path::Path::new(&p)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "app".into())
    }

    /// The SAM template of environment `env`, with `code_uri` pointing at the
    /// `cargo lambda build` output.
    pub fn template(&self, env: &str, code_uri: &str) -> Result<String, Error> {
        let (app, binary, settings) = self.deploy_target(env)?;
        Ok(crate::deploy::template(&app, &binary, settings, code_uri))
    }

    /// The template of environment `env` as a JSON value (for inspection and tests).
    pub fn template_value(&self, env: &str, code_uri: &str) -> Result<serde_json::Value, Error> {
        let (app, binary, settings) = self.deploy_target(env)?;
        Ok(crate::deploy::template_value(
            &app, &binary, settings, code_uri,
        ))
    }

    /// What a template of `env` is made from: the app name, the binary name and the
    /// environment's settings (which must have WebSockets enabled).
    fn deploy_target(&self, env: &str) -> Result<(String, String, &EnvConfig), Error> {
        let deploy = self.deploy.as_ref().ok_or_else(|| {
            Error::Config("no venturekit.toml registered: call App::deploy_config".into())
        })?;
        let settings = deploy.env(env).map_err(|e| Error::Config(e.to_string()))?;
        if !settings.websocket.enabled {
            return Err(Error::Config(format!(
                "{}: websocket.enabled = false for env `{env}`: nothing to deploy",
                deploy.file
            )));
        }
        let binary = self.binary_name();
        let app = deploy.app_name.clone().unwrap_or_else(|| binary.clone());
        Ok((app, binary, settings))
    }

    fn write_template(
        &self,
        env: &str,
        out: Option<&std::path::Path>,
        code_uri: Option<String>,
    ) -> Result<(), Error> {
        let (_, binary, settings) = self.deploy_target(env)?;
        let arch = settings.lambda.architecture.clone();
        let build_dir = format!("target/lambda/{arch}/{binary}/");
        let code_uri = match (code_uri, out) {
            (Some(uri), _) => uri,
            (None, Some(out)) => relative_to(out, &build_dir)?,
            (None, None) => build_dir.clone(),
        };
        let text = self.template(env, &code_uri)?;
        match out {
            Some(path) => {
                std::fs::write(path, text)
                    .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
                eprintln!(
                    "wrote {} (CodeUri {code_uri}); build with: cargo lambda build --release{} -p {binary} --lambda-dir target/lambda/{arch}",
                    path.display(),
                    if arch == "arm64" { " --arm64" } else { "" }
                );
            }
            None => {
                #[allow(clippy::print_stdout)]
                {
                    print!("{text}");
                }
            }
        }
        Ok(())
    }

    fn print_token(&self, spec: DevToken) -> Result<(), Error> {
        let secret = match &self.config.jwt_key {
            Some(JwtKey::Secret(secret)) => secret.clone(),
            Some(JwtKey::PublicKeyPem(_)) => {
                return Err(Error::Config(
                    "dev tokens are signed with an HS256 secret, but VK_WS_JWT_PUBLIC_KEY is configured; mint tokens with your identity provider".into(),
                ));
            }
            None if self.config.jwks_url.is_some() => {
                return Err(Error::Config(
                    "dev tokens are signed with an HS256 secret, but VK_WS_JWKS_URL is configured; mint tokens with your identity provider".into(),
                ));
            }
            None => {
                eprintln!("note: VK_WS_JWT_SECRET is not set; signing with the local dev secret");
                DEV_SECRET.as_bytes().to_vec()
            }
        };
        let token = mint_dev_token(&secret, &spec, &self.config)?;
        #[allow(clippy::print_stdout)]
        {
            println!("{token}");
        }
        eprintln!("send it with: {{\"action\":\"auth\",\"token\":\"{token}\"}}");
        Ok(())
    }
}

/// `target` (relative to the current directory) as seen from the directory of `file`.
fn relative_to(file: &std::path::Path, target: &str) -> Result<String, Error> {
    let cwd = std::env::current_dir()?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| Error::Config(format!("cannot resolve {}: {e}", dir.display())))?;
    let cwd = std::fs::canonicalize(cwd)?;
    let common = dir
        .components()
        .zip(cwd.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = dir
        .components()
        .skip(common)
        .map(|_| "..".to_owned())
        .collect();
    parts.extend(
        cwd.components()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.push(target.to_owned());
    Ok(parts.join("/"))
}

/// `cargo lambda build --release` adds `panic = "abort"` unless the workspace's
/// `[profile.release]` sets `panic` itself. Such a binary loses the whole warm Lambda (and
/// every message in flight) on a handler panic instead of answering `internal`.
fn warn_if_panic_aborts() {
    if cfg!(panic = "abort") {
        tracing::warn!(
            "this binary was built with panic = \"abort\": a panicking handler kills the process instead of answering `internal`. Add `panic = \"unwind\"` to [profile.release] in the workspace Cargo.toml (cargo lambda build adds \"abort\" when it is not set)"
        );
    }
}

fn init_logging() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let spec = log_spec(
        std::env::var("RUST_LOG").ok(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(),
    );
    let (filter, refused) = log_filter(spec.as_ref().map(|(var, v)| (*var, v.as_str())));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // No colour codes in CloudWatch or in files, only on a terminal.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(filter),
        )
        .try_init();
    if let Some(refused) = refused {
        tracing::warn!("{refused}");
    }
}

/// `RUST_LOG` when set; otherwise the level chosen in Lambda's logging configuration
/// (`AWS_LAMBDA_LOG_LEVEL`: TRACE, DEBUG, INFO, WARN, ERROR or FATAL). With the variable's
/// name, for messages.
fn log_spec(
    rust_log: Option<String>,
    lambda_level: Option<String>,
) -> Option<(&'static str, String)> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    if set(&rust_log) {
        return rust_log.map(|v| ("RUST_LOG", v));
    }
    if !set(&lambda_level) {
        return None;
    }
    lambda_level.map(|level| {
        let level = match level.trim().to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            other => other.to_owned(),
        };
        ("AWS_LAMBDA_LOG_LEVEL", level)
    })
}

/// The log filter from `(variable, value)`: a level (`debug`) and/or `target=level` pairs
/// (`venturekit_ws=debug,warn`). Unset, empty or unreadable: `info` (and the reason).
/// EnvFilter's span and field directives are not supported: they would link a regex engine
/// into every Lambda binary.
fn log_filter(spec: Option<(&str, &str)>) -> (tracing_subscriber::filter::Targets, Option<String>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let info = || Targets::new().with_default(LevelFilter::INFO);
    match spec
        .map(|(var, v)| (var, v.trim()))
        .filter(|(_, v)| !v.is_empty())
    {
        None => (info(), None),
        Some((var, spec)) => match parse_log_spec(var, spec) {
            Ok(targets) => (targets, None),
            Err(e) => (
                info(),
                Some(format!(
                    "{var}={spec:?} ignored ({e}); expected a level or target=level pairs, e.g. `venturekit_ws=debug,info`; logging at info"
                )),
            ),
        },
    }
}

/// Lambda's log level is a level only; `RUST_LOG` may also name targets.
fn parse_log_spec(var: &str, spec: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    if var == "AWS_LAMBDA_LOG_LEVEL" {
        spec.parse::<LevelFilter>()
            .map(|level| Targets::new().with_default(level))
            .map_err(|e| e.to_string())
    } else {
        spec.parse::<Targets>().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{log_filter, log_spec};
    use tracing::Level;

    #[test]
    fn rust_log_levels_and_targets() {
        let (filter, refused) = log_filter(None);
        assert!(refused.is_none());
        assert!(filter.would_enable("anything", &Level::INFO));
        assert!(!filter.would_enable("anything", &Level::DEBUG));

        let (filter, refused) = log_filter(Some(("RUST_LOG", "venturekit_ws=debug,warn")));
        assert!(refused.is_none());
        assert!(filter.would_enable("venturekit_ws::dispatch", &Level::DEBUG));
        assert!(filter.would_enable("hyper", &Level::WARN));
        assert!(!filter.would_enable("hyper", &Level::INFO));

        let (filter, refused) = log_filter(Some(("RUST_LOG", "  ")));
        assert!(refused.is_none());
        assert!(filter.would_enable("anything", &Level::INFO));
    }

    #[test]
    fn rust_log_wins_over_the_lambda_log_level() {
        let some = |s: &str| Some(s.to_owned());
        let from = |var, s: &str| Some((var, s.to_owned()));
        assert_eq!(
            log_spec(some("debug"), some("ERROR")),
            from("RUST_LOG", "debug")
        );
        assert_eq!(
            log_spec(None, some("WARN")),
            from("AWS_LAMBDA_LOG_LEVEL", "warn")
        );
        assert_eq!(
            log_spec(some(""), some("FATAL")),
            from("AWS_LAMBDA_LOG_LEVEL", "error")
        );
        assert_eq!(log_spec(None, None), None);
        assert_eq!(log_spec(None, some(" ")), None);
        let (_, refused) = log_filter(Some(("AWS_LAMBDA_LOG_LEVEL", "verbose")));
        assert!(
            refused
                .unwrap_or_default()
                .starts_with("AWS_LAMBDA_LOG_LEVEL=\"verbose\" ignored")
        );
    }

    #[test]
    fn an_unreadable_rust_log_falls_back_to_info_and_says_why() {
        let (filter, refused) = log_filter(Some(("RUST_LOG", "venturekit_ws=loud")));
        let refused = refused.unwrap_or_default();
        assert!(
            refused.contains("RUST_LOG=\"venturekit_ws=loud\" ignored"),
            "{refused}"
        );
        assert!(filter.would_enable("anything", &Level::INFO));
        assert!(!filter.would_enable("anything", &Level::DEBUG));
    }
}
