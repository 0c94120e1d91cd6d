#!/usr/bin/env bash
# Set up everything the loop and its tests need on a fresh Debian machine:
# system packages (JDK and Maven for Kafka, PostgreSQL and Redis servers for the tests),
# a virtualenv with the pinned Python dependencies, and the Kafka artifacts from Maven Central.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium fonts-liberation)  # the dashboard's browser test
command -v kcat >/dev/null || need_apt+=(kcat)  # the faults bench writes malformed messages with an independent client
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "setup: installing ${need_apt[*]} from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Installed once per pyproject.toml: a later run with the same one skips pip. pip's cache (~/.cache/pip) spares the
# multi-gigabyte torch download when it does change. setuptools warns on every editable install that a folder named
# like a package shadows it, which is how this project is laid out on purpose: that one warning is silenced.
stamp=.venv/.installed-pyproject
if ! cmp -s pyproject.toml "$stamp"; then
    # The venv takes about 7 GB (torch's CUDA libraries are 4 of them) and pip holds the downloaded wheels beside
    # it while it installs: say so plainly before pip fails half-way with ENOSPC.
    need_gb=11
    for dir in . "${TMPDIR:-/tmp}"; do
        free_gb=$(( $(df -Pk "$dir" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
        if [ "$free_gb" -lt "$need_gb" ]; then
            echo "setup: $(cd "$dir" && pwd) has ${free_gb} GB free; installing the Python dependencies needs about" \
                 "${need_gb} GB (torch with its CUDA libraries). Free some space or point TMPDIR elsewhere." >&2
            exit 1
        fi
    done
    echo "setup: installing the Python dependencies into .venv (torch is large: minutes on first run)"
    .venv/bin/python -m pip install -q --upgrade pip
    PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e '.[test]'
    cp pyproject.toml "$stamp"
fi
.venv/bin/python -m services.kafka fetch
echo "setup: done"
