#!/usr/bin/env bash
# CPU per message of the chat on Lambda, and where it goes.
# Builds the release binaries (unstripped, so that perf can name functions), starts moto,
# runs `vk-lambdacpu` (the chat binary fed by a Runtime API stand-in, DynamoDB behind a
# keep-alive proxy, a recording management API) for N sends, R rounds; then, with --profile,
# records one more round with perf (DWARF call stacks) and prints each owner's share
# (scripts/perf-owners.py).
# Usage: scripts/bench-lambda.sh [sends] [rounds] [--profile] [-- extra vk-lambdacpu args]
set -euo pipefail
cd "$(dirname "$0")/.."
sends=${1:-1000}
rounds=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
profile=false
if [ "${1:-}" = "--profile" ]; then profile=true; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
CARGO_PROFILE_RELEASE_STRIP=false cargo build --release -p chat -p venturekit-ws-tests \
  --bin chat --bin vk-lambdacpu >&2
pidfile=$(mktemp)
endpoint=$(scripts/moto.sh "$pidfile")
trap 'kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"' EXIT
export VK_TEST_MOTO_ENDPOINT=$endpoint
for round in $(seq 1 "$rounds"); do
  printf 'round %s: ' "$round"
  target/release/vk-lambdacpu target/release/chat "$sends" "$@" 2>/dev/null
done
if $profile; then
  command -v perf >/dev/null || { echo "--profile needs perf (linux-perf)" >&2; exit 1; }
  data=$(mktemp)
  perf record -q -F 4000 --call-graph dwarf,32768 -o "$data" -- \
    target/release/vk-lambdacpu target/release/chat "$sends" "$@" 2>/dev/null
  # The function's runtime thread is named `lambda`.
  perf script -i "$data" --comm lambda -F comm,ip,sym,dso 2>/dev/null | scripts/perf-owners.py
  rm -f "$data"
fi
