#!/usr/bin/env bash
# Fuzz the front-matter reader for SECONDS (default 60) from seeds made of real and hostile files.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
cp content/news/*.md "$seeds/"
.venv/bin/python tools/gen_corpus.py --out "$seeds/gen" --items 60 --topics 5 --bad 0.5 >/dev/null
cp "$seeds"/gen/news/bad-*.md "$seeds/" && rm -rf "$seeds/gen"
work="$(mktemp -d)"
exec .venv/bin/python fuzz/fuzz_front_matter.py -max_total_time="$seconds" -rss_limit_mb=2048 \
  -max_len=65536 -artifact_prefix="${FUZZ_ARTIFACTS:-fuzz/}" "$work" "$seeds"
