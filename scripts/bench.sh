#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md on this machine. Loopback only; every loop is
# bounded. Usage: scripts/bench.sh [--quick]   (--quick: fewer samples, 2,000 connections)
# Another implementation can be measured with the same tools for a side-by-side figure:
#   target/release/vk-coldstart --runs 30 [--env K=V ...] -- <command> [args ...]
#   target/release/vk-loadtest ws://127.0.0.1:PORT <server pid> 10000
#   target/release/vk-sendfloor 10000
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
connections=10000
runs=30
if [ "$quick" = "--quick" ]; then connections=2000; runs=10; fi

echo "== machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(rustc --version)"

cargo build --release -p chat -p venturekit-ws-tests --bins

echo "== cold start and size (release profile of the workspace: opt-level=s, lto=fat, codegen-units=1, strip)"
# `cargo lambda build --release` uses the same profile; this is the same binary, linked for
# this machine.
# The chat needs its history and topics table names on Lambda (nothing is called at init).
target/release/vk-coldstart --runs "$runs" --env CHAT_HISTORY_TABLE=history --env VK_WS_TOPICS_TABLE=topics -- target/release/chat

echo "== CPU per send on Lambda: 1,000 invocations through a Runtime API stand-in (DynamoDB: moto)"
cpumoto=$(mktemp)
VK_TEST_MOTO_ENDPOINT=$(scripts/moto.sh "$cpumoto") target/release/vk-lambdacpu target/release/chat 1000 2>/dev/null
kill "$(cat "$cpumoto")" 2>/dev/null || true

echo "== criterion: dispatch and auth"
cargo bench -p venturekit-ws-tests --bench dispatch --bench auth --bench kit -- --noplot 2>&1 | grep -E "^[a-z_]+/|time:|thrpt:" || true

echo "== criterion: fan-out through the management API client (loopback HTTP server)"
cargo bench -p venturekit-ws-tests --bench fanout -- --noplot 2>&1 | grep -E "^[a-z_]+/|time:|thrpt:" || true

echo "== fan-out rate and peak memory, one process per case"
target/release/vk-fanout --runs "$(( runs < 10 ? 3 : 5 ))"

echo "== local server scale: $connections connections"
ulimit -n "$(ulimit -Hn)"
# Port 0: a fixed port can collide with the TIME-WAIT leftovers of an earlier 10,000-connection run.
log=$(mktemp)
VK_WS_ENV=bench VK_WS_JWT_SECRET=bench-secret VK_WS_LISTEN=127.0.0.1:0 RUST_LOG=warn \
  target/release/chat >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 100); do
  url=$(grep -oE 'ws://127\.0\.0\.1:[0-9]+' "$log" | head -1) && [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "the chat server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$log" >&2; echo "the chat server did not start within 10 s" >&2; exit 1; }
# Broadcasts, 1,000 direct messages, the server CPU over 10 s idle, then the disconnects.
VK_LOADTEST_HOLD_SECS=10 VK_WS_JWT_SECRET=bench-secret target/release/vk-loadtest "$url" "$server" "$connections"
kill "$server" 2>/dev/null || true
echo "== the floor of a local broadcast: one write per socket, the same kind of client"
target/release/vk-sendfloor "$connections" 5

echo "== topic publish: memory and DynamoDB (moto) stores, through the management API client"
target/release/vk-topics --runs 5 1000 "$connections"
motopid=$(mktemp)
VK_TEST_MOTO_ENDPOINT=$(scripts/moto.sh "$motopid") target/release/vk-topics --moto --runs 3 1000 "$connections"
kill "$(cat "$motopid")" 2>/dev/null || true

echo "== topic publish in the local server, over real sockets"
for members in 1000 "$connections"; do
  tlog=$(mktemp)
  VK_WS_LISTEN=127.0.0.1:0 VK_WS_JWT_SECRET=bench-secret RUST_LOG=warn target/release/vk-topicserver >"$tlog" 2>&1 &
  tserver=$!
  turl=""
  for _ in $(seq 1 100); do
    turl=$(grep -oE 'ws://127\.0\.0\.1:[0-9]+' "$tlog" | head -1) && [ -n "$turl" ] && break
    sleep 0.1
  done
  [ -n "$turl" ] || { cat "$tlog" >&2; echo "vk-topicserver did not start" >&2; exit 1; }
  VK_WS_JWT_SECRET=bench-secret VK_LOADTEST_TOPIC=bench:1 target/release/vk-loadtest "$turl" "$tserver" "$members" 5
  kill "$tserver" 2>/dev/null || true
  rm -f "$tlog"
done
