"""Creating the topics a worker uses, and reading their partition counts."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams import topics
from streams.settings import Settings


class TopicError(RuntimeError):
    """Topics cannot be created or described; the message says which and why."""


def ensure_topics(settings: Settings, names: list[str] | None = None,
                  timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing topics (settings.partitions each) and return every topic's partitions."""
    wanted = [settings.topic(n) for n in (names or list(topics.ALL))]
    servers = settings.bootstrap_servers
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=servers, client_id="frontline-admin",
                                     request_timeout_ms=10000)
            break
        except (KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise TopicError(f"cannot reach the broker at {settings.broker}: {exc}; "
                                 f"is it running? (frontline broker starts one)") from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(n, settings.partitions, settings.replication_factor)
                                     for n in missing])
            except TopicAlreadyExistsError:
                pass  # another worker created them first
    finally:
        admin.close()
    return partition_counts(servers, wanted, deadline)


def partition_counts(servers: list[str], names: list[str], deadline: float) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=servers, client_id="frontline-admin")
    try:
        counts: dict[str, int] = {}
        while True:
            for name in names:
                parts = consumer.partitions_for_topic(name)
                if parts:
                    counts[name] = len(parts)
            if len(counts) == len(names):
                return counts
            if time.monotonic() > deadline:
                lost = ", ".join(n for n in names if n not in counts)
                raise TopicError(f"topics not visible on the broker: {lost}")
            time.sleep(0.2)
            consumer._client.cluster.request_update()
    finally:
        consumer.close()
