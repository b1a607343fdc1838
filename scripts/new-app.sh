#!/usr/bin/env bash
# Creates a new venturekit-ws app from templates/app: the app (one action), venturekit.toml,
# its tests (the test kit), ready for `cargo run`, `cargo test` and `template`.
#   scripts/new-app.sh my-app [DIR]      (DIR defaults to ./my-app)
# The app depends on this checkout by path. With cargo-generate installed, the same template
# works as `cargo generate --path templates/app --name my-app`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:-}"
if ! [[ "$name" =~ ^[a-z][a-z0-9-]*$ ]]; then
  echo "usage: scripts/new-app.sh NAME [DIR]   (NAME: lowercase letters, digits and dashes, e.g. my-app)" >&2
  exit 2
fi
dir="${2:-$name}"
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "scripts/new-app.sh: $dir exists and is not empty" >&2
  exit 1
fi
crate="${name//-/_}"
mkdir -p "$dir"
cp -R "$root/templates/app/." "$dir/"
rm -f "$dir/cargo-generate.toml"
find "$dir" -type f | while read -r file; do
  sed -i -e "s|{{project-name}}|$name|g" -e "s|{{crate_name}}|$crate|g" \
    -e "s|{{venturekit_path}}|$root/venturekit-ws|g" "$file"
done
echo "created $dir: cd $dir && cargo run   (tests: cargo test)" >&2
