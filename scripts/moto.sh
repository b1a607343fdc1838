#!/usr/bin/env bash
# Starts moto's server (installed by scripts/venv.sh) on a free loopback port. Prints the
# endpoint on stdout and writes the server's pid to the file given as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
log=$(mktemp)
.venv/bin/moto_server -H 127.0.0.1 -p 0 >"$log" 2>&1 &
pid=$!
echo "$pid" > "$1"
for _ in $(seq 1 100); do
  if port=$(grep -oE 'Running on http://127\.0\.0\.1:[0-9]+' "$log" | grep -oE '[0-9]+$'); then
    echo "http://127.0.0.1:$port"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$log" >&2
    echo "moto_server exited early" >&2
    exit 1
  fi
  sleep 0.1
done
cat "$log" >&2
echo "moto_server did not start within 10 s" >&2
exit 1
