#!/usr/bin/env bash
# Make .venv and install the project into it (arguments: what to install, e.g. "." or "-e .[test]"),
# only when the project or its dependencies changed since the last install: a stamp in .venv holds
# the hash of pyproject.toml, and of the package's files unless the install is editable (-e).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(echo "$*" | tr -c 'a-zA-Z0-9' '_')"
if [ "${1:-}" = "-e" ]; then
    digest=$(sha256sum < pyproject.toml | cut -d' ' -f1)
else
    digest=$( { cat pyproject.toml; find syndicator -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 cat; } \
              | sha256sum | cut -d' ' -f1)
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet "$@"
    echo "$digest" > "$stamp"
fi
