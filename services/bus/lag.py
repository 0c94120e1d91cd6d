"""Consumer lag: how many messages a consumer group has yet to process, per topic."""

from __future__ import annotations

import time

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient
from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError
from kafka.structs import TopicPartition

from services.settings import Settings


class LagMonitor:
    """One admin client and one group-less consumer, reused across calls (cheap enough to ask every second)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="loop-lag")
        self._offsets = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, client_id="loop-lag", enable_auto_commit=False)

    def lag(self, group_id: str, topic: str) -> int:
        """Messages of ``topic`` (logical name) that ``group_id`` has not committed yet."""
        name = self.settings.topic(topic)
        return self.partition_lag(group_id, [(name, p) for p in sorted(self._offsets.partitions_for_topic(name) or ())])

    def partition_lag(self, group_id: str, partitions: list[tuple[str, int]]) -> int:
        """Messages of these (full topic name, partition) pairs that ``group_id`` has not committed."""
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        if not tps:
            return 0
        ends = self._offsets.end_offsets(tps)
        committed = self._committed(group_id, tps)
        total = 0
        for tp in tps:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else self._beginning(tp)
            total += max(0, ends[tp] - position)
        return total

    def consumed(self, group_id: str) -> bool:
        """Whether ``group_id`` has ever committed an offset (a group whose service does not run in this loop, the
        index updater of an arithmetic loop say, has not: its "lag" would be every message of its topics)."""
        return bool(self._committed(group_id, None))

    def _committed(self, group_id: str, partitions: list[TopicPartition] | None) -> dict:
        group = self.settings.group(group_id)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return self._admin.list_group_offsets({group: partitions}).get(group, {})
            except CoordinatorNotAvailableError:  # no group has committed on this cluster yet: nor has this one
                return {}
            except (NotCoordinatorError, CoordinatorLoadInProgressError) as exc:
                # The group's coordinator moved or is still loading the offsets (a fresh cluster, a broker that
                # restarted): asked again, it answers within seconds. The admin client keeps the coordinator it
                # found, so a moved one is looked up again by a new client.
                if time.monotonic() > deadline:
                    raise
                if isinstance(exc, NotCoordinatorError):
                    self._admin.close()
                    self._admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                                   client_id="loop-lag")
                time.sleep(0.5)

    def _beginning(self, tp: TopicPartition) -> int:
        return self._offsets.beginning_offsets([tp])[tp]

    def close(self) -> None:
        self._admin.close()
        self._offsets.close()
