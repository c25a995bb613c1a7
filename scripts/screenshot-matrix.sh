#!/usr/bin/env bash
# Usage: screenshot-matrix.sh [matrix.html] [out.png]
# Opens the matrix report in headless Chromium (Debian's `chromium`) and saves a screenshot.
set -euo pipefail
html=$(realpath "${1:-target/sgpc/matrix/matrix.html}")
out=$(realpath -m "${2:-target/sgpc/matrix/matrix.png}")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1500,1300 --hide-scrollbars \
  --screenshot="$out" "file://$html" 2>/dev/null
echo "screenshot: $out"
