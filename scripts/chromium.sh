#!/usr/bin/env bash
# Installs Debian's chromium for the dev console's browser test when it is missing, and
# prints its path (for VK_TEST_CHROMIUM). Needs apt-get and root (or passwordless sudo).
set -euo pipefail
for candidate in "${VK_TEST_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "$candidate"
    exit 0
  fi
done
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
echo "installing Debian's chromium for the dev console test" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2 || true
$sudo apt-get install -y -qq --no-install-recommends chromium >&2
test -x /usr/bin/chromium
echo /usr/bin/chromium
