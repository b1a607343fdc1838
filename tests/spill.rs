//! Spill-over fan-out end to end, against moto's DynamoDB and SQS and a recording management
//! API: a broadcast to 5,000 connections is split into segments on the queue, the worker
//! path (the Lambda handler fed SQS events built from the published fixture, the way the
//! event source mapping feeds it) works them off, and every live connection receives the
//! frame exactly once — with connections gone (410) and throttled (429) in the middle, and
//! workers stopped by their deadline part-way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use venturekit_ws::aws::{ManagementApi, RetryPolicy, SqsQueue};
use venturekit_ws::fanout::Spill;
use venturekit_ws::lambda::{Output, handle};
use venturekit_ws::{App, Dispatcher, Mode};
use venturekit_ws_tests::aws::*;
use venturekit_ws_tests::{chat_app, config};

const N: usize = 5000;

async fn rig(label: &str) -> Rig {
    venturekit_ws_tests::aws::rig(
        label,
        RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(5),
            timeout: Duration::from_secs(5),
        },
    )
    .await
}

/// The fan-out queue in moto and the spill settings on it: threshold 2,000, four workers
/// (eight scan segments), a rate high enough not to slow the test.
async fn spill(label: &str) -> (aws_sdk_sqs::Client, String, Spill) {
    let client = sqs_client();
    let url = fresh_queue(&client, label).await;
    let queue = SqsQueue::new(client.clone(), url.clone());
    (client, url, Spill::new(Arc::new(queue), 2000, 1_000_000, 4))
}

fn id(i: usize) -> String {
    format!("conn{i:05}=")
}

/// What the stand-in event source mapping saw.
#[derive(Debug, Default)]
struct Drained {
    invocations: usize,
    messages: usize,
    failures: usize,
}

/// Plays the SQS event source mapping: receives up to 10 messages, invokes the Lambda
/// handler with them as one SQS event, deletes the ones not reported as batch item
/// failures, and makes the failed ones visible again at once; until the queue is empty.
/// The first `stop_early` invocations get a deadline that has already passed.
async fn drain(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    dispatcher: &Dispatcher,
    api: &ManagementApi,
    stop_early: usize,
) -> Drained {
    let mut drained = Drained::default();
    for _ in 0..2000 {
        let batch = receive(sqs, url).await;
        if batch.is_empty() {
            return drained;
        }
        let messages: Vec<(String, String)> = batch
            .iter()
            .map(|m| (m.id.clone(), m.body.clone()))
            .collect();
        let event = sqs_event(&messages);
        assert!(venturekit_ws::lambda::is_sqs(&event));
        let output = if drained.invocations < stop_early {
            let messages = messages
                .iter()
                .map(|(id, body)| venturekit_ws::lambda::QueueMessage {
                    message_id: id.clone(),
                    body: body.clone(),
                })
                .collect::<Vec<_>>();
            Output::Batch(
                venturekit_ws::lambda::work(dispatcher, api, &messages, Some(Instant::now())).await,
            )
        } else {
            handle(dispatcher, api, &event.to_string()).await.unwrap()
        };
        drained.invocations += 1;
        drained.messages += batch.len();
        let Output::Batch(response) = output else {
            panic!("an SQS event must be answered with a batch response, got {output:?}");
        };
        let answer = serde_json::to_value(&response).unwrap();
        drained.failures += settle(sqs, url, &batch, &answer).await;
    }
    panic!("the queue did not drain within 2,000 invocations: {drained:?}");
}

/// Frames with `action` received by `id` (posts answered 200).
fn received(rig: &Rig, id: &str, action: &str) -> Vec<Value> {
    rig.server
        .received_by(id)
        .into_iter()
        .filter(|frame| frame["action"] == action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_5000_spills_and_each_live_connection_gets_it_exactly_once() {
    let rig = rig("spill5k").await;
    let (sqs, url, spill) = spill("spill5k").await;
    let records: Vec<(String, String, Option<String>)> = (0..N)
        .map(|i| {
            (
                id(i),
                format!("user{}", i % 1000),
                Some(format!("t{}", i % 7)),
            )
        })
        .collect();
    put_authenticated(&rig.client, rig.store.table(), &records).await;
    // Connections that must not receive it: unauthenticated, and expired.
    let now = venturekit_ws::clock::now_secs();
    for i in 0..5 {
        use venturekit_ws::ConnectionStore;
        let waiting = venturekit_ws::Connection::unauthenticated(format!("anon{i}="), 1, now + 30);
        rig.store.save(&waiting).await.unwrap();
        let expired = venturekit_ws::Connection::unauthenticated(format!("old{i}="), 1, now - 5);
        rig.store.save(&expired).await.unwrap();
    }
    // In the middle: 25 connections are gone (410), 25 are throttled three times (more than
    // one worker's two tries: the post is queued again and succeeds on its second round).
    let gone: Vec<String> = (0..N).filter(|i| i % 200 == 7).map(id).collect();
    let throttled: Vec<String> = (0..N).filter(|i| i % 200 == 99).map(id).collect();
    for g in &gone {
        rig.server.gone(g);
    }
    for t in &throttled {
        rig.server.throttle(t, 3);
    }

    let dispatcher = App::new(config())
        .store(rig.store.clone())
        .dispatcher(Mode::Lambda)
        .unwrap()
        .with_spill(spill);
    let messenger = rig.messenger_of(&dispatcher);
    let notice = json!({"action": "notice", "text": "maintenance at 22:00"});
    let report = messenger.broadcast(&notice).await.unwrap();
    assert_eq!(report.queued, 8, "one segment per scan segment: {report:?}");
    assert_eq!(report.delivered, 0, "{report:?}");
    assert!(
        rig.server.calls().is_empty(),
        "the originating call posts nothing itself"
    );

    // Two invocations run out of time before doing anything (continuations are queued).
    let drained = drain(&sqs, &url, &dispatcher, &rig.api, 2).await;
    assert_eq!(drained.failures, 0, "{drained:?}");
    assert!(
        drained.messages > 8,
        "continuations and retries were queued: {drained:?}"
    );

    let gone: HashSet<String> = gone.into_iter().collect();
    for i in 0..N {
        let id = id(i);
        let got = received(&rig, &id, "notice");
        if gone.contains(&id) {
            assert!(got.is_empty(), "{id} is gone yet received {got:?}");
            assert!(
                messenger.get(&id).await.unwrap().is_none(),
                "{id}'s record should be removed after its 410"
            );
        } else {
            assert_eq!(
                got,
                vec![notice.clone()],
                "{id} must receive it exactly once"
            );
        }
    }
    for t in &throttled {
        assert_eq!(
            rig.server.calls_for(t).len(),
            4,
            "{t}: two throttled tries, then a third 429 and the delivery"
        );
    }
    for i in 0..5 {
        for other in [format!("anon{i}="), format!("old{i}=")] {
            assert!(
                rig.server.calls_for(&other).is_empty(),
                "{other} was posted to"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_broadcast_in_a_large_tenant_spills_pages_of_ids_through_the_lambda_handler() {
    let rig = rig("spilltenant").await;
    let (sqs, url, spill) = spill("spilltenant").await;
    // 4,500 connections in tenant `acme`, 20 in `globex`.
    let records: Vec<(String, String, Option<String>)> = (0..4520)
        .map(|i| {
            let tenant = if i < 4500 { "acme" } else { "globex" };
            (id(i), format!("user{i}"), Some(tenant.to_owned()))
        })
        .collect();
    put_authenticated(&rig.client, rig.store.table(), &records).await;
    let dispatcher = chat_app(config())
        .store(rig.store.clone())
        .dispatcher(Mode::Lambda)
        .unwrap()
        .with_spill(spill);

    // A real `$default` event through the Lambda handler: the chat's `broadcast` action.
    let event = message_event(&id(0), json!({"action": "broadcast", "data": "hello acme"}));
    let output = handle(&dispatcher, &rig.api, &event.to_string())
        .await
        .unwrap();
    assert!(matches!(output, Output::Response(_)), "{output:?}");
    assert!(
        rig.server.calls().is_empty(),
        "the `broadcast` invocation itself posts nothing: {:?}",
        rig.server.calls().first()
    );
    assert_eq!(
        queue_depth(&sqs, &url).await,
        3,
        "4,500 ids in pages of at most 2,000"
    );

    let drained = drain(&sqs, &url, &dispatcher, &rig.api, 0).await;
    assert_eq!(drained.failures, 0, "{drained:?}");
    let expected = json!({"action": "message", "from": "user0", "data": "hello acme"});
    for i in 0..4520 {
        let got = received(&rig, &id(i), "message");
        if i < 4500 {
            assert_eq!(
                got,
                vec![expected.clone()],
                "{} must receive it once",
                id(i)
            );
        } else {
            assert!(got.is_empty(), "{} is in another tenant: {got:?}", id(i));
        }
    }
}

#[tokio::test]
async fn messages_that_are_not_segments_are_reported_as_batch_item_failures() {
    let rig = rig("spillbad").await;
    let (_, _, spill) = spill("spillbad").await;
    let dispatcher = App::new(config())
        .store(rig.store.clone())
        .dispatcher(Mode::Lambda)
        .unwrap()
        .with_spill(spill);
    let good = venturekit_ws::fanout::Segment::new(
        r#"{"action":"x"}"#,
        Some(rig.server.endpoint("prod")),
        "x",
        venturekit_ws::fanout::Target::Ids {
            ids: vec!["someone=".into()],
        },
    );
    let event = sqs_event(&[
        ("m1".into(), "not a segment".into()),
        ("m2".into(), good.to_body()),
        ("m3".into(), r#"{"vkFanout":9}"#.into()),
    ]);
    let output = handle(&dispatcher, &rig.api, &event.to_string())
        .await
        .unwrap();
    let answer = serde_json::to_value(match output {
        Output::Batch(b) => b,
        other => panic!("{other:?}"),
    })
    .unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m3"}]})
    );
    // The published batch response has the same shape.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/sqs/example-sqs-batch-response.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        fixture["batchItemFailures"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        answer["batchItemFailures"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    assert_eq!(received(&rig, "someone=", "x").len(), 1);
}
