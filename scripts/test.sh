#!/usr/bin/env bash
# The one test command: unit, integration (real WebSocket clients against the local
# server on loopback), DynamoDB against moto's server, management API delivery against a
# recording HTTP server, Lambda mode against a Runtime API stand-in, dispatcher fixtures,
# JWT, trybuild UI tests, doctests, and the contract checks (AsyncAPI parser, tsc, the
# generated TypeScript client under Node). Extra arguments go to `cargo test`.
#
# moto (PyPI `moto[server]`) and cfn-lint are installed into .venv on first run; moto is
# started on a free loopback port. The npm packages of the contract checks are installed
# into tools/node/node_modules (scripts/node.sh; needs Node 18+), and Debian's chromium for
# the dev console test (scripts/chromium.sh, with apt-get as root when missing). The tests find
# them through VK_TEST_MOTO_ENDPOINT, VK_TEST_CFN_LINT, VK_TEST_NODE_TOOLS and VK_TEST_CHROMIUM.
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile=$(mktemp)
log=$(mktemp)
cleanup() {
  if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  rm -f "$pidfile" "$log"
}
trap cleanup EXIT
scripts/venv.sh
# The contract checks' Node packages (AsyncAPI parser, TypeScript, ws) into tools/node.
VK_TEST_NODE_TOOLS=$(scripts/node.sh)
export VK_TEST_NODE_TOOLS
# Debian's chromium for the dev console's browser test (installed when missing).
VK_TEST_CHROMIUM=$(scripts/chromium.sh)
export VK_TEST_CHROMIUM
VK_TEST_MOTO_ENDPOINT=$(scripts/moto.sh "$pidfile")
export VK_TEST_MOTO_ENDPOINT
export VK_TEST_CFN_LINT="$PWD/.venv/bin/cfn-lint"
echo "moto: $VK_TEST_MOTO_ENDPOINT" >&2
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line with the totals of every test binary and doctest run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
