#!/usr/bin/env bash
# Installs the contract checks' Node packages (pinned in tools/node/package-lock.json) into
# tools/node/node_modules: the AsyncAPI parser, TypeScript and ws. Needs Node 18+ and npm
# with access to the npm registry. Prints the folder (for VK_TEST_NODE_TOOLS).
set -euo pipefail
cd "$(dirname "$0")/../tools/node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "scripts/node.sh: node and npm are needed for the contract checks (Node 18 or newer)" >&2
  exit 1
fi
if [ ! -x node_modules/.bin/tsc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing the contract checks' npm packages into tools/node/node_modules" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
pwd
