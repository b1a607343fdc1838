// Drives the generated TypeScript client (compiled to JavaScript) under Node against a
// running chat server, through every chat action: auth, broadcast (a pushed `message`),
// send, history, kick (`forbidden`, then as an admin), rooms (vk:join, say, presence),
// a `bad_request`, and two requests in flight resolved by their `ref`.
//
// Environment: VK_CLIENT_JS (path of the compiled client.js), VK_URL (ws://…),
// VK_TOKEN_ALICE, VK_TOKEN_BOB, VK_TOKEN_ANN (an admin); all in tenant acme.
import WebSocket from "ws";
import { pathToFileURL } from "node:url";

const { connect, VkError } = await import(pathToFileURL(process.env.VK_CLIENT_JS).href);
const url = process.env.VK_URL;
const fail = (message) => {
  console.error(`e2e: ${message}`);
  process.exit(1);
};
const check = (condition, message) => {
  if (!condition) fail(message);
};
const timer = setTimeout(() => fail("timed out after 20 s"), 20000);

const alice = await connect(url, { WebSocket, timeoutMs: 5000 });
const bob = await connect(url, { WebSocket, timeoutMs: 5000 });
const ann = await connect(url, { WebSocket, timeoutMs: 5000 });

const me = await alice.auth(process.env.VK_TOKEN_ALICE);
check(me.userId === "alice" && me.tenantId === "acme", `auth: ${JSON.stringify(me)}`);
await bob.auth(process.env.VK_TOKEN_BOB);
await ann.auth(process.env.VK_TOKEN_ANN, "acme");

// A pushed frame, typed through `on`.
const heard = new Promise((resolve) => {
  const off = bob.on("message", (frame) => {
    off();
    resolve(frame);
  });
});
const ok = await alice.request("broadcast", { data: { text: "hi" } });
check(ok.ok === true && typeof ok.ref === "string", `broadcast reply: ${JSON.stringify(ok)}`);
const pushed = await heard;
check(pushed.from === "alice" && pushed.data.text === "hi", `pushed: ${JSON.stringify(pushed)}`);

// Two requests in flight: each promise gets the reply carrying its own `ref`.
const [sent, history] = await Promise.all([
  alice.request("send", { to: "bob", data: 1 }),
  alice.request("history", {}),
]);
check(sent.action === "send" && sent.delivered === 1, `send: ${JSON.stringify(sent)}`);
check(history.action === "history" && history.messages.length === 1, `history: ${JSON.stringify(history)}`);
check(sent.ref !== history.ref, "two requests, two refs");

// Errors are typed rejections.
try {
  await alice.request("send", { to: 7, data: 1 });
  fail("a message of the wrong type was accepted");
} catch (error) {
  check(error instanceof VkError && error.code === "bad_request", `bad_request: ${error}`);
}
try {
  await bob.request("kick", { userId: "alice" });
  fail("a kick without the admin role was accepted");
} catch (error) {
  check(error instanceof VkError && error.code === "forbidden", `forbidden: ${error}`);
}
const kicked = await ann.request("kick", { userId: "nobody" });
check(kicked.closed === 0, `kick: ${JSON.stringify(kicked)}`);

// Rooms: join with presence, say to the members.
const state = new Promise((resolve) => alice.on("vk:presence_state", resolve));
const joined = await alice.join("room:1", { device: "node" });
check(joined.ok === true && joined.topic === "room:1", `join: ${JSON.stringify(joined)}`);
const presences = (await state).presences;
check(presences.alice.metas[0].device === "node", `presence: ${JSON.stringify(presences)}`);
const said = await alice.request("say", { room: "room:1", data: "x" });
check(said.delivered === 1, `say: ${JSON.stringify(said)}`);
await alice.leave("room:1");

const pong = await alice.request("ping", {});
check(pong.action === "pong", `ping: ${JSON.stringify(pong)}`);

for (const client of [alice, bob, ann]) client.close();
clearTimeout(timer);
console.log("e2e: every chat action passed through the generated client");
