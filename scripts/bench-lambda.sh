#!/usr/bin/env bash
# CPU per message of the chat on Lambda, and where it goes.
# Builds the release binaries (unstripped, so that perf can name functions), starts moto,
# runs `vk-lambdacpu` (the chat binary fed by a Runtime API stand-in, DynamoDB behind a
# keep-alive proxy, a recording management API) for N sends, R rounds; then, with --profile,
# records one more round with perf (DWARF call stacks) and prints each owner's share
# (scripts/perf-owners.py).
# With --node, each round also runs the Node.js peer (tools/node/lambda: the same path on the
# AWS SDK for JavaScript v3, as a custom runtime; its npm packages are installed on first use)
# in the same harness, and the cold start of both is timed (vk-coldstart, 30 runs each).
# Usage: scripts/bench-lambda.sh [sends] [rounds] [--node] [--profile] [-- extra vk-lambdacpu args]
set -euo pipefail
cd "$(dirname "$0")/.."
sends=${1:-1000}
rounds=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
profile=false
node=false
if [ "${1:-}" = "--node" ]; then node=true; shift; fi
if [ "${1:-}" = "--profile" ]; then profile=true; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
CARGO_PROFILE_RELEASE_STRIP=false cargo build --release -p chat -p venturekit-ws-tests \
  --bin chat --bin vk-lambdacpu --bin vk-coldstart >&2
if $node; then
  command -v node >/dev/null || { echo "--node needs node (18 or newer) and npm" >&2; exit 1; }
  if [ ! -d tools/node/lambda/node_modules/@aws-sdk ] ||
    [ tools/node/lambda/package-lock.json -nt tools/node/lambda/node_modules/.package-lock.json ]; then
    (cd tools/node/lambda && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
fi
pidfile=$(mktemp)
endpoint=$(scripts/moto.sh "$pidfile")
trap 'kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"' EXIT
export VK_TEST_MOTO_ENDPOINT=$endpoint
for round in $(seq 1 "$rounds"); do
  printf 'round %s: ' "$round"
  target/release/vk-lambdacpu target/release/chat "$sends" "$@" 2>/dev/null
  if $node; then
    printf 'round %s, Node.js peer: ' "$round"
    target/release/vk-lambdacpu tools/node/lambda/bootstrap "$sends" "$@" 2>/dev/null
  fi
done
if $node; then
  echo "cold start, 30 runs each (time to the first request for an event):"
  printf 'chat: '
  target/release/vk-coldstart --runs 30 --env CHAT_HISTORY_TABLE=history \
    --env VK_WS_TOPICS_TABLE=topics --env MIMALLOC_ARENA_EAGER_COMMIT=0 -- target/release/chat | tail -1
  printf 'Node.js peer: '
  target/release/vk-coldstart --runs 30 --env VK_WS_TABLE=connections -- tools/node/lambda/bootstrap | tail -1
fi
if $profile; then
  command -v perf >/dev/null || { echo "--profile needs perf (linux-perf)" >&2; exit 1; }
  data=$(mktemp)
  perf record -q -F 4000 --call-graph dwarf,32768 -o "$data" -- \
    target/release/vk-lambdacpu target/release/chat "$sends" "$@" 2>/dev/null
  # The function's runtime thread is named `lambda`.
  perf script -i "$data" --comm lambda -F comm,ip,sym,dso 2>/dev/null | scripts/perf-owners.py
  rm -f "$data"
fi
