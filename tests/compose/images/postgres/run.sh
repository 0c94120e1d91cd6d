#!/bin/bash
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  password=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$password"
  "$bin/initdb" --encoding=UTF8 --locale=C.UTF-8 --username="$user" --pwfile="$password" --auth-local=trust --auth-host=scram-sha-256 "$PGDATA"
  rm -f "$password"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" --wait --options="-c listen_addresses=''" start
  if [ "${POSTGRES_DB:-$user}" != postgres ]; then
    "$bin/psql" --username="$user" --dbname=postgres --set=ON_ERROR_STOP=1 \
      --command="CREATE DATABASE \"${POSTGRES_DB:-$user}\""
  fi
  "$bin/pg_ctl" --wait stop
fi
exec "$bin/postgres" -c listen_addresses='*'
