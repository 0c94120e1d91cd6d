#!/usr/bin/env bash
# Fill ./wheelhouse with a wheel of every dependency of the project (and what building it needs), from pip's cache
# where it has them: the image build then installs torch and the rest without downloading them again.
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
[ -x "$python" ] || python=python3
# The image's Python is 3.11 (python:3.11-slim, Debian bookworm): wheels for another would not install there.
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "wheelhouse: needs Python 3.11" >&2; exit 1; }
# Beside the project's dependencies: what building it needs, and what a dependency needs on an older Python 3.11 than
# this machine's (redis takes async-timeout below 3.11.3: Debian bookworm's python3 is 3.11.2).
"$python" -m pip wheel --quiet --wheel-dir wheelhouse . "setuptools>=68" wheel "async-timeout>=4.0.3"
rm -f wheelhouse/selfloop-*.whl  # the project itself is built from the sources in the image
echo "wheelhouse: $(ls wheelhouse/*.whl | wc -l) wheels, $(du -sh wheelhouse | cut -f1)"
