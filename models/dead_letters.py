"""Dead letters (part of the contract): an input record that could not be processed, kept as it
was, with headers that say where it came from and why it was refused.

The dead letter's value is the original value, byte for byte, and its key the original key; a
null key or a null value (a tombstone) stays null. When the original does not fit in one record
the producer and the topic accept (`max_record_bytes`), the value (and, if even that is not
enough, the key) is cut to fit, and the headers say so and identify the original.

Headers (values are UTF-8 text unless said otherwise):

- `frontline.source.topic`, `frontline.source.partition`, `frontline.source.offset`: where the
  original record is. A record the worker had forwarded to its employee's partition (see
  agents/record_processor.py) and then refused is dead-lettered as the original: the original's
  topic, partition, offset and key, not those of the forwarded copy.
- `frontline.dead-letter.id`: a stable id of the original record (a hash of its topic, partition
  and offset). A worker that crashes after dead-lettering a record but before committing its
  offset dead-letters it again on restart, with the same id: consumers dedupe by it.
- `frontline.error.type`: one of ERROR_TYPES (below).
- `frontline.error.message`: one readable line, at most 500 characters.
- `frontline.forwarded-copy` (only when the refused record was a forwarded copy): where that
  copy was (topic/partition/offset).
- `frontline.dead-letter.truncated` (only when cut): `value`, or `key,value`.
- `frontline.original.value-size`, `frontline.original.value-sha256` (when the value was cut):
  the original value's length in bytes and its SHA-256 (hex); `frontline.original.key-size`,
  `frontline.original.key-sha256` likewise when the key was cut.

Error types: `not_json` (also a null value), `not_an_object`, `invalid_event` (wrong type,
missing field, out of range: the message names the field), `unsupported_schema_version`,
`implausible_time` (an event time too far ahead of the record's broker timestamp), `too_late`,
`rejected`, `output_too_large` (an output, the forwarded copy or the employee's state would be a
record larger than `max_record_bytes`), `internal_error` (a bug; the record is kept and the
worker goes on).
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

# Header names of a dead letter.
H_TOPIC = "frontline.source.topic"
H_PARTITION = "frontline.source.partition"
H_OFFSET = "frontline.source.offset"
H_ID = "frontline.dead-letter.id"
H_ERROR_TYPE = "frontline.error.type"
H_ERROR_MESSAGE = "frontline.error.message"
H_FORWARDED_COPY = "frontline.forwarded-copy"
H_TRUNCATED = "frontline.dead-letter.truncated"
H_VALUE_SIZE = "frontline.original.value-size"
H_VALUE_SHA256 = "frontline.original.value-sha256"
H_KEY_SIZE = "frontline.original.key-size"
H_KEY_SHA256 = "frontline.original.key-sha256"

NOT_JSON = "not_json"
NOT_AN_OBJECT = "not_an_object"
INVALID_EVENT = "invalid_event"
UNSUPPORTED_SCHEMA = "unsupported_schema_version"
IMPLAUSIBLE_TIME = "implausible_time"
TOO_LATE = "too_late"
REJECTED = "rejected"
OUTPUT_TOO_LARGE = "output_too_large"
INTERNAL_ERROR = "internal_error"
ERROR_TYPES = (NOT_JSON, NOT_AN_OBJECT, INVALID_EVENT, UNSUPPORTED_SCHEMA, IMPLAUSIBLE_TIME,
               TOO_LATE, REJECTED, OUTPUT_TOO_LARGE, INTERNAL_ERROR)

_MAX_MESSAGE = 500
_SHOWN = 60  # characters of a refused value shown in a message
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _SHOWN
_repr.maxlist = _repr.maxdict = 4


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an input record goes to the dead-letter topic."""

    error_type: str
    message: str


def _shown(value: Any) -> str:
    """A short JSON rendering of a refused input value (never fails, never renders it all)."""
    try:
        if isinstance(value, str):
            return json.dumps(value[:_SHOWN])[:_SHOWN]
        if isinstance(value, dict | list) and len(value) > 8:
            value = dict(list(value.items())[:8]) if isinstance(value, dict) else value[:8]
        return json.dumps(value, default=str)[:_SHOWN]
    except (TypeError, ValueError, RecursionError):
        return type(value).__name__


def _short_repr(value: Any) -> str:
    try:
        return _repr.repr(value)[:_SHOWN]
    except (TypeError, ValueError, RecursionError):
        return type(value).__name__


def explain_validation(exc: ValidationError) -> Refusal:
    """Turn pydantic's report on an input record into one readable line."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        return Refusal(NOT_JSON, f"value is not valid UTF-8 JSON: {first['msg']}")
    if not first["loc"] and kind in ("model_type", "dict_type", "model_attributes_type"):
        return Refusal(NOT_AN_OBJECT, "value is JSON but not an object")
    if first["loc"] == ("schema_version",):
        return Refusal(UNSUPPORTED_SCHEMA, f"schema_version {_short_repr(first.get('input'))} "
                       f"is not supported (expected 1)")
    parts = []
    for err in errors[:3]:
        field = ".".join(str(p) for p in err["loc"]) or "(record)"
        message = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] == "missing" or not err["loc"] else \
            f" (got {_shown(err.get('input'))})"
        parts.append(f"{field}: {message}{got}")
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return Refusal(INVALID_EVENT, "; ".join(parts) + more)


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """The stable id of the dead letter of the record at topic/partition/offset (32 hex)."""
    return hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()[:32]


def headers(refusal: Refusal, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead letter of the record at topic/partition/offset (the original's
    position: see the module docstring on forwarded copies)."""
    return [
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_ID, dead_letter_id(topic, partition, offset).encode()),
        (H_ERROR_TYPE, refusal.error_type.encode()),
        (H_ERROR_MESSAGE, refusal.message[:_MAX_MESSAGE].encode("utf-8", "replace")),
    ]


def identity_headers(part: str, original: bytes) -> list[tuple[str, bytes]]:
    """Headers that identify the original `part` ("key" or "value") of a cut dead letter."""
    size, sha256 = (H_KEY_SIZE, H_KEY_SHA256) if part == "key" else (H_VALUE_SIZE, H_VALUE_SHA256)
    return [(size, str(len(original)).encode()),
            (sha256, hashlib.sha256(original).hexdigest().encode())]
