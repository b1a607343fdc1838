// A Node.js peer of the chat example's Lambda path, for the CPU-per-message benchmark: a
// custom-runtime loop (the Runtime API over HTTP, as AWS's own Node.js runtime does it) and the
// AWS SDK for JavaScript v3, doing for `$connect`, `auth` and `send` what the Rust function does
// with the same table:
//   $connect  PutItem of an unauthenticated record (30 s)
//   auth      HS256 JWT check, UpdateItem to authenticated (2 h), reply in the response
//   send      the rate counter and the guard's read in one conditional UpdateItem (ALL_NEW),
//             a Query of the recipient's connections (userId-index) in the caller's tenant,
//             one PostToConnection per live one, the count in the response (route response)
// It is the path measured, not a framework: anything else gets an `unknown_action` reply.
//
//   scripts/bench-lambda.sh 1000 3 --node     # side by side with the Rust function
//   target/release/vk-lambdacpu tools/node/lambda/bootstrap 1000
//
// Environment (set by vk-lambdacpu): AWS_LAMBDA_RUNTIME_API, VK_WS_TABLE, VK_WS_JWT_SECRET,
// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI, AWS_REGION and
// credentials, VK_WS_RATE_LIMIT_PER_SEC / VK_WS_RATE_LIMIT_BURST.
import { verifyHs256 } from '../hs256.mjs';
import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';

const env = process.env;
const api = `http://${env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime`;
const table = env.VK_WS_TABLE;
const secret = env.VK_WS_JWT_SECRET;
const rate = Number(env.VK_WS_RATE_LIMIT_PER_SEC ?? 20);
const burst = Number(env.VK_WS_RATE_LIMIT_BURST ?? 40);
const windowMs = Math.max(1, Math.round((burst / Math.max(rate, 1)) * 1000));

const dynamo = new DynamoDBClient({ endpoint: env.AWS_ENDPOINT_URL_DYNAMODB });
const management = new ApiGatewayManagementApiClient({
  endpoint: env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI,
});

const nowSecs = () => Math.floor(Date.now() / 1000);

const verify = (token) => verifyHs256(token, secret);

const reply = (body) => ({ statusCode: 200, body: JSON.stringify(body) });
const error = (action, code) => reply({ action: 'error', requestAction: action, error: { code } });

// The window this process last counted per connection: which conditional write to try first.
const windows = new Map();

// Counts the message in the current window and returns the record (null: no live record).
async function countAndGet(connectionId) {
  const window = Math.floor(Date.now() / windowMs) * windowMs;
  const write = (condition, update) =>
    dynamo.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { connectionId: { S: connectionId } },
        ConditionExpression: condition,
        UpdateExpression: update,
        ExpressionAttributeNames: { '#ttl': 'ttl' },
        ExpressionAttributeValues: {
          ':now': { N: String(nowSecs()) },
          ':w': { N: String(window) },
          ':one': { N: '1' },
        },
        ReturnValues: 'ALL_NEW',
      }),
    );
  const same = () =>
    write('attribute_exists(connectionId) AND #ttl > :now AND rateWindow = :w', 'ADD rateCount :one');
  const fresh = () =>
    write(
      'attribute_exists(connectionId) AND #ttl > :now AND (attribute_not_exists(rateWindow) OR rateWindow <> :w)',
      'SET rateWindow = :w, rateCount = :one',
    );
  const order = windows.get(connectionId) === window ? [same, fresh] : [fresh, same];
  for (const attempt of order) {
    try {
      const out = await attempt();
      windows.set(connectionId, window);
      return out.Attributes;
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
    }
  }
  return null;
}

async function onConnect(connectionId, connectedAt) {
  await dynamo.send(
    new PutItemCommand({
      TableName: table,
      Item: {
        connectionId: { S: connectionId },
        authenticated: { BOOL: false },
        connectedAt: { N: String(connectedAt) },
        ttl: { N: String(nowSecs() + 30) },
      },
    }),
  );
  return { statusCode: 200 };
}

async function onAuth(connectionId, message) {
  const claims = verify(message.token);
  if (!claims) return error('auth', 'invalid_token');
  const names = { '#ttl': 'ttl' };
  const values = {
    ':t': { BOOL: true },
    ':u': { S: claims.sub },
    ':ttl': { N: String(nowSecs() + 7200) },
  };
  let update = 'SET authenticated = :t, userId = :u, #ttl = :ttl';
  if (typeof claims.tenantId === 'string') {
    update += ', tenantId = :tenant';
    values[':tenant'] = { S: claims.tenantId };
  }
  await dynamo.send(
    new UpdateItemCommand({
      TableName: table,
      Key: { connectionId: { S: connectionId } },
      ConditionExpression: 'attribute_exists(connectionId)',
      UpdateExpression: update,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    }),
  );
  return reply({ action: 'auth_ok', userId: claims.sub, connectionId });
}

async function onSend(connectionId, message) {
  const record = await countAndGet(connectionId);
  if (!record || !record.authenticated?.BOOL) return error('send', 'unauthorized');
  if (Number(record.rateCount?.N ?? 0) > burst) return error('send', 'rate_limited');
  const from = record.userId.S;
  const tenant = record.tenantId?.S;
  const found = await dynamo.send(
    new QueryCommand({
      TableName: table,
      IndexName: 'userId-index',
      KeyConditionExpression: 'userId = :u',
      ExpressionAttributeValues: { ':u': { S: String(message.to) } },
    }),
  );
  const now = nowSecs();
  const targets = (found.Items ?? []).filter(
    (item) =>
      item.authenticated?.BOOL &&
      Number(item.ttl?.N ?? 0) > now &&
      item.tenantId?.S === tenant,
  );
  const data = Buffer.from(JSON.stringify({ action: 'message', from, data: message.data }));
  let delivered = 0;
  for (const item of targets) {
    try {
      await management.send(
        new PostToConnectionCommand({ ConnectionId: item.connectionId.S, Data: data }),
      );
      delivered += 1;
    } catch (e) {
      if (e.name !== 'GoneException') throw e;
    }
  }
  return reply({ action: 'send', delivered });
}

async function handle(event) {
  const context = event.requestContext ?? {};
  const connectionId = context.connectionId;
  switch (context.routeKey) {
    case '$connect':
      return onConnect(connectionId, context.connectedAt ?? Date.now());
    case '$disconnect':
      return { statusCode: 200 };
    default: {
      let message;
      try {
        message = JSON.parse(event.body ?? '');
      } catch {
        return error(null, 'bad_request');
      }
      if (message.action === 'auth') return onAuth(connectionId, message);
      if (message.action === 'send') return onSend(connectionId, message);
      return error(message.action ?? null, 'unknown_action');
    }
  }
}

for (;;) {
  const next = await fetch(`${api}/invocation/next`);
  const requestId = next.headers.get('lambda-runtime-aws-request-id');
  const event = await next.json();
  let path = 'response';
  let body;
  try {
    body = await handle(event);
  } catch (e) {
    path = 'error';
    body = { errorType: e.name ?? 'Error', errorMessage: String(e.message ?? e) };
  }
  await fetch(`${api}/invocation/${requestId}/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}
