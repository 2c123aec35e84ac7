"""Deterministic ids: the same inputs in the same order always give the same ids."""

from __future__ import annotations

import base64
import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f1d1f0e-6b7e-5d36-9a51-3c0f3a7c2b10")


def stable_id(*parts: str) -> str:
    """A UUIDv5 over the parts; used for gap, assignment and award ids."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def digest(event_id: str) -> str:
    """A short fixed-size fingerprint of an input event id, for the dedupe memory:
    48 bits as 8 URL-safe base64 characters (DIGEST_LEN)."""
    raw = hashlib.blake2b(event_id.encode("utf-8"), digest_size=6).digest()
    return base64.urlsafe_b64encode(raw).decode("ascii")


DIGEST_LEN = 8
