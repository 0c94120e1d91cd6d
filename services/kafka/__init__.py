"""Apache Kafka for the embedded default: a single KRaft node on the installed JDK, started by the project.

Commands: ``python -m services.kafka start|status|stop`` (see ``services/kafka/__main__.py``).
"""

from services.kafka.launcher import KafkaBroker, KafkaStartError, resolve_classpath

__all__ = ["KafkaBroker", "KafkaStartError", "resolve_classpath"]
