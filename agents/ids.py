"""Deterministic ids: the same inputs in the same order always give the same ids."""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f1d1f0e-6b7e-5d36-9a51-3c0f3a7c2b10")

# Bytes of an event-id fingerprint in the dedupe memory (agents/employee_state.SeenIds).
DIGEST_LEN = 4


def stable_id(*parts: str) -> str:
    """A UUIDv5 over the parts; used for gap, assignment and award ids."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def digest(event_id: str) -> bytes:
    """The dedupe fingerprint of an input event id: 32 bits (DIGEST_LEN bytes) of blake2b.

    They are the first 4 bytes of the 48-bit blake2b digest that the earlier state formats
    stored (as hex, then base64), so a memory written by those versions migrates by truncation.
    """
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=6).digest()[:DIGEST_LEN]
