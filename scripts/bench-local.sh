#!/usr/bin/env bash
# The local server against a Node.js peer (tools/node/peer-local.mjs, the `ws` package), side
# by side in one run: the same load client (vk-loadtest) opens N connections to each,
# authenticates them all, then times broadcasts to all and reads the server's memory.
# Usage: scripts/bench-local.sh [connections] [rounds]   (defaults: 10000, 2 rounds of each)
# VK_BENCH_BEFORE=/path/to/an/older/chat adds that binary to each round (a before/after pair).
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-10000}
rounds=${2:-2}
secret=bench-secret-0123456789abcdef0123456789
ulimit -n "$(ulimit -Hn)"
cargo build --release -p chat -p venturekit-ws-tests --bins >&2
node_dir=$(scripts/node.sh)

# Starts a server in the background; prints "PID URL" once it listens.
start() {
  local log
  log=$(mktemp)
  "$@" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if url=$(grep -oE 'ws://127\.0\.0\.1:[0-9]+' "$log" | head -1) && [ -n "$url" ]; then
      echo "$pid $url"
      return
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "the server exited" >&2; exit 1; }
    sleep 0.1
  done
  cat "$log" >&2
  echo "the server did not start within 10 s" >&2
  exit 1
}

run() {
  local name=$1
  shift
  read -r pid url < <(start "$@")
  echo "== $name"
  VK_WS_JWT_SECRET=$secret target/release/vk-loadtest "$url" "$pid" "$connections" 5
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Let the loopback's TIME-WAIT sockets drain before the next run.
  sleep 5
}

echo "$(nproc) cores; node $(node --version); $(rustc --version)"
for round in $(seq 1 "$rounds"); do
  if [ -n "${VK_BENCH_BEFORE:-}" ]; then
    run "venturekit-ws local server before ($VK_BENCH_BEFORE), round $round" \
      env VK_WS_ENV=bench VK_WS_JWT_SECRET=$secret VK_WS_LISTEN=127.0.0.1:0 RUST_LOG=warn "$VK_BENCH_BEFORE"
  fi
  run "venturekit-ws local server (chat, release), round $round" \
    env VK_WS_ENV=bench VK_WS_JWT_SECRET=$secret VK_WS_LISTEN=127.0.0.1:0 RUST_LOG=warn target/release/chat
  run "Node.js peer (ws $(node -p "require('$node_dir/node_modules/ws/package.json').version")), round $round" \
    env VK_WS_JWT_SECRET=$secret NODE_PATH="$node_dir/node_modules" node "$node_dir/peer-local.mjs"
done
