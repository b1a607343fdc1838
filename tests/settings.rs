//! The local server honours the environment's settings from `venturekit.toml`: route
//! selection expression, idle timeout, stage throttling, `websocket.enabled`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use venturekit_ws_tests::*;

fn app_with(toml: &str) -> venturekit_ws::App {
    let mut config = config();
    config.env = Some("test".into());
    chat_app(config)
        .deploy_config("venturekit.toml", toml)
        .unwrap()
}

#[tokio::test]
async fn a_custom_route_selection_expression_selects_by_that_field() {
    let server = start(app_with(
        "[env.test.websocket]\nrouteSelectionExpression = \"$request.body.type\"\n",
    ))
    .await;
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.recv().await["action"], "pong");
    c.send(json!({"type": "auth", "token": token("alice", &[])}))
        .await;
    assert_eq!(c.recv().await["success"], true);
    c.send(json!({"type": "broadcast", "data": 1})).await;
    assert_eq!(c.recv().await["from"], "alice");
    c.send(json!({"action": "ping"})).await;
    let reply = c.recv().await;
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`type`")
    );
}

#[tokio::test]
async fn stage_throttling_answers_like_api_gateway() {
    let server = start(app_with(
        "[env.test.websocket]\nthrottleRateLimit = 1\nthrottleBurstLimit = 3\n",
    ))
    .await;
    let mut c = Client::connect(server.addr).await;
    let mut throttled = 0;
    for _ in 0..6 {
        c.send(json!({"action": "ping"})).await;
        let reply = c.recv().await;
        if reply["message"] == "Too Many Requests" {
            throttled += 1;
            assert!(reply["connectionId"].is_string());
        } else {
            assert_eq!(reply["action"], "pong");
        }
    }
    assert!((2..=3).contains(&throttled), "{throttled} throttled");
}

#[tokio::test]
async fn the_idle_timeout_comes_from_the_file() {
    let server = start(app_with("[env.test.websocket]\nidleTimeoutSec = 1\n")).await;
    let mut c = Client::connect(server.addr).await;
    assert_eq!(c.expect_close().await, Some(1001));
}

#[tokio::test]
async fn disabled_websockets_and_unknown_envs_refuse_to_start() {
    let err = app_with("[env.test.websocket]\nenabled = false\n")
        .local_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("websocket.enabled = false"),
        "{err}"
    );
    let mut config = config();
    config.env = Some("nope".into());
    let err = chat_app(config)
        .deploy_config("venturekit.toml", "[env.dev]\n")
        .unwrap()
        .local_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no environment `nope`; defined: `dev`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = chat_app(config()).local_server(addr).await.unwrap_err();
    assert!(
        err.to_string().contains("already in use"),
        "names the cause: {err}"
    );
}

#[test]
fn a_template_without_venturekit_toml_says_exactly_what_to_add() {
    let err = venturekit_ws::App::new(venturekit_ws::Config::default())
        .template("dev", "target/lambda/x86_64/app/")
        .unwrap_err()
        .to_string();
    assert!(err.contains("venturekit.toml"), "{err}");
    assert!(
        err.contains(r#".deploy_config("venturekit.toml", include_str!("../venturekit.toml"))"#),
        "{err}"
    );
}
