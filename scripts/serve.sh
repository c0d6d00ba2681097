#!/usr/bin/env bash
# Set up a virtualenv and serve the bundled content/ on http://127.0.0.1:8080/. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh .
exec .venv/bin/syndicator serve "$@"
