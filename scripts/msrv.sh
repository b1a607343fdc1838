#!/usr/bin/env bash
# Checks the workspace's `rust-version` against every locked dependency's own
# `rust-version`: the declared minimum must be at least the highest of them. (Our own code's
# use of newer std APIs is caught by clippy's `incompatible_msrv`, which reads the same field.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
def parse(v):
    return tuple(int(x) for x in v.split("."))  + (0,) * (3 - len(v.split(".")))
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members and p.get("rust_version")}
if len(ours) != 1:
    sys.exit(f"msrv: the workspace members declare {sorted(ours) or None} rust-version; expected one")
declared = ours.pop()
worst = max(
    ((parse(p["rust_version"]), p["name"], p["rust_version"]) for p in meta["packages"]
     if p["id"] not in members and p.get("rust_version")),
    default=None,
)
if worst and worst[0] > parse(declared):
    sys.exit(f"msrv: rust-version = {declared}, but {worst[1]} needs {worst[2]}: raise it in Cargo.toml")
print(f"msrv: rust-version = {declared} covers every dependency (highest: {worst[1]} {worst[2]})" if worst else f"msrv: {declared}")
'
