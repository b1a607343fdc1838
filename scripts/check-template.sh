#!/usr/bin/env bash
# CI for the project template: generates an app with scripts/new-app.sh, then formats,
# lints, tests it (its test-kit tests, in process and over sockets) and runs its `template`
# and `contract` commands. Shares target/ with the workspace, so only the app and
# venturekit-ws itself are built again. Versions are pinned with the workspace's Cargo.lock.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/template-check"
rm -rf "$work"
mkdir -p "$work"
"$root/scripts/new-app.sh" my-app "$work/my-app"
cd "$work/my-app"
cp "$root/Cargo.lock" Cargo.lock
export CARGO_TARGET_DIR="$root/target"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
cargo run -q -- template --env prod --out template.json
test -s template.json
cargo run -q -- contract --out contract
test -s contract/client.ts
cargo build -q --no-default-features
echo "the project template builds, passes its tests and writes its template and contract" >&2
