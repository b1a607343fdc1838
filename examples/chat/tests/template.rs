//! The generated deployment templates: committed, never stale, valid for `cfn-lint`, and
//! shaped as the deploy guide describes (routes, tables, TTL, IAM scoping, throttling).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::path::PathBuf;

const CODE_URI: &str = "../../../target/lambda/arm64/chat/";

fn committed(env: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("deploy/{env}.json"))
}

#[test]
fn committed_templates_are_up_to_date() {
    let app = chat::app().unwrap();
    for env in ["dev", "prod", "validated"] {
        let generated = app.template(env, CODE_URI).unwrap();
        let on_disk = std::fs::read_to_string(committed(env)).unwrap_or_default();
        assert!(
            generated == on_disk,
            "examples/chat/deploy/{env}.json is stale: regenerate with\n  cargo run -p chat -- template --env {env} --out examples/chat/deploy/{env}.json"
        );
    }
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

#[test]
fn template_structure() {
    let t = chat::app()
        .unwrap()
        .template_value("prod", CODE_URI)
        .unwrap();
    // Three routes on one integration to one function.
    let mut routes: Vec<&str> = resources_of_type(&t, "AWS::ApiGatewayV2::Route")
        .iter()
        .map(|(_, r)| r["Properties"]["RouteKey"].as_str().unwrap())
        .collect();
    routes.sort();
    assert_eq!(routes, ["$connect", "$default", "$disconnect"]);
    // Replies travel back in the function's response: `$default` has a route response and
    // the function is told so; the stage is deployed after it.
    assert_eq!(
        t["Resources"]["DefaultRoute"]["Properties"]["RouteResponseSelectionExpression"],
        "$default"
    );
    let responses = resources_of_type(&t, "AWS::ApiGatewayV2::RouteResponse");
    assert_eq!(responses.len(), 1);
    assert_eq!(
        responses[0].1["Properties"],
        json!({"ApiId": {"Ref": "WebSocketApi"}, "RouteId": {"Ref": "DefaultRoute"}, "RouteResponseKey": "$default"})
    );
    assert_eq!(
        t["Resources"]["Function"]["Properties"]["Environment"]["Variables"]["VK_WS_ROUTE_RESPONSE"],
        "true"
    );
    assert!(
        t["Resources"]["Deployment"]["DependsOn"]
            .as_array()
            .unwrap()
            .contains(&json!(responses[0].0))
    );
    assert_eq!(resources_of_type(&t, "AWS::Serverless::Function").len(), 1);
    assert_eq!(
        resources_of_type(&t, "AWS::ApiGatewayV2::Integration").len(),
        1
    );
    let api = &t["Resources"]["WebSocketApi"]["Properties"];
    assert_eq!(api["ProtocolType"], "WEBSOCKET");
    assert_eq!(api["RouteSelectionExpression"], "$request.body.action");

    // The connections table (docs/PROTOCOL.md, "Connection state").
    let table = &t["Resources"]["ConnectionsTable"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["KeySchema"],
        json!([{"AttributeName": "connectionId", "KeyType": "HASH"}])
    );
    assert_eq!(
        table["TimeToLiveSpecification"],
        json!({"AttributeName": "ttl", "Enabled": true})
    );
    let indexes: Vec<(&str, &str)> = table["GlobalSecondaryIndexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["IndexName"].as_str().unwrap(),
                i["KeySchema"][0]["AttributeName"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        indexes,
        [("userId-index", "userId"), ("tenantId-index", "tenantId")]
    );

    // Function: provided.al2023 on arm64 from the cargo lambda output, the sweeper schedule.
    let f = &t["Resources"]["Function"]["Properties"];
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Architectures"], json!(["arm64"]));
    assert_eq!(f["Handler"], "bootstrap");
    assert_eq!(f["CodeUri"], CODE_URI);
    assert_eq!(f["MemorySize"], 512);
    assert_eq!(f["Events"]["Sweeper"]["Type"], "Schedule");
    let vars = &f["Environment"]["Variables"];
    assert_eq!(vars["VK_WS_TABLE"], json!({"Ref": "ConnectionsTable"}));
    assert_eq!(
        vars["VK_WS_JWT_SECRET"],
        json!({"Fn::If": [
            "HasJwtSecretArn",
            {"Fn::Sub": "{{resolve:secretsmanager:${JwtSecretArn}:SecretString}}"},
            {"Fn::If": [
                "HasJwtSecretParameter",
                {"Fn::Sub": "{{resolve:ssm:${JwtSecretParameter}}}"},
                {"Ref": "JwtSecret"}
            ]}
        ]}),
        "secrets come from Secrets Manager, Parameter Store or a parameter, never literals"
    );
    assert_eq!(t["Parameters"]["JwtSecret"]["NoEcho"], true);

    // Least privilege: this table and its indexes; this API's stage.
    let statements = f["Policies"][0]["Statement"].as_array().unwrap();
    let dynamo = &statements[0];
    assert_eq!(
        dynamo["Resource"],
        json!([{"Fn::GetAtt": ["ConnectionsTable", "Arn"]}, {"Fn::Sub": "${ConnectionsTable.Arn}/index/*"}])
    );
    assert!(
        dynamo["Action"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.as_str().unwrap().starts_with("dynamodb:"))
    );
    assert!(!dynamo["Action"].to_string().contains('*'));
    let manage = &statements[1];
    assert_eq!(manage["Action"], json!(["execute-api:ManageConnections"]));
    let arn = manage["Resource"][0]["Fn::Sub"].as_str().unwrap();
    assert!(arn.contains("${WebSocketApi}/prod/"), "{arn}");

    // Spill-over fan-out: the queue and its dead-letter queue, the function as the queue's
    // event source (one segment per invocation, partial batch failures, MaximumConcurrency
    // from FanoutWorkers), the settings in the environment, and a send-only grant on the
    // queue (SAM adds the receive/delete grant for the event source on the same queue).
    let queue = &t["Resources"]["FanoutQueue"]["Properties"];
    assert_eq!(
        queue["RedrivePolicy"],
        json!({"deadLetterTargetArn": {"Fn::GetAtt": ["FanoutDeadLetterQueue", "Arn"]}, "maxReceiveCount": 5})
    );
    assert_eq!(
        queue["VisibilityTimeout"],
        6 * f["Timeout"].as_u64().unwrap()
    );
    assert_eq!(
        t["Resources"]["FanoutDeadLetterQueue"]["Type"],
        "AWS::SQS::Queue"
    );
    let source = &f["Events"]["Fanout"];
    assert_eq!(source["Type"], "SQS");
    assert_eq!(
        source["Properties"],
        json!({
            "Queue": {"Fn::GetAtt": ["FanoutQueue", "Arn"]},
            "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": {"Ref": "FanoutWorkers"}}
        })
    );
    for (var, parameter) in [
        ("VK_WS_FANOUT_QUEUE_URL", "FanoutQueue"),
        ("VK_WS_SPILL_THRESHOLD", "SpillThreshold"),
        ("VK_WS_FANOUT_RATE", "FanoutRate"),
        ("VK_WS_FANOUT_WORKERS", "FanoutWorkers"),
    ] {
        assert_eq!(vars[var], json!({"Ref": parameter}), "{var}");
    }
    assert_eq!(t["Parameters"]["SpillThreshold"]["Default"], 2000);
    assert_eq!(t["Parameters"]["FanoutWorkers"]["MinValue"], 2);
    let send = statements
        .iter()
        .find(|s| s["Sid"] == "FanoutQueueSend")
        .unwrap();
    assert_eq!(send["Action"], json!(["sqs:SendMessage"]));
    assert_eq!(
        send["Resource"],
        json!([{"Fn::GetAtt": ["FanoutQueue", "Arn"]}])
    );

    // Stage throttling and log retention from venturekit.toml.
    let stage = &t["Resources"]["Stage"]["Properties"];
    assert_eq!(stage["StageName"], "prod");
    assert_eq!(stage["DefaultRouteSettings"]["ThrottlingRateLimit"], 1000);
    assert_eq!(stage["DefaultRouteSettings"]["ThrottlingBurstLimit"], 2000);
    assert_eq!(
        t["Resources"]["FunctionLogs"]["Properties"]["RetentionInDays"],
        30
    );

    // A stack without any JWT configuration is refused at deploy time.
    let rule = &t["Rules"]["JwtConfigured"]["Assertions"][0];
    assert_eq!(
        rule["Assert"]["Fn::Or"].as_array().unwrap().len(),
        5,
        "{rule}"
    );

    // The chat's own state: the history table, its name in the environment, TTL, and a
    // policy granting only what the app calls on it.
    let history = &t["Resources"]["HistoryTable"]["Properties"];
    assert_eq!(
        history["KeySchema"],
        json!([{"AttributeName": "scope", "KeyType": "HASH"}, {"AttributeName": "at", "KeyType": "RANGE"}])
    );
    assert_eq!(
        history["TimeToLiveSpecification"],
        json!({"AttributeName": "ttl", "Enabled": true})
    );
    let function = &t["Resources"]["Function"]["Properties"];
    assert_eq!(
        function["Environment"]["Variables"]["CHAT_HISTORY_TABLE"],
        json!({"Ref": "HistoryTable"})
    );
    let statements = function["Policies"][0]["Statement"].as_array().unwrap();
    // Topics (the chat declares `room:*`): the table, its cleanup index, TTL and a grant.
    let topics = &t["Resources"]["TopicsTable"]["Properties"];
    assert_eq!(
        topics["KeySchema"],
        json!([{"AttributeName": "topic", "KeyType": "HASH"}, {"AttributeName": "connectionId", "KeyType": "RANGE"}])
    );
    assert_eq!(
        topics["GlobalSecondaryIndexes"][0]["IndexName"],
        "connectionId-index"
    );
    assert_eq!(topics["TimeToLiveSpecification"]["AttributeName"], "ttl");
    assert_eq!(
        function["Environment"]["Variables"]["VK_WS_TOPICS_TABLE"],
        json!({"Ref": "TopicsTable"})
    );
    let topics_grant = statements
        .iter()
        .find(|s| s["Sid"] == "TopicsTable")
        .unwrap();
    assert_eq!(
        topics_grant["Action"],
        json!([
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:BatchWriteItem"
        ])
    );
    let grant = statements
        .iter()
        .find(|s| s["Sid"] == "HistoryTable")
        .unwrap();
    assert_eq!(
        grant["Action"],
        json!(["dynamodb:PutItem", "dynamodb:Query"])
    );
    assert_eq!(
        grant["Resource"],
        json!([{"Fn::GetAtt": ["HistoryTable", "Arn"]}])
    );
}

fn cfn_lint() -> PathBuf {
    if let Ok(path) = std::env::var("VK_TEST_CFN_LINT") {
        return PathBuf::from(path);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/cfn-lint");
    assert!(
        local.exists(),
        "cfn-lint is needed: run scripts/test.sh (it installs it into .venv), or `pip install cfn-lint` and set VK_TEST_CFN_LINT"
    );
    local
}

#[test]
fn cfn_lint_finds_no_errors() {
    let out = std::process::Command::new(cfn_lint())
        .arg(committed("dev"))
        .arg(committed("prod"))
        .arg(committed("validated"))
        .output()
        .expect("running cfn-lint failed");
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn template_errors_are_precise() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["template", "--env", "staging"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no environment `staging`; defined: `bench`, `dev`, `prod`, `validated`"),
        "{stderr}"
    );
}

#[test]
fn request_validation_adds_a_validated_route_per_action_with_a_draft_04_model() {
    let app = chat::app().unwrap();
    let plain = app.template_value("prod", CODE_URI).unwrap();
    assert!(
        resources_of_type(&plain, "AWS::ApiGatewayV2::Model").is_empty(),
        "off by default"
    );
    let t = app.template_value("validated", CODE_URI).unwrap();
    let models = resources_of_type(&t, "AWS::ApiGatewayV2::Model");
    let actions = [
        "auth",
        "ping",
        "vk:join",
        "vk:leave",
        "broadcast",
        "history",
        "kick",
        "say",
        "send",
    ];
    assert_eq!(models.len(), actions.len());
    let routes: Vec<_> = resources_of_type(&t, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["RequestModels"].is_object())
        .collect();
    for action in actions {
        let (name, route) = routes
            .iter()
            .find(|(_, r)| r["Properties"]["RouteKey"] == action)
            .unwrap_or_else(|| panic!("no validated route for {action}"));
        let model = route["Properties"]["RequestModels"]["$default"]
            .as_str()
            .unwrap();
        assert_eq!(route["Properties"]["ModelSelectionExpression"], "$default");
        let schema = &t["Resources"][model]["Properties"]["Schema"];
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
        assert_eq!(
            schema["properties"]["action"]["enum"],
            json!([action]),
            "{name}"
        );
        assert!(
            t["Resources"]["Deployment"]["DependsOn"]
                .as_array()
                .unwrap()
                .contains(&json!(name)),
            "the deployment waits for {name}"
        );
        // draft-04 has no `const`.
        assert!(!schema.to_string().contains("\"const\""), "{schema}");
        // Its replies travel back in the response too.
        assert_eq!(
            route["Properties"]["RouteResponseSelectionExpression"],
            "$default"
        );
        let response = &t["Resources"][format!("{name}Response")]["Properties"];
        assert_eq!(response["RouteId"], json!({"Ref": name}), "{name}");
        assert_eq!(response["RouteResponseKey"], "$default");
    }
}
