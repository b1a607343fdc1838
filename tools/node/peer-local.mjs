// A Node.js peer for the local-server benchmark: a minimal WebSocket server on the `ws`
// package that speaks the same protocol as the chat example where the load test needs it
// (auth with an HS256 JWT, then `broadcast` to every authenticated connection of the
// sender's tenant scope, as `{"action":"message","from":…,"data":…}`, and `send` to every
// connection of one user in that scope, answered with `{"action":"send","delivered":N}`). It
// keeps what a Node implementation keeps per connection: the socket, the user and the tenant,
// and an index of the connections by user.
//
//   VK_WS_JWT_SECRET=… node tools/node/peer-local.mjs      # prints ws://127.0.0.1:PORT
//   target/release/vk-loadtest ws://127.0.0.1:PORT <pid> 10000
//
// scripts/bench-local.sh runs it side by side with the Rust server.
import { verifyHs256 } from './hs256.mjs';
import { WebSocketServer } from 'ws';

const secret = process.env.VK_WS_JWT_SECRET;
if (!secret) {
  console.error('VK_WS_JWT_SECRET is required');
  process.exit(1);
}

const verify = (token) => verifyHs256(token, secret);

const connections = new Map();
const byUser = new Map(); // user id -> Set of its connections
let nextId = 0;
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(process.env.PORT || 0),
  maxPayload: 128 * 1024,
  perMessageDeflate: false,
});

wss.on('connection', (ws) => {
  const id = (nextId++).toString(36);
  const connection = { ws, user: null, tenant: null };
  connections.set(id, connection);
  ws.on('message', (data, isBinary) => {
    let message;
    try {
      message = JSON.parse(isBinary ? '' : data.toString());
    } catch {
      ws.send(JSON.stringify({ action: 'error', code: 'bad_request', message: 'malformed JSON' }));
      return;
    }
    if (message.action === 'auth') {
      const claims = verify(message.token);
      if (!claims) {
        ws.send(JSON.stringify({ action: 'auth', success: false, code: 'invalid_token' }));
        return;
      }
      connection.user = claims.sub;
      if (!byUser.has(claims.sub)) byUser.set(claims.sub, new Set());
      byUser.get(claims.sub).add(connection);
      ws.send(JSON.stringify({ action: 'auth', success: true, userId: claims.sub, tenantId: null }));
      return;
    }
    if (!connection.user) {
      ws.send(JSON.stringify({ action: 'error', code: 'unauthorized' }));
      return;
    }
    if (message.action === 'broadcast') {
      const frame = JSON.stringify({ action: 'message', from: connection.user, data: message.data });
      for (const other of connections.values()) {
        if (other.user && other.tenant === connection.tenant) other.ws.send(frame);
      }
      return;
    }
    if (message.action === 'send' && typeof message.to === 'string') {
      const frame = JSON.stringify({ action: 'message', from: connection.user, data: message.data });
      let delivered = 0;
      for (const other of byUser.get(message.to) ?? []) {
        if (other.tenant === connection.tenant) {
          other.ws.send(frame);
          delivered += 1;
        }
      }
      ws.send(JSON.stringify({ action: 'send', delivered }));
      return;
    }
    ws.send(JSON.stringify({ action: 'error', code: 'unknown_action' }));
  });
  ws.on('close', () => {
    connections.delete(id);
    const mine = connection.user && byUser.get(connection.user);
    if (mine) {
      mine.delete(connection);
      if (mine.size === 0) byUser.delete(connection.user);
    }
  });
});

wss.on('listening', () => {
  console.log(`ws://127.0.0.1:${wss.address().port}`);
});
