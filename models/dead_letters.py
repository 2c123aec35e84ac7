"""Dead letters (part of the contract): an input record that could not be processed is kept byte
for byte, with headers that say where it came from and why it was refused."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

# Header names on every dead letter (values are UTF-8).
H_TOPIC = "frontline.source.topic"
H_PARTITION = "frontline.source.partition"
H_OFFSET = "frontline.source.offset"
H_ERROR_TYPE = "frontline.error.type"
H_ERROR_MESSAGE = "frontline.error.message"

NOT_JSON = "not_json"
NOT_AN_OBJECT = "not_an_object"
INVALID_EVENT = "invalid_event"
UNSUPPORTED_SCHEMA = "unsupported_schema_version"
TOO_LATE = "too_late"
REJECTED = "rejected"
INTERNAL_ERROR = "internal_error"
ERROR_TYPES = (NOT_JSON, NOT_AN_OBJECT, INVALID_EVENT, UNSUPPORTED_SCHEMA, TOO_LATE, REJECTED,
               INTERNAL_ERROR)

_MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an input record goes to the dead-letter topic."""

    error_type: str
    message: str


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
        return Refusal(UNSUPPORTED_SCHEMA,
                       f"schema_version {first.get('input')!r} is not supported (expected 1)")
    parts = []
    for err in errors[:3]:
        field = ".".join(str(p) for p in err["loc"]) or "(record)"
        message = err["msg"].removeprefix("Value error, ")
        shown = json.dumps(err.get("input"), default=str)[:60]
        got = "" if err["type"] == "missing" or not err["loc"] else f" (got {shown})"
        parts.append(f"{field}: {message}{got}")
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return Refusal(INVALID_EVENT, "; ".join(parts) + more)


def headers(refusal: Refusal, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead letter."""
    return [
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_ERROR_TYPE, refusal.error_type.encode()),
        (H_ERROR_MESSAGE, refusal.message[:_MAX_MESSAGE].encode("utf-8", "replace")),
    ]
