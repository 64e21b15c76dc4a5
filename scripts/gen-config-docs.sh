#!/usr/bin/env bash
# Writes the config key table (fer-train --list-keys, from libfer/src/config/config.cpp's
# key table) into docs/config.md between its two marker comments.
#   scripts/gen-config-docs.sh [FER_TRAIN]   default build/bin/fer-train
set -euo pipefail
cd "$(dirname "$0")/.."
fer_train=${1:-build/bin/fer-train}
[ -x "$fer_train" ] || { echo "error: $fer_train not found: build first (scripts/build.sh)" >&2; exit 1; }
table=$(mktemp); trap 'rm -f "$table"' EXIT
"$fer_train" --list-keys > "$table"
awk -v table="$table" '
  /^<!-- key table:/ { print; while ((getline line < table) > 0) print line; skipping = 1; next }
  /^<!-- end of key table -->/ { skipping = 0 }
  !skipping { print }
' docs/config.md > docs/config.md.tmp
mv docs/config.md.tmp docs/config.md
echo "gen-config-docs: docs/config.md has $(wc -l < "$table") table lines"
