//! The AWS SAM template generated from one environment of `venturekit.toml`.
//!
//! One Lambda function serves `$connect`, `$disconnect` and `$default`; the DynamoDB table
//! is the connections table of the protocol reference; an EventBridge schedule runs the sweeper; IAM is scoped to this
//! table (and its indexes) and to this API's stage; the JWT configuration comes from
//! parameters, never literals.

use super::{AppTable, EnvConfig};
use serde_json::{Value, json};

fn sub(text: &str) -> Value {
    json!({ "Fn::Sub": text })
}

fn reference(name: &str) -> Value {
    json!({ "Ref": name })
}

fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

fn route(key: &str) -> Value {
    json!({
        "Type": "AWS::ApiGatewayV2::Route",
        "Properties": {
            "ApiId": reference("WebSocketApi"),
            "RouteKey": key,
            "AuthorizationType": "NONE",
            "Target": sub("integrations/${Integration}"),
        }
    })
}

/// A route that carries client messages: its integration's response body (the reply) is
/// sent back to the client through a route response (`$default` selection).
fn message_route(key: &str) -> Value {
    let mut route = route(key);
    route["Properties"]["RouteResponseSelectionExpression"] = json!("$default");
    route
}

/// A `$default` route response for each message route (`VK_WS_ROUTE_RESPONSE`); returns
/// their logical ids.
fn add_route_responses(resources: &mut Value, routes: &[&str]) -> Vec<String> {
    routes
        .iter()
        .map(|route| {
            let id = format!("{route}Response");
            resources[&id] = json!({
                "Type": "AWS::ApiGatewayV2::RouteResponse",
                "Properties": {
                    "ApiId": reference("WebSocketApi"),
                    "RouteId": reference(route),
                    "RouteResponseKey": "$default"
                }
            });
            id
        })
        .collect()
}

/// Rewrites a draft-07 schema as draft-04, the dialect of API Gateway models: `const`
/// becomes a one-value `enum`; `$schema` is set to draft-04.
pub(crate) fn draft04(schema: &Value) -> Value {
    fn rewrite(value: &Value) -> Value {
        match value {
            Value::Object(object) => {
                let mut out = serde_json::Map::new();
                for (key, value) in object {
                    match key.as_str() {
                        "const" => {
                            out.insert("enum".into(), Value::Array(vec![value.clone()]));
                        }
                        "$schema" | "examples" => {}
                        // Property names are data, not keywords.
                        "properties" => {
                            let properties = value
                                .as_object()
                                .map(|p| {
                                    p.iter()
                                        .map(|(name, schema)| (name.clone(), rewrite(schema)))
                                        .collect()
                                })
                                .unwrap_or_default();
                            out.insert(key.clone(), Value::Object(properties));
                        }
                        _ => {
                            out.insert(key.clone(), rewrite(value));
                        }
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(rewrite).collect()),
            other => other.clone(),
        }
    }
    let mut schema = rewrite(schema);
    if let Value::Object(object) = &mut schema {
        object.insert(
            "$schema".into(),
            "http://json-schema.org/draft-04/schema#".into(),
        );
    }
    schema
}

/// A route per action whose message API Gateway validates against a model, before the
/// function runs (`websocket.validateRequests`).
fn add_request_models(resources: &mut Value, models: &[(String, Value)]) -> Vec<String> {
    let mut routes = Vec::new();
    for (action, schema) in models {
        let id: String = action
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let model = format!("{id}Model");
        let route = format!("{id}Route");
        resources[&model] = json!({
            "Type": "AWS::ApiGatewayV2::Model",
            "Properties": {
                "ApiId": reference("WebSocketApi"),
                "ContentType": "application/json",
                "Name": model,
                "Description": format!("The `{action}` message"),
                "Schema": draft04(schema)
            }
        });
        let mut definition = message_route(action);
        definition["Properties"]["ModelSelectionExpression"] = json!("$default");
        definition["Properties"]["RequestModels"] = json!({ "$default": model });
        definition["DependsOn"] = json!([model]);
        resources[&route] = definition;
        routes.push(route);
    }
    routes
}

/// A template as the text written to disk: pretty-printed JSON and a final newline.
pub fn to_text(template: &Value) -> String {
    // Serializing a JSON value cannot fail.
    let mut text = serde_json::to_string_pretty(template).unwrap_or_default();
    text.push('\n');
    text
}

/// The SAM template of `env` (CloudFormation's JSON form). `app` prefixes resource names,
/// `binary` is the cargo binary, `code_uri` the `cargo lambda build` output directory relative
/// to where the template will be; `tables` are the app's own tables, and `topics` adds the
/// topics table.
pub fn template_value(
    app: &str,
    binary: &str,
    env: &EnvConfig,
    code_uri: &str,
    tables: &[AppTable],
    topics: bool,
    models: &[(String, Value)],
) -> Value {
    let stage = &env.name;
    let ws = &env.websocket;
    let parameters = json!({
        "JwtSecret": {
            "Type": "String", "NoEcho": true, "Default": "",
            "Description": "HS256 shared secret (VK_WS_JWT_SECRET) as plain text; prefer JwtSecretArn or JwtSecretParameter. Set exactly one of JwtSecret, JwtSecretArn, JwtSecretParameter, JwtPublicKey, JwksUrl."
        },
        "JwtSecretArn": {"Type": "String", "Default": "", "Description": "Name or ARN of a Secrets Manager secret whose SecretString is the HS256 secret; CloudFormation resolves it at deploy time (redeploy after rotating)."},
        "JwtSecretParameter": {"Type": "String", "Default": "", "Description": "Name of an SSM Parameter Store String parameter holding the HS256 secret (SecureString parameters cannot feed Lambda environment variables; use JwtSecretArn for encryption at rest)."},
        "JwtPublicKey": {"Type": "String", "Default": "", "Description": "PEM public key for RS256/ES256/EdDSA (VK_WS_JWT_PUBLIC_KEY)."},
        "JwksUrl": {"Type": "String", "Default": "", "Description": "JWKS endpoint, e.g. Cognito's https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json (VK_WS_JWKS_URL)."},
        "JwtIssuer": {"Type": "String", "Default": "", "Description": "Required iss claim (VK_WS_JWT_ISSUER)."},
        "JwtAudience": {"Type": "String", "Default": "", "Description": "Required aud claim, or Cognito app client id (VK_WS_JWT_AUDIENCE)."},
        "JwtTokenUse": {"Type": "String", "Default": "", "AllowedValues": ["", "id", "access"], "Description": "Required Cognito token_use (VK_WS_JWT_TOKEN_USE)."},
        "TenantClaim": {"Type": "String", "Default": "tenantId", "Description": "Claim listing the tenants a token may join (VK_WS_TENANT_CLAIM)."},
        "SpillThreshold": {"Type": "Number", "Default": crate::fanout::DEFAULT_SPILL_THRESHOLD, "MinValue": 1, "MaxValue": 1_000_000, "Description": "A broadcast or topic publish to more connections than this is split into segments on the fan-out queue (VK_WS_SPILL_THRESHOLD)."},
        "FanoutRate": {"Type": "Number", "Default": crate::fanout::DEFAULT_FANOUT_RATE, "MinValue": 1, "MaxValue": 1_000_000, "Description": "Management API posts per second that all fan-out workers share (VK_WS_FANOUT_RATE); keep it below the account's API Gateway rate (10,000/s by default)."},
        "FanoutWorkers": {"Type": "Number", "Default": crate::fanout::DEFAULT_FANOUT_WORKERS, "MinValue": 2, "MaxValue": 1000, "Description": "Most fan-out worker invocations at once: the queue's MaximumConcurrency (VK_WS_FANOUT_WORKERS)."}
    });
    let environment = json!({
        "VK_WS_ENV": stage,
        "VK_WS_TABLE": reference("ConnectionsTable"),
        "VK_WS_MANAGEMENT_ENDPOINT": sub(&format!("https://${{WebSocketApi}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}")),
        // The secret from Secrets Manager, else from Parameter Store, else the plain parameter.
        "VK_WS_JWT_SECRET": {"Fn::If": [
            "HasJwtSecretArn",
            sub("{{resolve:secretsmanager:${JwtSecretArn}:SecretString}}"),
            {"Fn::If": [
                "HasJwtSecretParameter",
                sub("{{resolve:ssm:${JwtSecretParameter}}}"),
                reference("JwtSecret")
            ]}
        ]},
        "VK_WS_JWT_PUBLIC_KEY": reference("JwtPublicKey"),
        "VK_WS_JWKS_URL": reference("JwksUrl"),
        "VK_WS_JWT_ISSUER": reference("JwtIssuer"),
        "VK_WS_JWT_AUDIENCE": reference("JwtAudience"),
        "VK_WS_JWT_TOKEN_USE": reference("JwtTokenUse"),
        "VK_WS_TENANT_CLAIM": reference("TenantClaim"),
        "VK_WS_FANOUT_QUEUE_URL": reference("FanoutQueue"),
        "VK_WS_SPILL_THRESHOLD": reference("SpillThreshold"),
        // The message routes have route responses (below): replies travel back in the
        // function's response instead of a management API call each.
        "VK_WS_ROUTE_RESPONSE": "true",
        // For binaries on mimalloc (the chat example, the app template): commit its memory
        // arena as pages are used rather than all at start, 0.6 ms less cold start.
        // Ignored by any other allocator.
        "MIMALLOC_ARENA_EAGER_COMMIT": "0",
        "VK_WS_FANOUT_RATE": reference("FanoutRate"),
        "VK_WS_FANOUT_WORKERS": reference("FanoutWorkers"),
        "RUST_LOG": "info"
    });
    let table_arn = get_att("ConnectionsTable", "Arn");
    let resources: Value = json!({
        "ConnectionsTable": {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "connectionId", "AttributeType": "S"},
                    {"AttributeName": "userId", "AttributeType": "S"},
                    {"AttributeName": "tenantId", "AttributeType": "S"}
                ],
                "KeySchema": [{"AttributeName": "connectionId", "KeyType": "HASH"}],
                "GlobalSecondaryIndexes": [
                    {"IndexName": "userId-index", "KeySchema": [{"AttributeName": "userId", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}},
                    {"IndexName": "tenantId-index", "KeySchema": [{"AttributeName": "tenantId", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}
                ],
                "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": true}
            }
        },
        "WebSocketApi": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": format!("{app}-{stage}"),
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": ws.route_selection_expression
            }
        },
        "Function": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Description": format!("venturekit-ws {app} ({stage})"),
                "CodeUri": code_uri,
                "Handler": "bootstrap",
                "Runtime": "provided.al2023",
                "Architectures": [env.lambda.architecture],
                "MemorySize": env.lambda.memory_mb,
                "Timeout": env.lambda.timeout_sec,
                "Environment": {"Variables": environment},
                "Policies": [{
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ConnectionsTable",
                            "Effect": "Allow",
                            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan"],
                            "Resource": [table_arn, sub("${ConnectionsTable.Arn}/index/*")]
                        },
                        {
                            "Sid": "ManageConnections",
                            "Effect": "Allow",
                            "Action": ["execute-api:ManageConnections"],
                            "Resource": [sub(&format!("arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/{stage}/*/@connections/*"))]
                        },
                        {
                            "Sid": "FanoutQueueSend",
                            "Effect": "Allow",
                            "Action": ["sqs:SendMessage"],
                            "Resource": [get_att("FanoutQueue", "Arn")]
                        }
                    ]
                }],
                "Events": {
                    "Sweeper": {
                        "Type": "Schedule",
                        "Properties": {"Schedule": env.sweeper_schedule, "Description": "Closes connections whose auth window passed"}
                    },
                    // Spilled fan-out segments, one per invocation, at most FanoutWorkers at
                    // once; the function answers with partial batch failures.
                    "Fanout": {
                        "Type": "SQS",
                        "Properties": {
                            "Queue": get_att("FanoutQueue", "Arn"),
                            "BatchSize": 1,
                            "FunctionResponseTypes": ["ReportBatchItemFailures"],
                            "ScalingConfig": {"MaximumConcurrency": reference("FanoutWorkers")}
                        }
                    }
                }
            }
        },
        "FanoutQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                // Six times the function timeout, as AWS advises for a Lambda event source.
                "VisibilityTimeout": env.lambda.timeout_sec.saturating_mul(6).min(43_200),
                // A fan-out still queued after an hour is news nobody wants any more.
                "MessageRetentionPeriod": 3600,
                "SqsManagedSseEnabled": true,
                "RedrivePolicy": {
                    "deadLetterTargetArn": get_att("FanoutDeadLetterQueue", "Arn"),
                    "maxReceiveCount": 5
                }
            }
        },
        "FanoutDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "MessageRetentionPeriod": 1_209_600,
                "SqsManagedSseEnabled": true
            }
        },
        "FunctionLogs": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/aws/lambda/${Function}"),
                "RetentionInDays": env.log_retention_days
            }
        },
        "Integration": {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": reference("WebSocketApi"),
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": sub("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Function.Arn}/invocations")
            }
        },
        "ConnectRoute": route("$connect"),
        "DisconnectRoute": route("$disconnect"),
        "DefaultRoute": message_route("$default"),
        "Deployment": {
            "Type": "AWS::ApiGatewayV2::Deployment",
            "DependsOn": ["ConnectRoute", "DisconnectRoute", "DefaultRoute"],
            "Properties": {"ApiId": reference("WebSocketApi")}
        },
        "Stage": {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Properties": {
                "ApiId": reference("WebSocketApi"),
                "StageName": stage,
                "DeploymentId": reference("Deployment"),
                "DefaultRouteSettings": {
                    "ThrottlingRateLimit": ws.throttle_rate_limit,
                    "ThrottlingBurstLimit": ws.throttle_burst_limit
                }
            }
        },
        "InvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": reference("Function"),
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*")
            }
        }
    });
    let mut resources = resources;
    for table in tables {
        add_app_table(&mut resources, table);
    }
    if topics {
        add_topics_table(&mut resources);
    }
    let routes = add_request_models(&mut resources, models);
    let message_routes: Vec<&str> = std::iter::once("DefaultRoute")
        .chain(routes.iter().map(String::as_str))
        .collect();
    let responses = add_route_responses(&mut resources, &message_routes);
    if let Some(Value::Array(depends)) = resources["Deployment"].get_mut("DependsOn") {
        depends.extend(routes.into_iter().chain(responses).map(Value::String));
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": format!("venturekit-ws: {app} ({stage}), generated by `cargo run -p {binary} -- template --env {stage}`; do not edit"),
        "Parameters": parameters,
        "Conditions": {
            "HasJwtSecretArn": {"Fn::Not": [{"Fn::Equals": [reference("JwtSecretArn"), ""]}]},
            "HasJwtSecretParameter": {"Fn::Not": [{"Fn::Equals": [reference("JwtSecretParameter"), ""]}]}
        },
        // A stack without any JWT configuration would deploy and then refuse every
        // connection at runtime: refuse it at deploy time instead.
        "Rules": {
            "JwtConfigured": {
                "Assertions": [{
                    "Assert": {"Fn::Or": [
                        {"Fn::Not": [{"Fn::Equals": [reference("JwtSecret"), ""]}]},
                        {"Fn::Not": [{"Fn::Equals": [reference("JwtSecretArn"), ""]}]},
                        {"Fn::Not": [{"Fn::Equals": [reference("JwtSecretParameter"), ""]}]},
                        {"Fn::Not": [{"Fn::Equals": [reference("JwtPublicKey"), ""]}]},
                        {"Fn::Not": [{"Fn::Equals": [reference("JwksUrl"), ""]}]}
                    ]},
                    "AssertDescription": "Set one of JwtSecretArn, JwtSecretParameter, JwtSecret, JwtPublicKey or JwksUrl: without one, the function refuses to start."
                }]
            }
        },
        "Resources": resources,
        "Outputs": {
            "WebSocketUrl": {"Description": "Connect clients here", "Value": sub(&format!("wss://${{WebSocketApi}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}"))},
            "ManagementEndpoint": {"Description": "VK_WS_MANAGEMENT_ENDPOINT for out-of-band sends", "Value": sub(&format!("https://${{WebSocketApi}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}"))},
            "ConnectionsTableName": {"Description": "VK_WS_TABLE", "Value": reference("ConnectionsTable")},
            "FanoutQueueUrl": {"Description": "VK_WS_FANOUT_QUEUE_URL: where large fan-outs spill", "Value": reference("FanoutQueue")},
            "FanoutDeadLetterQueueUrl": {"Description": "Fan-out segments that failed five times (inspect, then redrive)", "Value": reference("FanoutDeadLetterQueue")}
        }
    })
}

/// Adds an app-owned table: the resource, its name in the function's environment, and a
/// policy statement granting exactly its declared actions.
fn add_app_table(resources: &mut Value, table: &AppTable) {
    let id = &table.logical_id;
    let mut attributes = vec![json!({"AttributeName": table.partition_key, "AttributeType": "S"})];
    let mut keys = vec![json!({"AttributeName": table.partition_key, "KeyType": "HASH"})];
    if let Some(sort) = &table.sort_key {
        attributes.push(json!({"AttributeName": sort, "AttributeType": "S"}));
        keys.push(json!({"AttributeName": sort, "KeyType": "RANGE"}));
    }
    let mut properties = json!({
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": attributes,
        "KeySchema": keys
    });
    if let Some(ttl) = &table.ttl_attribute {
        properties["TimeToLiveSpecification"] = json!({"AttributeName": ttl, "Enabled": true});
    }
    resources[id.as_str()] = json!({
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": properties
    });
    let function = &mut resources["Function"]["Properties"];
    function["Environment"]["Variables"][table.env_var.as_str()] = reference(id);
    if let Some(statements) = function["Policies"][0]["Statement"].as_array_mut() {
        statements.push(json!({
            "Sid": id,
            "Effect": "Allow",
            "Action": table.actions,
            "Resource": [get_att(id, "Arn")]
        }));
    }
}

/// Adds the topics table (`VK_WS_TOPICS_TABLE`): keys `topic` + `connectionId`, the
/// `connectionId-index` GSI for cleanup, TTL, and a grant of exactly what the runtime calls.
fn add_topics_table(resources: &mut Value) {
    resources["TopicsTable"] = json!({
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "topic", "AttributeType": "S"},
                {"AttributeName": "connectionId", "AttributeType": "S"}
            ],
            "KeySchema": [
                {"AttributeName": "topic", "KeyType": "HASH"},
                {"AttributeName": "connectionId", "KeyType": "RANGE"}
            ],
            "GlobalSecondaryIndexes": [
                {"IndexName": "connectionId-index", "KeySchema": [{"AttributeName": "connectionId", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}
            ],
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": true}
        }
    });
    let function = &mut resources["Function"]["Properties"];
    function["Environment"]["Variables"]["VK_WS_TOPICS_TABLE"] = reference("TopicsTable");
    if let Some(statements) = function["Policies"][0]["Statement"].as_array_mut() {
        statements.push(json!({
            "Sid": "TopicsTable",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchWriteItem"],
            "Resource": [get_att("TopicsTable", "Arn"), sub("${TopicsTable.Arn}/index/*")]
        }));
    }
}
