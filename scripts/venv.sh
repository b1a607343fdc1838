#!/usr/bin/env bash
# Installs the Python tools the tests and CI use into .venv (once): moto's server (DynamoDB
# stand-in), cfn-lint (template validation) and, with --lambda, cargo-lambda (+ zig).
set -euo pipefail
cd "$(dirname "$0")/.."
want=("moto[server]>=5,<6" "cfn-lint>=1,<2")
[ "${1:-}" = "--lambda" ] && want+=("cargo-lambda>=1.8,<2")
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
missing=()
[ -x .venv/bin/moto_server ] || missing+=("${want[0]}")
[ -x .venv/bin/cfn-lint ] || missing+=("${want[1]}")
if [ "${1:-}" = "--lambda" ] && [ ! -x .venv/bin/cargo-lambda ]; then missing+=("${want[2]}"); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing into .venv: ${missing[*]}" >&2
  .venv/bin/pip install --quiet --disable-pip-version-check "${missing[@]}"
fi
