//! One truth, checked three ways: a frame is accepted by serde (the real dispatcher, through
//! the test kit), valid against its generated JSON Schema file, and valid against its
//! payload in the AsyncAPI document, or rejected by all three.

use serde_json::Value;
use std::time::Duration;
use venturekit_ws::contract::Contract;
use venturekit_ws::testing::{TestKit, User};

/// The chat's contract, as `contract --out` writes it.
pub(crate) fn contract() -> Contract {
    chat::app().expect("the chat app builds").contract()
}

fn key_of(name: &str) -> String {
    name.replace(':', "_")
}

/// Three verdicts on one client frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verdicts {
    pub(crate) serde: bool,
    pub(crate) schema: bool,
    pub(crate) asyncapi: bool,
}

/// Judges client frames against a fresh in-process chat, the schema files and the AsyncAPI
/// document.
pub(crate) struct Checker {
    kit: TestKit,
    admin: venturekit_ws::testing::TestClient,
    files: std::collections::HashMap<String, Value>,
    asyncapi: Value,
}

impl Checker {
    pub(crate) async fn new() -> Checker {
        let contract = contract();
        let kit = TestKit::new(chat::app().unwrap()).unwrap();
        let admin = kit
            .authed(User::new("ann").tenant("acme").role("admin"))
            .await;
        Checker {
            files: contract.schema_files().into_iter().collect(),
            asyncapi: contract.asyncapi(),
            kit,
            admin,
        }
    }

    /// `None` for a frame no contract entry describes (not an object, no or unknown action).
    pub(crate) async fn judge(&self, frame: &Value) -> Option<Verdicts> {
        let action = frame.get("action")?.as_str()?.to_owned();
        let key = key_of(&action);
        let file = self.files.get(&format!("{key}.message.json"))?;
        let payload = &self.asyncapi["components"]["messages"][format!("{key}.message")]["payload"];
        assert!(payload.is_object(), "no AsyncAPI payload for {action}");
        let valid = |schema: &Value| {
            jsonschema::draft7::new(schema)
                .unwrap_or_else(|e| panic!("the schema of {action} does not compile: {e}"))
                .is_valid(frame)
        };
        // serde: what the dispatcher answers. Decoding failures, and only they, are
        // `bad_request` here (the checker's admin is authenticated and in a tenant; `auth`
        // frames go on a fresh connection each, so failures never add up to a close).
        self.kit.advance(Duration::from_millis(100));
        let fresh;
        let client = if action == "auth" {
            fresh = self.kit.connect("auth-check").await;
            &fresh
        } else {
            &self.admin
        };
        client.send(frame).await;
        let replies = client.frames();
        client.clear();
        let serde = !replies.iter().any(|r| r["error"]["code"] == "bad_request");
        Some(Verdicts {
            serde,
            schema: valid(file),
            asyncapi: valid(payload),
        })
    }

    /// Asserts the three verdicts agree on `frame`, and returns whether it was accepted.
    pub(crate) async fn agree(&self, frame: &Value) -> Option<bool> {
        let verdicts = self.judge(frame).await?;
        let accepted = verdicts.serde;
        assert_eq!(
            verdicts,
            Verdicts {
                serde: accepted,
                schema: accepted,
                asyncapi: accepted
            },
            "serde, the JSON Schema and the AsyncAPI payload disagree on {frame}"
        );
        Some(accepted)
    }
}
