#!/usr/bin/env bash
# Set up, then run the loop on the embedded default (no Docker): `loopctl up`. Arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/loopctl up "$@"
