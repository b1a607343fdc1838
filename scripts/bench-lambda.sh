#!/usr/bin/env bash
# CPU per message of the chat on Lambda, and where it goes.
# Builds the release binaries (unstripped, so that perf can name functions), starts moto,
# runs `vk-lambdacpu` (the chat binary fed by a Runtime API stand-in, DynamoDB behind a
# keep-alive proxy, a recording management API) for N sends, R rounds; then, with --profile,
# records one more round with perf (DWARF call stacks) and prints each owner's share
# (scripts/perf-owners.py).
# Each round also runs `vk-sdkfloor` (tests/tools/sdkfloor.rs): the same requests per `send`
# with nothing but the AWS SDK on a bare `lambda_runtime` loop, the floor under the framework.
# With --node, each round also runs the Node.js peer (tools/node/lambda: the same path on the
# AWS SDK for JavaScript v3, as a custom runtime; its npm packages are installed on first use)
# in the same harness, and the cold start of both is timed (vk-coldstart, 30 runs each).
# With --instructions, chat and the SDK floor also run under valgrind's callgrind, at 100 and
# at 300 sends: the difference over 200 sends is the user-space instructions per `send`, a
# count that does not move with the machine's load as CPU time does (valgrind hides SHA
# extensions from the process, so SigV4's hashing counts more than it costs on the CPU).
# Usage: scripts/bench-lambda.sh [sends] [rounds] [--node] [--profile] [--instructions]
#        [-- extra vk-lambdacpu args]
set -euo pipefail
cd "$(dirname "$0")/.."
sends=1000
rounds=3
if [[ ${1:-} =~ ^[0-9]+$ ]]; then sends=$1; shift; fi
if [[ ${1:-} =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
profile=false
node=false
instructions=false
while [ $# -gt 0 ]; do
  case "$1" in
    --node) node=true ;;
    --profile) profile=true ;;
    --instructions) instructions=true ;;
    --) shift; break ;;
    *) echo "unknown option $1 (usage: see the head of $0)" >&2; exit 2 ;;
  esac
  shift
done
CARGO_PROFILE_RELEASE_STRIP=false cargo build --release -p chat -p venturekit-ws-tests \
  --bin chat --bin vk-lambdacpu --bin vk-coldstart --bin vk-sdkfloor >&2
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
  printf 'round %s, SDK floor: ' "$round"
  target/release/vk-lambdacpu target/release/vk-sdkfloor "$sends" "$@" 2>/dev/null
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
if $instructions; then
  command -v valgrind >/dev/null || { echo "--instructions needs valgrind" >&2; exit 1; }
  work=$(mktemp -d)
  # vk-lambdacpu stops the function with SIGKILL: valgrind runs in the background of a shell
  # that is killed instead, and writes its count when the function exits.
  cat > "$work/wrap.sh" <<'WRAP'
#!/bin/sh
valgrind --tool=callgrind --callgrind-out-file=/dev/null "$VK_WRAP_BIN" 2>"$VK_WRAP_LOG" &
wait
WRAP
  chmod +x "$work/wrap.sh"
  echo "user-space instructions per send (callgrind, 300 sends minus 100):"
  for bin in chat vk-sdkfloor; do
    for n in 100 300; do
      target/release/vk-lambdacpu "$work/wrap.sh" "$n" --env VK_WRAP_BIN="$PWD/target/release/$bin" \
        --env VK_WRAP_LOG="$work/$bin-$n.log" "$@" >/dev/null 2>&1
      # The function exits once the Runtime API stand-in is gone.
      for _ in $(seq 1 100); do grep -q Collected "$work/$bin-$n.log" 2>/dev/null && break; sleep 0.2; done
    done
    low=$(awk '/Collected/ {print $4}' "$work/$bin-100.log")
    high=$(awk '/Collected/ {print $4}' "$work/$bin-300.log")
    echo "$bin: $(( (high - low) / 200 ))"
  done
  rm -rf "$work"
fi
