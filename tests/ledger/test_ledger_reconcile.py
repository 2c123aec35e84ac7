"""Reconcile without a broker: the ids read from the topics' JSON are the contract's record ids,
and the ledger's side derives the same ids from its rows (an ended assignment stands for its
assigned and its ending record)."""

from __future__ import annotations

import json

from ledger.decisions import assigned, effect, ended

from models.events import OutputRecord, record_id
from streams import topics
from streams.ledger_reconcile import ledger_ids, reconcile
from streams.ledger_store import LedgerStore
from streams.topics import record_key, topic_of

A1, A2, A3 = assigned("a-1"), assigned("a-2", gap_id="gap-b"), assigned("a-3", gap_id="gap-c")
OUT: list[OutputRecord] = [A1, ended(A1, "completed", completion_event_id="done-1"), A2,
       ended(A2, "superseded"), A3, effect("e-1", "lesson", (2, 10), (7, 10)),
       effect("e-2", "comparison", (4, 10), (5, 10))]


def on_topics(records: list[OutputRecord]) -> dict[str, set[str]]:
    """What topic_ids reads: each record's id from its JSON, by contract topic."""
    ids: dict[str, set[str]] = {}
    for r in records:
        topic = topic_of(r)
        ids.setdefault(topic, set()).add(record_key(topic, json.loads(r.model_dump_json())))
    return ids


def test_ids_on_the_topics_are_the_contract_record_ids() -> None:
    ids = on_topics(OUT)
    assert ids == {topics.LESSON_ASSIGNMENTS: {"a-1", "a-1:completed", "a-2", "a-2:superseded",
                                               "a-3"},
                   topics.LESSON_EFFECTS: {"e-1", "e-2"}}
    assert set().union(*ids.values()) == {record_id(r) for r in OUT}


def test_the_ledger_reconciles_with_status_ids(store: LedgerStore) -> None:
    store.write(OUT)
    in_ledger = ledger_ids(store)
    assert in_ledger[topics.LESSON_ASSIGNMENTS] == on_topics(OUT)[topics.LESSON_ASSIGNMENTS]
    report = reconcile(on_topics(OUT), in_ledger)
    assert report.clean, report
    assert report.on_topics[topics.LESSON_EFFECTS] == report.in_ledger[topics.LESSON_EFFECTS] == 2


def test_an_ending_missing_on_either_side_is_listed(store: LedgerStore) -> None:
    expired = ended(A3, "expired", hours=24 * 10)
    store.write([*OUT, expired])  # the ledger has an ending the topics do not
    report = reconcile(on_topics(OUT), ledger_ids(store))
    assert not report.clean
    assert report.missing_on_topics[topics.LESSON_ASSIGNMENTS] == ["a-3:expired"]
    # an ending whose assignment never reached the ledger: the assignment is what is missing
    orphan = ended(assigned("a-4", gap_id="gap-d"), "cancelled")
    store.write([orphan])
    report = reconcile(on_topics([*OUT, expired, assigned("a-4", gap_id="gap-d"), orphan]),
                       ledger_ids(store))
    assert report.missing_in_ledger[topics.LESSON_ASSIGNMENTS] == ["a-4"]
    assert report.missing_on_topics[topics.LESSON_ASSIGNMENTS] == []
