//! The command line every app gets: `serve` (the default), `token`, `template`; Lambda mode
//! when `AWS_LAMBDA_RUNTIME_API` is set; and logging.

use super::App;
use crate::auth::{DevToken, mint_dev_token};
use crate::config::{DEV_SECRET, JwtKey};
use crate::error::Error;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;

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
        /// Address to listen on, e.g. 127.0.0.1:4000 or localhost:4000 (default:
        /// VK_WS_LISTEN or 127.0.0.1:3001).
        #[arg(long, value_parser = parse_listen)]
        listen: Option<SocketAddr>,
        /// Environment of venturekit.toml whose settings to apply (default: VK_WS_ENV or dev).
        #[arg(long)]
        env: Option<String>,
    },
    /// Print (or write) the AWS SAM template (JSON) of an environment of venturekit.toml.
    #[cfg(feature = "deploy")]
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
    /// Write the contract: asyncapi.json (AsyncAPI 3.0.0), schemas/ (JSON Schema of every
    /// message) and client.ts (a typed TypeScript client).
    Contract {
        /// The directory to write into (created if needed).
        #[arg(long)]
        out: std::path::PathBuf,
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
        /// Lifetime in seconds (at least 1).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        ttl: u64,
        /// A role, in the roles claim (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// An OAuth scope, in `scope` (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A further claim, `name=value` (the value is JSON when it parses as JSON, else a
        /// string); repeat for several.
        #[arg(long = "claim", value_parser = parse_claim)]
        claims: Vec<(String, serde_json::Value)>,
    },
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    crate::config::parse_listen(text)
}

fn parse_claim(text: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected name=value, got `{text}`"))?;
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

impl App {
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
            #[cfg(feature = "deploy")]
            Some(Command::Template { env, out, code_uri }) => {
                self.write_template(&env, out.as_deref(), code_uri)
            }
            Some(Command::Contract { out }) => self.write_contract(&out),
            Some(Command::Token {
                sub,
                tenants,
                email,
                ttl,
                roles,
                scopes,
                claims,
            }) => self.print_token(DevToken {
                sub,
                tenants,
                email,
                ttl_secs: ttl,
                roles,
                scopes,
                claims: claims.into_iter().collect(),
            }),
        }
    }

    #[cfg(feature = "contract")]
    fn write_contract(&self, dir: &std::path::Path) -> Result<(), Error> {
        let contract = self.contract();
        let untyped: Vec<&str> = contract
            .actions
            .iter()
            .filter(|a| !a.typed)
            .map(|a| a.name.as_str())
            .collect();
        let written = contract.write(dir).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("writing the contract into {}: {e}", dir.display()),
            ))
        })?;
        for file in &written {
            eprintln!("wrote {}", dir.join(file).display());
        }
        if !untyped.is_empty() {
            eprintln!(
                "note: {} described loosely: derive schemars::JsonSchema on their message and reply types (or use ActionDef::with_schemas)",
                untyped.join(", ")
            );
        }
        Ok(())
    }

    #[cfg(not(feature = "contract"))]
    fn write_contract(&self, _dir: &std::path::Path) -> Result<(), Error> {
        Err(Error::Config(
            "this build has no contract export: enable venturekit-ws's `contract` feature (and derive schemars::JsonSchema on the message and reply types)".into(),
        ))
    }

    #[cfg(not(feature = "aws"))]
    async fn run_lambda(self) -> Result<(), Error> {
        Err(Error::Lambda(
            "AWS_LAMBDA_RUNTIME_API is set, but this build has no Lambda mode: enable venturekit-ws's `aws` feature (on by default)".into(),
        ))
    }

    /// Lambda mode on a current-thread runtime of its own: a function handles one event at a
    /// time and, below 1,769 MB, has less than one vCPU, so the multi-threaded runtime's
    /// hand-offs between workers are pure overhead (measured in BENCHMARKS.md). The app's
    /// own runtime (`#[tokio::main]`) just waits.
    #[cfg(feature = "aws")]
    async fn run_lambda(self) -> Result<(), Error> {
        // `VK_WS_LAMBDA_RUNTIME=multi_thread` keeps the app's runtime (functions with 2+
        // vCPUs doing CPU-heavy work per event might want it).
        if std::env::var("VK_WS_LAMBDA_RUNTIME").as_deref() == Ok("multi_thread") {
            return self.run_lambda_here().await;
        }
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("lambda".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::Io)
                    .and_then(|runtime| runtime.block_on(self.run_lambda_here()));
                let _ = done.send(result);
            })
            .map_err(Error::Io)?;
        finished
            .await
            .unwrap_or_else(|_| Err(Error::Lambda("the Lambda runtime thread panicked".into())))
    }

    #[cfg(feature = "aws")]
    async fn run_lambda_here(self) -> Result<(), Error> {
        let table = self
            .config
            .table
            .clone()
            .ok_or_else(|| Error::Config("VK_WS_TABLE is required on Lambda".into()))?;
        // Check the JWT configuration before touching AWS, for a clear startup error.
        self.token_verifier(super::Mode::Lambda)?;
        // The SDK's configuration (and its HTTPS client's trust store) loads on a thread of
        // its own while the runtime asks for the first event; the clients are built from it
        // on first use (BENCHMARKS.md, "Cold start").
        let sdk = crate::aws::SdkLoader::start();
        let store = crate::aws::DynamoStore::deferred(sdk.clone(), table)
            .with_scan_segments(self.config.scan_segments);
        let api = crate::aws::ManagementApi::deferred(sdk.clone(), &self.config);
        let mut app = self.store(std::sync::Arc::new(store));
        if let Some(topics) = app.config.topics_table.clone() {
            app = app.topic_store(std::sync::Arc::new(crate::aws::DynamoTopics::deferred(
                sdk.clone(),
                topics,
            )));
        }
        let mut dispatcher = app.dispatcher(super::Mode::Lambda)?;
        if let Some(spill) = crate::aws::spill_from_config(&sdk, &app.config) {
            dispatcher = dispatcher.with_spill(spill);
        }
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
