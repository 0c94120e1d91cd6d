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
    status=0
fi
# Then the compose stack for real, in its quick form (build, up, every healthcheck, one request through to
# PostgreSQL, down), where an engine can run here: root or sudo, room for its images, and time left in the run's
# budget (LOOP_TEST_BUDGET_S, 45 min; a cold quick form takes up to 18 min). LOOP_TEST_COMPOSE=0 skips it.
if [ "$status" -eq 0 ] && [ "${LOOP_TEST_COMPOSE:-1}" != 0 ]; then
    free_gb=$(( $(df -Pk "$HOME" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
    left_s=$(( ${LOOP_TEST_BUDGET_S:-2700} - SECONDS ))
    if [ "$left_s" -lt 1080 ]; then
        echo "test: compose smoke skipped: $(( SECONDS / 60 )) min spent, $(( left_s / 60 )) left of the budget, it needs 18"
    elif [ "$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then
        echo "test: compose smoke skipped: the engine needs root or sudo"
    elif [ "$free_gb" -lt 30 ]; then
        echo "test: compose smoke skipped: $free_gb GB free under $HOME, its images and wheels need 30"
    else
        bash scripts/compose_smoke.sh --quick || status=$?
    fi
fi
exit "$status"
