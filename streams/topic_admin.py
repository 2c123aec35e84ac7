"""The worker's topics on the broker: creating them at start, reading their partition counts,
and watching that the broker is reachable and still has them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams import topics
from streams.embedded_broker import unreachable_reason
from streams.settings import Settings


class TopicError(RuntimeError):
    """Topics cannot be created or described; the message says which and why."""


def ensure_topics(settings: Settings, names: list[str] | None = None,
                  timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing topics (settings.partitions each) and return every topic's partitions."""
    wanted = [settings.topic(n) for n in (names or list(topics.ALL))]
    servers = settings.bootstrap_servers
    deadline = time.monotonic() + timeout_s
    # the same wait for a broker that is starting as the commands' (one line when it never does)
    reason = unreachable_reason(servers, timeout_s)
    try:
        if reason is not None:
            raise OSError(reason)
        admin = KafkaAdminClient(bootstrap_servers=servers, client_id="frontline-admin",
                                 request_timeout_ms=10000)
    except (KafkaError, OSError) as exc:
        raise TopicError(f"cannot reach the broker at {settings.broker}: {exc}; "
                         f"is it running? (frontline broker starts one)") from None
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


# ---- watching the broker ---------------------------------------------------------------------

UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION in a metadata answer


@dataclass(frozen=True)
class BrokerView:
    """What the broker says about the worker's topics."""

    cluster_id: str | None
    partitions: dict[str, int]  # topic it has -> partition count
    missing: frozenset[str] = frozenset()  # topics it says it does not have


async def describe_topics(client: Any, names: Iterable[str], timeout_s: float) -> BrokerView:
    """Ask the broker, through a bootstrapped aiokafka client, for the metadata of `names`
    without creating any of them (aiokafka's own requests would). Raises what aiokafka raises
    when no broker answers, or TimeoutError."""
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.protocol.metadata import MetadataRequest

    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known")
    request = MetadataRequest(sorted(names), allow_auto_topic_creation=False)
    response = await asyncio.wait_for(client.send(node, request), timeout_s)
    partitions: dict[str, int] = {}
    missing = set()
    for error_code, topic, _internal, parts in (t[:4] for t in response.topics):
        if error_code == UNKNOWN_TOPIC:
            missing.add(topic)
        elif parts:
            partitions[topic] = len(parts)
    return BrokerView(getattr(response, "cluster_id", None), partitions, frozenset(missing))


@dataclass(frozen=True)
class Verdict:
    """One probe judged: whether the broker answered, and the reason to exit if there is one."""

    reachable: bool
    exit_code: int | None = None
    message: str = ""


class BrokerWatch:
    """Judges the broker's answers, probe after probe.

    An unreachable broker is waited for `lost_after_s`, then the worker should exit (a restart
    waits for the broker and starts clean). A broker that answers but no longer has a topic it
    had, has it with another partition count, or is another cluster, lost the worker's data (a
    new or wiped broker: its records and committed offsets are gone); the worker should exit at
    once, and its restart creates the topics and starts from the broker's offsets. A topic is
    judged only once the broker has shown it (the changelog is created while the worker
    starts)."""

    UNREACHABLE_EXIT = 69  # EX_UNAVAILABLE
    DATA_LOST_EXIT = 75  # EX_TEMPFAIL: a restart recreates what is missing

    def __init__(self, topics: Iterable[str], lost_after_s: float, where: str = "") -> None:
        self.topics = frozenset(topics)
        self.lost_after_s = lost_after_s
        self.where = where or "the broker"
        self.known: dict[str, int] = {}  # topic -> partition count, as first seen
        self.cluster_id: str | None = None  # as first seen
        self.down_since: float | None = None

    def observe(self, view: BrokerView | None, now: float) -> Verdict:
        """`view` is None when the probe got no answer."""
        if view is None:
            if self.down_since is None:
                self.down_since = now
            down = now - self.down_since
            if down >= self.lost_after_s:
                return Verdict(False, self.UNREACHABLE_EXIT,
                               f"{self.where} has been unreachable for {down:.0f} s "
                               f"(FRONTLINE_BROKER_LOST_EXIT_S={self.lost_after_s:g}); exiting "
                               f"so that a restart waits for it and starts clean")
            return Verdict(False)
        self.down_since = None
        changed = self._changed(view)
        if changed:
            return Verdict(True, self.DATA_LOST_EXIT,
                           f"{self.where} no longer has this worker's topics as they were "
                           f"({changed}); exiting so that a restart creates the topics and "
                           f"starts from the broker's offsets")
        for topic, count in view.partitions.items():
            if topic in self.topics:
                self.known.setdefault(topic, count)
        self.cluster_id = self.cluster_id or view.cluster_id
        return Verdict(True)

    def _changed(self, view: BrokerView) -> str:
        was = self.cluster_id
        if was and view.cluster_id and view.cluster_id != was:
            return (f"it is another cluster, id {view.cluster_id} instead of {was}: their "
                    f"records and committed offsets are not there")
        gone = sorted(t for t in self.known if t in view.missing)
        if gone:
            return (f"{', '.join(gone)} gone: a new or wiped broker, their records and "
                    f"committed offsets lost")
        resized = sorted(f"{t} {self.known[t]} -> {n}" for t, n in view.partitions.items()
                         if t in self.known and n != self.known[t])
        if resized:
            return f"partition counts changed: {', '.join(resized)}"
        return ""
