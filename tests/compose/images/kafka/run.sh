#!/bin/bash
# KAFKA_FOO_BAR=x becomes foo.bar=x (a double underscore is one underscore, a triple one a dash), as in apache/kafka.
set -euo pipefail
properties=/opt/kafka/config/server.properties
: > "$properties"
for name in $(compgen -e); do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS) continue ;;
    KAFKA_*)
      key=$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed 's/___/-/g; s/__/@/g; s/_/./g; s/@/_/g')
      printf '%s=%s\n' "$key" "${!name}" >> "$properties" ;;
  esac
done
grep -q '^log.dirs=' "$properties" || echo "log.dirs=/tmp/kraft-combined-logs" >> "$properties"
java=(java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -Djava.awt.headless=true
      -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.xml -cp "/opt/kafka/libs/*")
"${java[@]}" kafka.tools.StorageTool format --cluster-id "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" \
  --config "$properties" --ignore-formatted
exec "${java[@]}" kafka.Kafka "$properties"
