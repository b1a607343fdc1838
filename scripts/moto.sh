#!/usr/bin/env bash
# Installs moto's server into .venv (once) and starts it on a free loopback port.
# Prints the endpoint on stdout and the server's pid on fd 3 is not needed: the caller
# reads MOTO_PID from the file given as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/moto_server ]; then
  echo "installing moto[server] into .venv (first run only)..." >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
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
