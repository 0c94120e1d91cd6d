#!/bin/bash
exec java -Xmx64m -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.xml -cp "/opt/kafka/libs/*" \
  org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
