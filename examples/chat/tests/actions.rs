//! The chat's actions, tested through `venturekit_ws::testing` alone: auth codes, tenant
//! isolation, `broadcast`, `send`, `history`, `kick`, rooms with presence, the `left`
//! notices of the disconnect hook, expiry in virtual time, and injected faults.
//!
//! Every scenario runs twice: in process (no sockets, no sleeps) and over real WebSockets
//! against the local server, with the same test body. Every frame the scenarios send is
//! then judged alike by serde, its JSON Schema and the AsyncAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use venturekit_ws::testing::{TestKit, User};

#[path = "support/contract.rs"]
mod support;

fn app() -> venturekit_ws::App {
    chat::app().expect("the chat app builds")
}

/// Runs `scenario` in process and over sockets: `both_ways!(name)` makes
/// `name::in_process` and `name::over_sockets`.
macro_rules! both_ways {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn in_process() {
                let kit = venturekit_ws::testing::TestKit::new(super::app()).unwrap();
                super::$scenario(&kit).await;
                super::every_sent_frame_fits_the_contract(&kit).await;
            }
            #[tokio::test]
            async fn over_sockets() {
                let kit = venturekit_ws::testing::TestKit::over_sockets(super::app()).await.unwrap();
                super::$scenario(&kit).await;
            }
        }
    )*};
}

/// Every frame a scenario sent is judged alike by serde, its JSON Schema and the AsyncAPI
/// document (see `tests/contract.rs`).
async fn every_sent_frame_fits_the_contract(kit: &TestKit) {
    let checker = support::Checker::new().await;
    for frame in kit.sent_frames() {
        checker.agree(&frame).await;
    }
}

both_ways!(
    auth_failures_have_their_codes,
    windows_and_sessions_expire_in_virtual_time,
    broadcast_stays_in_the_tenant,
    send_reaches_every_device_of_the_user_in_scope,
    history_is_per_scope_oldest_first,
    only_admins_kick_and_the_scope_hears_why,
    rooms_have_presence_and_members_only_speech,
    gone_throttled_and_failing_deliveries,
);

const QUIET: Duration = Duration::from_millis(100);

async fn auth_failures_have_their_codes(kit: &TestKit) {
    let c = kit.connect("mallory").await;
    for (message, code) in [
        (json!({"action": "auth"}), "bad_request"),
        (json!({"action": "auth", "token": 42}), "bad_request"),
        (
            json!({"action": "auth", "token": "not.a.jwt"}),
            "invalid_token",
        ),
    ] {
        let reply = c.request(&message).await;
        assert_eq!(reply["success"], false, "{reply}");
        assert_eq!(reply["error"]["code"], code, "{message} -> {reply}");
    }
    // A token from the kit whose lifetime has passed on the kit's clock.
    let short = kit.token(&User::new("alice").ttl(Duration::from_secs(60)));
    kit.advance(Duration::from_secs(120));
    let c = kit.connect("alice-later").await;
    assert_eq!(c.auth_token(&short).await["error"]["code"], "token_expired");
    // A tenant the token does not list.
    let c = kit.connect("alice").await;
    let reply = c
        .auth_token(&kit.token(&User::new("alice").tenant("acme")))
        .await;
    assert_eq!(reply["tenantId"], "acme");
    let other = kit.connect("alice-elsewhere").await;
    let token = kit.token(&User::new("alice").tenant("acme"));
    let reply = other
        .request(&json!({"action": "auth", "token": token, "tenantId": "globex"}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden_tenant");
    // Guarded actions before auth: refused, and the socket stays open.
    other
        .send(&json!({"action": "broadcast", "data": "hi"}))
        .await;
    other.assert_error("unauthorized").await;
    kit.assert_delivered(json!({"action": "message"}), &[])
        .await;
    other.assert_no_push(QUIET).await;
}

async fn windows_and_sessions_expire_in_virtual_time(kit: &TestKit) {
    // The 30 s authentication window.
    let late = kit.connect("late").await;
    kit.advance(Duration::from_secs(31));
    let reply = late.auth_token(&kit.token(&User::new("late"))).await;
    assert_eq!(reply["error"]["code"], "unauthorized");
    let closed = late.assert_closed().await;
    assert_eq!(closed.code, 1000);
    kit.assert_no_connection(&late).await;

    // The 2 h session: a message after it is refused and the socket closed; the sweeper
    // closes the silent ones.
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    let record = kit.connection(&alice).await;
    assert_eq!(record.user_id.as_deref(), Some("alice"));
    assert_eq!(record.tenant_id.as_deref(), Some("acme"));
    kit.advance(Duration::from_secs(2 * 3600 + 1));
    alice
        .send(&json!({"action": "broadcast", "data": "still there?"}))
        .await;
    alice.assert_error("unauthorized").await;
    alice.assert_closed().await;
    kit.assert_no_connection(&alice).await;
    let report = kit.sweep().await;
    assert_eq!(report.expired, 1, "bob's: {report:?}");
    let closed = bob.assert_closed().await;
    assert_eq!(
        closed.error.unwrap()["error"]["message"],
        "the session has expired; reconnect"
    );
    kit.assert_no_connection(&bob).await;
}

async fn broadcast_stays_in_the_tenant(kit: &TestKit) {
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    let gus = kit.authed(User::new("gus").tenant("globex")).await;
    let ted = kit.authed(User::new("ted")).await;
    let tom = kit.authed(User::new("tom")).await;
    let anon = kit.connect("anon").await;
    alice
        .send(&json!({"action": "broadcast", "data": {"text": "hi"}}))
        .await;
    let expected = json!({"action": "message", "from": "alice", "data": {"text": "hi"}});
    assert_eq!(bob.assert_push(expected.clone()).await, expected, "exactly");
    kit.assert_delivered(expected, &[&alice]).await;
    // The tenant-less scope is a scope of its own.
    ted.send(&json!({"action": "broadcast", "data": 1})).await;
    kit.assert_delivered(json!({"action": "message", "from": "ted"}), &[&ted, &tom])
        .await;
    // With `ref`, the reply is `ok`.
    let reference = gus.push(&json!({"action": "broadcast", "data": 2})).await;
    gus.assert_reply(&reference, json!({"action": "broadcast", "ok": true}))
        .await;
    gus.assert_push(json!({"action": "message", "from": "gus", "data": 2}))
        .await;
    for c in [&alice, &bob, &gus, &ted, &tom, &anon] {
        c.assert_no_push(QUIET).await;
    }
}

async fn send_reaches_every_device_of_the_user_in_scope(kit: &TestKit) {
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob_phone = kit.authed(User::new("bob").tenant("acme")).await;
    let bob_laptop = kit.authed(User::new("bob").tenant("acme")).await;
    let bob_elsewhere = kit.authed(User::new("bob").tenant("globex")).await;
    let anon = kit.connect("anon").await;
    let reference = alice
        .push(&json!({"action": "send", "to": "bob", "data": "psst"}))
        .await;
    let reply = alice.assert_reply(&reference, json!({})).await;
    assert_eq!(
        reply,
        json!({"action": "send", "ref": reference, "delivered": 2})
    );
    kit.assert_delivered(
        json!({"action": "message", "from": "alice", "data": "psst"}),
        &[&bob_phone, &bob_laptop],
    )
    .await;
    let reply = alice
        .request(&json!({"action": "send", "to": "nobody", "data": 1}))
        .await;
    assert_eq!(reply["delivered"], 0);
    // Wrong types are bad_request, and nothing is sent.
    let reply = alice
        .request(&json!({"action": "send", "to": 7, "data": 1}))
        .await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    for c in [&alice, &bob_phone, &bob_laptop, &bob_elsewhere, &anon] {
        c.assert_no_push(QUIET).await;
    }
    // A device that disconnected is no longer counted.
    bob_laptop.disconnect().await;
    kit.assert_no_connection(&bob_laptop).await;
    let reply = alice
        .request(&json!({"action": "send", "to": "bob", "data": 2}))
        .await;
    assert_eq!(reply["delivered"], 1, "{reply}");
}

async fn history_is_per_scope_oldest_first(kit: &TestKit) {
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let gus = kit.authed(User::new("gus").tenant("globex")).await;
    for i in 0..55 {
        // 55 messages at once would be rate limited (40 per 2 s): 10 a second.
        kit.advance(Duration::from_millis(100));
        alice.send(&json!({"action": "broadcast", "data": i})).await;
        alice
            .assert_push(json!({"action": "message", "data": i}))
            .await;
    }
    gus.send(&json!({"action": "broadcast", "data": "g"})).await;
    gus.assert_push(json!({"action": "message"})).await;
    let reply = alice.request(&json!({"action": "history"})).await;
    let messages = reply["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 50, "the last 50");
    assert_eq!(messages[0]["data"], 5, "oldest first");
    assert_eq!(messages[49]["data"], 54);
    assert_eq!(messages[0]["from"], "alice");
    let theirs = gus.request(&json!({"action": "history"})).await;
    assert_eq!(theirs["messages"].as_array().unwrap().len(), 1, "{theirs}");
}

async fn only_admins_kick_and_the_scope_hears_why(kit: &TestKit) {
    let bob1 = kit.authed(User::new("bob").tenant("acme")).await;
    let bob2 = kit.authed(User::new("bob").tenant("acme")).await;
    let bob_elsewhere = kit.authed(User::new("bob").tenant("globex")).await;
    let carol = kit.authed(User::new("carol").tenant("acme")).await;
    let ann = kit
        .authed(User::new("ann").tenant("acme").role("admin"))
        .await;

    let refused = carol
        .request(&json!({"action": "kick", "userId": "bob"}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    kit.connection(&bob1).await;

    let reply = ann
        .request(&json!({"action": "kick", "userId": "bob"}))
        .await;
    assert_eq!(reply["closed"], 2, "{reply}");
    for bob in [&bob1, &bob2] {
        bob.assert_push(json!({"action": "kicked", "by": "ann"}))
            .await;
        assert_eq!(bob.assert_closed().await.code, 1000);
        kit.assert_no_connection(bob).await;
    }
    // The rest of the tenant hears both leaves, reason `closed`; the other tenant's bob
    // stays connected and hears nothing.
    for c in [&carol, &ann] {
        for _ in 0..2 {
            c.assert_push(json!({"action": "left", "userId": "bob", "reason": "closed"}))
                .await;
        }
    }
    kit.connection(&bob_elsewhere).await;
    bob_elsewhere.assert_no_push(QUIET).await;
    // A client that goes away: reason `client`.
    carol.disconnect().await;
    ann.assert_push(json!({"action": "left", "userId": "carol", "reason": "client"}))
        .await;
}

async fn rooms_have_presence_and_members_only_speech(kit: &TestKit) {
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    let carol = kit.authed(User::new("carol").tenant("acme")).await;
    let gus = kit.authed(User::new("gus").tenant("globex")).await;

    let reference = alice
        .push(&json!({"action": "vk:join", "topic": "room:42", "meta": {"device": "web"}}))
        .await;
    alice
        .assert_reply(
            &reference,
            json!({"action": "vk:join", "topic": "room:42", "ok": true}),
        )
        .await;
    let state = alice
        .assert_push(json!({"action": "vk:presence_state", "topic": "room:42"}))
        .await;
    let metas = &state["presences"]["alice"]["metas"];
    assert_eq!(metas.as_array().unwrap().len(), 1, "{state}");
    assert_eq!(metas[0]["device"], "web");
    assert_eq!(
        metas[0]["joinedAt"],
        kit.clock().now_ms(),
        "the kit clock's time"
    );
    assert_eq!(metas[0]["connectionId"], alice.connection_id());
    alice
        .assert_push(json!({"action": "vk:presence_diff", "joins": {"alice": {}}}))
        .await;

    bob.request(&json!({"action": "vk:join", "topic": "room:42"}))
        .await;
    let state = bob
        .assert_push(json!({"action": "vk:presence_state"}))
        .await;
    assert_eq!(state["presences"].as_object().unwrap().len(), 2, "{state}");
    kit.assert_delivered(
        json!({"action": "vk:presence_diff", "joins": {"bob": {}}, "leaves": {}}),
        &[&alice, &bob],
    )
    .await;
    kit.assert_members(Some("acme"), "room:42", &[&alice, &bob])
        .await;
    // The same room name in another tenant is another room.
    gus.request(&json!({"action": "vk:join", "topic": "room:42"}))
        .await;
    gus.clear();
    kit.assert_members(Some("globex"), "room:42", &[&gus]).await;

    // say: members only, sender included.
    let reply = bob
        .request(&json!({"action": "say", "room": "room:42", "data": "hi"}))
        .await;
    assert_eq!(reply["delivered"], 2);
    kit.assert_delivered(
        json!({"action": "message", "from": "bob", "room": "room:42", "data": "hi"}),
        &[&alice, &bob],
    )
    .await;
    let refused = carol
        .request(&json!({"action": "say", "room": "room:42", "data": "x"}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden");

    // Leave: the remaining member hears the diff.
    bob.request(&json!({"action": "vk:leave", "topic": "room:42"}))
        .await;
    alice
        .assert_push(json!({"action": "vk:presence_diff", "joins": {}, "leaves": {"bob": {}}}))
        .await;
    kit.assert_members(Some("acme"), "room:42", &[&alice]).await;
    // A connection that goes away leaves its rooms: a rejoin by bob sees only himself.
    alice.disconnect().await;
    kit.assert_members(Some("acme"), "room:42", &[]).await;
    for c in [&bob, &carol] {
        c.assert_push(json!({"action": "left", "userId": "alice", "reason": "client"}))
            .await;
        c.assert_no_push(QUIET).await;
    }
    gus.assert_no_push(QUIET).await;
    bob.request(&json!({"action": "vk:join", "topic": "room:42"}))
        .await;
    let state = bob
        .assert_push(json!({"action": "vk:presence_state"}))
        .await;
    let present: Vec<&String> = state["presences"].as_object().unwrap().keys().collect();
    assert_eq!(present, ["bob"]);
}

async fn gone_throttled_and_failing_deliveries(kit: &TestKit) {
    let alice = kit.authed(User::new("alice").tenant("acme")).await;
    let bob = kit.authed(User::new("bob").tenant("acme")).await;
    let carol = kit.authed(User::new("carol").tenant("acme")).await;

    // Bob's device vanished without a `$disconnect`: the broadcast finds it gone (410),
    // removes its record, and the scope hears that bob left, reason `gone`.
    kit.faults().gone(&bob);
    alice.send(&json!({"action": "broadcast", "data": 1})).await;
    kit.assert_delivered(json!({"action": "message", "data": 1}), &[&alice, &carol])
        .await;
    kit.assert_no_connection(&bob).await;
    kit.assert_delivered(
        json!({"action": "left", "userId": "bob", "reason": "gone"}),
        &[&alice, &carol],
    )
    .await;

    // A throttled or timed-out post is a failed delivery, not a removal.
    kit.faults().throttle_next_posts(1);
    let reply = alice
        .request(&json!({"action": "send", "to": "carol", "data": 2}))
        .await;
    assert_eq!(reply["delivered"], 0, "{reply}");
    kit.faults().time_out_next_posts(1);
    let reply = alice
        .request(&json!({"action": "send", "to": "carol", "data": 3}))
        .await;
    assert_eq!(reply["delivered"], 0, "{reply}");
    kit.connection(&carol).await;
    carol.assert_no_push(QUIET).await;

    // The store fails (the rate counter fails open; the guard's read does not): the
    // client gets `internal`, the socket stays open, and the next message works.
    kit.faults().fail_next_store_calls(2);
    alice.send(&json!({"action": "broadcast", "data": 4})).await;
    alice.assert_error("internal").await;
    carol.assert_no_push(QUIET).await;
    alice.send(&json!({"action": "broadcast", "data": 5})).await;
    kit.assert_delivered(json!({"action": "message", "data": 5}), &[&alice, &carol])
        .await;
}
