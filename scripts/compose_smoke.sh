#!/usr/bin/env bash
# The compose stack for real, on this machine: Docker Engine (Debian's docker.io, started here on its own socket and
# stopped at the end), the compose v2 plugin (built from its Go module when missing), images built on a local Debian
# base (debootstrap; no image registry is needed), and the project's docker-compose.yml with tests/compose/local-images.yml,
# which overrides image names and build arguments only.
#
#   bash scripts/compose_smoke.sh           the whole story, ending with one line:
#     compose: up in <S> s, first adapter promoted in <R> s, <N> samples, scaled 2+2, kill survived, resume ok
#   bash scripts/compose_smoke.sh --quick   build, up, every healthcheck, one request through to PostgreSQL, down
#
# The loop runs a small policy (data volume's loop/policy.json, as a user sets one): rounds of 300 problems, 40 LoRA
# steps, any adapter without a regression promoted. It is about the stack, not about learning. Needs root (or sudo)
# for the engine; images and the engine's data stay in ~/.cache/selfloop/compose for the next run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/selfloop/compose
RUN=$(mktemp -d /tmp/selfloop-engine.XXXXXX)
export DOCKER_HOST=unix://$RUN/docker.sock DOCKER_CONFIG=$CACHE/config COMPOSE_PROJECT_NAME=selfloop-smoke
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false  # the engine's own builder: Debian's engine has no buildx
BASE_IMAGE=selfloop-local/debian:bookworm
COMPOSE_MODULE=github.com/docker/compose/v5@v5.6.0
STARTED=$SECONDS

log() { printf '[%4ds] %s\n' $((SECONDS - STARTED)) "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
compose() { docker compose -f docker-compose.yml -f tests/compose/local-images.yml "$@"; }
sql() { compose exec -T postgres psql -U loop -d loop -tAc "$1" 2>/dev/null || echo 0; }
fail() { log "FAILED: $*"; compose ps -a >&2 || true; compose logs --tail 40 >&2 || true; exit 1; }

cleanup() {
  set +e
  if docker info >/dev/null 2>&1; then
    compose down --volumes --remove-orphans >/dev/null 2>&1
  fi
  if [ -s "$RUN/dockerd.pid" ]; then
    as_root kill "$(cat "$RUN/dockerd.pid")"
    for _ in $(seq 30); do [ -e "$RUN/dockerd.pid" ] || break; sleep 1; done
  fi
  as_root rm -rf "$RUN"
}
trap cleanup EXIT

start_engine() {
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing Debian's docker.io and debootstrap"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null
  fi
  mkdir -p "$CACHE/engine"
  # Its own addresses, so that it does not clash with a system engine's docker0 and networks.
  as_root dockerd --host "$DOCKER_HOST" --group "$(id -g)" --data-root "$CACHE/engine" --exec-root "$RUN/exec" \
    --pidfile "$RUN/dockerd.pid" --storage-driver overlay2 --bip 172.31.250.1/24 \
    --default-address-pool base=172.30.0.0/16,size=24 >"$RUN/dockerd.log" 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { log "engine $(docker version -f '{{.Server.Version}}') on $DOCKER_HOST"; return; }
    sleep 1
  done
  cat "$RUN/dockerd.log" >&2
  exit 1
}

compose_plugin() {
  local plugin=$DOCKER_CONFIG/cli-plugins/docker-compose
  if [ ! -x "$plugin" ]; then
    log "building the compose plugin from $COMPOSE_MODULE"
    local dir build
    dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$COMPOSE_MODULE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    build=$(mktemp -d)
    cp -r "$dir/." "$build" && chmod -R u+w "$build"
    (cd "$build" && CGO_ENABLED=0 go build -trimpath -o "$RUN/docker-compose" \
      -ldflags "-X github.com/docker/compose/v5/internal.Version=${COMPOSE_MODULE#*@}" ./cmd)
    mkdir -p "$(dirname "$plugin")" && mv "$RUN/docker-compose" "$plugin" && rm -rf "$build"
  fi
  log "$(docker compose version)"
}

base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
  local tarball=$CACHE/debian-bookworm.tar root
  if [ ! -s "$tarball" ]; then
    log "debootstrap of Debian bookworm (python3) for the local base image"
    root=$(mktemp -d)
    as_root debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
      http://deb.debian.org/debian >/dev/null
    as_root tar -C "$root" -cf "$tarball.partial" . && as_root rm -rf "$root" && mv "$tarball.partial" "$tarball"
  fi
  docker import "$tarball" "$BASE_IMAGE" >/dev/null
}

stand_in_images() {
  local context=$RUN/kafka-image
  cp -r tests/compose/images/kafka "$context"
  mvn -q -B -f "$context/pom.xml" dependency:copy-dependencies -DoutputDirectory="$context/libs"
  docker build -q --build-arg "BASE=$BASE_IMAGE" -t selfloop-local/kafka:4.1.1 "$context" >/dev/null
  docker build -q --build-arg "BASE=$BASE_IMAGE" -t selfloop-local/postgres:15 tests/compose/images/postgres >/dev/null
  docker build -q --build-arg "BASE=$BASE_IMAGE" -t selfloop-local/redis:7 tests/compose/images/redis >/dev/null
}

# Until every container is as it should be: init exited 0, every other running (and healthy where it has a check).
wait_for_stack() {
  local deadline=$((SECONDS + $1)) state
  while [ $SECONDS -lt $deadline ]; do
    state=$(compose ps -a --format json 2>/dev/null | python3 -c '
import json, sys
text = sys.stdin.read().strip()
rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
waiting = []
for row in rows:
    if row["Service"] == "init":
        if row["State"] != "exited" or row.get("ExitCode") != 0:
            waiting.append("init " + row["State"] + " " + str(row.get("ExitCode")))
    elif row["State"] != "running" or row.get("Health") not in ("", "healthy"):
        waiting.append(row["Name"] + " " + row["State"] + " " + row.get("Health", ""))
print("; ".join(waiting) if rows else "nothing yet")
' || echo "compose ps failed")
    [ -z "$state" ] && return 0
    case "$state" in *"init exited "[1-9]*) fail "init: $state" ;; esac
    sleep 3
  done
  fail "the stack did not come up within $1 s: $state"
}

wait_for() {  # seconds, what, command...: until the command's output is a number above zero
  local deadline=$((SECONDS + $1)) what=$2 value
  shift 2
  while [ $SECONDS -lt $deadline ]; do
    value=$("$@")
    [ "${value:-0}" -gt 0 ] 2>/dev/null && return 0
    sleep 5
  done
  fail "timed out after $((SECONDS - deadline + $1)) s waiting for $what"
}

verified() { sql "select count(*) from sample where status <> 'pending'"; }
promoted() { sql "select count(*) from adapter where status = 'promoted'"; }
samples() { sql "select count(*) from sample"; }
samples_beyond() { echo $(($(samples) - $1)); }
controller_round() {
  compose run --rm --no-deps -T init cat /data/loop/controller.json 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["round"])' 2>/dev/null || echo 0
}

start_engine
compose_plugin
compose down --volumes --remove-orphans >/dev/null 2>&1 || true  # what a run killed before its cleanup left
base_image
stand_in_images
ls wheelhouse/*.whl >/dev/null 2>&1 || bash scripts/wheelhouse.sh

POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
LOOP_API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
LOOP_API_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export POSTGRES_PASSWORD LOOP_API_TOKEN LOOP_API_PORT

log "building the project's image (wheels: $(ls wheelhouse/*.whl 2>/dev/null | wc -l))"
compose build --quiet init
compose run --rm --no-deps -T init sh -c 'mkdir -p /data/loop && cat > /data/loop/policy.json' <<'EOF'
{"problems_per_round": 300, "request_size": 100, "base_eval_up_to": 6, "eval_margin": 1, "min_gain": -1.0,
 "regression_tolerance": 1.0, "empty_round_after": null, "lora": {"steps": 40, "batch_size": 32, "replay_share": 0.3}}
EOF

UP=$SECONDS
compose up -d --quiet-pull || fail "compose up"
wait_for_stack 900
up_s=$((SECONDS - UP))
log "stack up and healthy in $up_s s (init trained the builtin model)"
curl -fsS "http://127.0.0.1:$LOOP_API_PORT/api/health" >/dev/null || fail "the API is not reachable from the host"

if [ $QUICK = 1 ]; then
  wait_for 600 "a verified sample in PostgreSQL" verified
  log "a request went through: $(verified) samples verified and stored"
  echo "compose (quick): up in $up_s s, $(samples) samples in PostgreSQL after $((SECONDS - UP)) s, down ok"
  exit 0
fi

wait_for 1200 "a promoted adapter" promoted
promoted_s=$((SECONDS - UP))
log "first adapter promoted $promoted_s s after up; $(samples) samples"

compose up -d --no-recreate --scale generator=2 --scale verifier=2 || fail "compose up --scale"
wait_for_stack 300
for group in generator verifier; do
  name=$([ $group = generator ] && echo generators || echo verifiers)
  deadline=$((SECONDS + 180))
  while :; do
    consuming=0
    for id in $(compose ps -q $group); do
      last=$(docker logs "$id" 2>&1 | grep -o "$name: assigned [0-9]* partitions" | tail -1 | grep -o '[0-9]*' || true)
      [ "${last:-0}" -gt 0 ] && consuming=$((consuming + 1))
    done
    [ $consuming = 2 ] && break
    [ $SECONDS -lt $deadline ] || fail "two ${group}s consuming: $consuming"
    sleep 5
  done
  log "2 ${group}s, each assigned partitions of the group $name"
done

victim=$(compose ps -q generator | head -1)
restarts=$(docker inspect -f '{{.RestartCount}}' "$victim")
assigned_before=$(docker logs "$victim" 2>&1 | grep -c 'generators: assigned [1-9]' || true)
before=$(samples)
as_root kill -9 "$(docker inspect -f '{{.State.Pid}}' "$victim")"
deadline=$((SECONDS + 120))
until [ "$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$victim")" = "$((restarts + 1)) true" ]; do
  [ $SECONDS -lt $deadline ] || fail "the engine did not restart the killed generator"
  sleep 2
done
deadline=$((SECONDS + 180))
until [ "$(docker logs "$victim" 2>&1 | grep -c 'generators: assigned [1-9]' || true)" -gt "$assigned_before" ]; do
  [ $SECONDS -lt $deadline ] || fail "the restarted generator was not assigned partitions again"
  sleep 3
done
log "generator SIGKILLed, restarted by the engine, and consuming again"
wait_for 300 "samples after the kill" samples_beyond "$before"

# Quiet the producers, let the store writer catch up, then every candidate in the topic must be one row.
compose stop controller generator >/dev/null
deadline=$((SECONDS + 300))
until audit=$(compose exec -T api python -m loop.cli audit 2>/dev/null | head -1) && \
      python3 -c 'import json,sys; a=json.loads(sys.argv[1]); sys.exit(not (a["ok"] and a["store_writer_lag"] == 0))' "$audit"; do
  [ $SECONDS -lt $deadline ] || fail "audit: ${audit:-no answer}"
  sleep 5
done
log "audit: $audit"
count=$(samples)

round_before=$(controller_round)
[ "$round_before" -ge 1 ] || fail "no round recorded before down"
compose down >/dev/null
compose up -d || fail "compose up after down"
wait_for_stack 600
wait_for 600 "samples after the restart" samples_beyond "$count"
round_after=$(controller_round)
[ "$round_after" -ge "$round_before" ] || fail "the loop restarted at round $round_after, not $round_before"
log "down and up: the loop resumed at round $round_after (was $round_before), samples $count -> $(samples)"
echo "compose: up in $up_s s, first adapter promoted in $promoted_s s, $count samples, scaled 2+2, kill survived, resume ok"
