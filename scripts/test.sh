#!/usr/bin/env bash
# Set up, then run the whole test suite against real Kafka, PostgreSQL and Redis servers
# (the test fixtures start throwaway ones on free ports). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p test-artifacts
.venv/bin/ruff check --quiet .   # a lint finding fails the run before the tests start
.venv/bin/mypy --no-error-summary   # so does a type finding ([tool.mypy] in pyproject.toml)
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests"
    exit 0
fi
exit "$status"
