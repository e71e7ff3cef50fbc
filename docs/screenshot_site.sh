#!/usr/bin/env bash
# Screenshots of the built site (make docs first), taken by headless Chromium (Debian's
# `chromium` package): the API reference and an executed notebook page.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8765}
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory site >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
sleep 1
shot() {  # page, file, height
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1280,"$3" --screenshot="docs/screenshots/$2" \
    "http://127.0.0.1:$PORT/$1" >/dev/null 2>&1
}
shot api/masks/ api_reference.png 1400
shot notebooks/explore_synthetic_and_masks/ notebook.png 2200
ls -l docs/screenshots
