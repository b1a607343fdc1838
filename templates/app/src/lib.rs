//! {{project-name}}: a WebSocket API on AWS API Gateway + Lambda, built with venturekit-ws.
//!
//! `cargo run` serves it locally on ws://127.0.0.1:3001 (open http://127.0.0.1:3001/ for the
//! dev console); `cargo run -- token --sub alice --tenant acme` prints a dev token;
//! `cargo test` runs the action tests; `cargo run -- template --env dev --out template.json`
//! writes the SAM template; `cargo run -- contract --out contract` the client contract.

use serde::{Deserialize, Serialize};
use venturekit_ws::{App, Ctx, WsError, actions, ws_action};

/// `{"action":"shout","text":"hi"}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Shout {
    /// What to shout.
    pub text: String,
}

/// What everyone in the sender's tenant receives.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Shouted<'a> {
    #[schemars(extend("const" = "shouted"))]
    action: &'static str,
    /// Who shouted.
    from: &'a str,
    /// The text, in capitals.
    text: String,
}

/// The reply to `shout`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Shouts {
    #[schemars(extend("const" = "shout"))]
    action: &'static str,
    /// Connections reached.
    delivered: usize,
}

/// Shouts to every authenticated connection of the caller's tenant (the caller included).
#[ws_action("shout")]
pub async fn shout(ctx: Ctx, msg: Shout) -> Result<Shouts, WsError> {
    let from = ctx.require_user()?;
    let text = msg.text.to_uppercase();
    let report = ctx
        .broadcast(&Shouted {
            action: "shouted",
            from,
            text,
        })
        .await?;
    Ok(Shouts {
        action: "shout",
        delivered: report.delivered,
    })
}

/// The app: its actions and settings. `main` runs it; the tests drive it with the test kit.
pub fn app() -> Result<App, venturekit_ws::Error> {
    let app = App::from_env()?.name("{{project-name}}").actions(actions![shout]);
    #[cfg(feature = "contract")]
    let app = app
        .version(env!("CARGO_PKG_VERSION"))
        .server_message::<Shouted<'static>>("shouted");
    app.deploy_config("venturekit.toml", include_str!("../venturekit.toml"))
}
