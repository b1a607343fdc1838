#!/usr/bin/env bash
# The one test command: unit, integration (real WebSocket clients against the local
# server on loopback), dispatcher fixtures, JWT, trybuild UI tests and doctests.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
# One closing line with the totals of every test binary and doctest run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
