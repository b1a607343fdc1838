#!/usr/bin/env bash
# The one test command: unit, integration (real WebSocket clients against the local
# server on loopback), dispatcher fixtures, JWT, trybuild UI tests and doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace "$@"
