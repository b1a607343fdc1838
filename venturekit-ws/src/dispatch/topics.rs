//! The built-in `vk:join` and `vk:leave`: client-side topic membership, deny by default.

use super::{Dispatcher, close, reply};
use crate::WsError;
use crate::messaging::Messenger;
use crate::protocol::{self, ErrorCode, Ref};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
struct TopicMessage {
    topic: String,
    #[serde(default)]
    meta: Option<Map<String, Value>>,
}

impl Dispatcher {
    pub(super) async fn topic_action(
        &self,
        messenger: &Messenger,
        id: &str,
        action: &str,
        body: &str,
        reference: Option<&Ref>,
        known: Option<crate::store::Connection>,
    ) {
        let error =
            |code, message: &str| protocol::error_frame_ref(Some(action), reference, code, message);
        let record = match self.guard(id, known).await {
            Ok(record) => record,
            Err(refusal) => {
                reply(messenger, id, &error(refusal.code, refusal.message)).await;
                if refusal.close {
                    close(messenger, id).await;
                }
                return;
            }
        };
        let envelope_fields = [self.selection_field.as_str(), "ref"];
        let message: TopicMessage = match crate::decode::decode_message(body, &envelope_fields) {
            Ok(message) => message,
            Err(why) => return reply(messenger, id, &error(ErrorCode::BadRequest, &why)).await,
        };
        let name = message.topic;
        if let Err(why) = crate::topics::check_name(&name) {
            return reply(messenger, id, &error(ErrorCode::BadRequest, &why)).await;
        }
        let Some(topics) = &self.topics else {
            let why = format!("no topic matching `{name}` may be joined");
            return reply(messenger, id, &error(ErrorCode::Forbidden, &why)).await;
        };
        let ok = |reply_action: &str| {
            let mut frame = json!({"action": reply_action});
            if let Some(r) = reference {
                frame["ref"] = serde_json::to_value(r).unwrap_or(Value::Null);
            }
            frame["topic"] = Value::String(name.clone());
            frame["ok"] = Value::Bool(true);
            frame.to_string()
        };
        if action == "vk:leave" {
            let tenant = record.tenant_id.as_deref();
            return match topics
                .leave(messenger, tenant, id, &name, self.clock.now_secs())
                .await
            {
                Ok(_) => reply(messenger, id, &ok("vk:leave")).await,
                Err(e) => {
                    tracing::error!(connection_id = %id, error = %e, "vk:leave failed");
                    let frame = error(ErrorCode::Internal, crate::error::INTERNAL_MESSAGE);
                    reply(messenger, id, &frame).await
                }
            };
        }
        let allowed = crate::unwind::caught_now("the topic rule", || {
            topics
                .rule_for(&name)
                .is_some_and(|rule| rule.allows(&record, &name))
        });
        let Some(allowed) = allowed else {
            let frame = error(ErrorCode::Internal, crate::error::INTERNAL_MESSAGE);
            return reply(messenger, id, &frame).await;
        };
        if !allowed {
            let why = format!("joining `{}` is not allowed", protocol::clip(&name, 64));
            return reply(messenger, id, &error(ErrorCode::Forbidden, &why)).await;
        }
        // The membership first (a publish after the ack must reach the joiner), then the
        // ack, then the presence frames the join triggers.
        let meta = message.meta.unwrap_or_default();
        let joined = match topics.check_join(&record, &name, &meta).await {
            Ok(()) => topics.add(&record, &name, meta, self.clock.now_ms()).await,
            Err(why) => Err(why),
        };
        let member = match joined {
            Ok(member) => member,
            Err(why) => {
                let why = WsError::from(why);
                if why.code() == ErrorCode::Internal {
                    tracing::error!(connection_id = %id, error = %why, "vk:join failed");
                }
                return reply(messenger, id, &error(why.code(), why.message())).await;
            }
        };
        reply(messenger, id, &ok("vk:join")).await;
        // Joined and told so: a presence read failing now is logged, not answered with an
        // error after the ack (the membership stands).
        if let Err(why) = topics.announce_joined(messenger, &member).await {
            tracing::error!(connection_id = %id, error = %why, "vk:join: sending presence failed");
        }
    }
}
