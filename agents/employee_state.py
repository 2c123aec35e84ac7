"""Per-employee state the decisions read and update (evidence runs, open gaps, lessons, recent
scores, points per day, the event ids already applied) and its versioned changelog format.

Format 2, what `EmployeeState.to_bytes` writes (integers little-endian):

    byte 0      the format version, 2
    u32 m       the dedupe memory's day chunks, then m times (i32 UTC day, u16 entries)
    4 bytes     per entry, chunk after chunk (see SeenIds)
    the rest    the other fields as one JSON object, raw deflate (4 KB window) primed with
                _ZDICT: "e" employee, "t" team, "n" newest event time, "p" last pruning,
                "s" standards, "a" assignments, "f" lesson-effect measurements (positional
                arrays: see each class's _pack), "x" excellence days and "d" points per day
                (ordinal-day deltas), "c" recent scores; fields at their default left out

Format 1 is the unversioned JSON that every earlier release wrote (its first byte is "{"); it
still loads: `from_bytes` migrates each of its variants (see `_from_legacy`), and the state is
written as format 2 the next time it changes. A newer format gets the next version byte and a
migration here. Decoding is tolerant (a field left out takes its default, an unknown one is
ignored, an array longer than this version knows is read as far as it knows); bytes that are
no known format raise StateFormatError, never anything else.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from agents.ids import DIGEST_LEN

FORMAT_VERSION = 2

_T = TypeVar("_T")

_DAY_S = 86400
_SLOT_S = 3600  # the dedupe memory remembers the hour of each event time
_LEGACY_SLOT = 31  # an entry migrated from a format that kept no time of day
_HASH_BITS = 27
_DROP_BITS = 8 * DIGEST_LEN - _HASH_BITS  # of a fingerprint, to make room for the hour
_LEGACY_ENTRY = _LEGACY_SLOT << _HASH_BITS
_U32 = struct.Struct("<I")
_CHUNK = struct.Struct("<iH")
_CHUNK_MAX = 0xFFFF
_MAX_FIELDS = 64 * 2**20  # bytes of inflated JSON that no real state comes near


def _not_json(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is no JSON data")


# Plain data, no cycles: no circular-reference check. The C encoder is made once, not per call
# as JSONEncoder.encode does (a tenth of the encoding of a state).
_C_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
if _C_ENCODER is not None:
    _C_ENCODE = _C_ENCODER(None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",",
                           False, False, True)

    def _json_bytes(value: object) -> bytes:
        return "".join(_C_ENCODE(value, 0)).encode()
else:  # pragma: no cover - a Python without the json accelerator
    _ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)

    def _json_bytes(value: object) -> bytes:
        return _ENCODER.encode(value).encode()


# Deflate primes its window with this (part of format 2: changing it needs a new version). It
# holds the shapes the JSON repeats and the default playbook's names, which most states carry;
# other names only compress a little less. A state's JSON is a few KB: a 4 KB window is enough,
# and memLevel 5 keeps it in one deflate block (lower levels cut it in many, each with its own
# code tables, and are slower).
_ZDICT = (
    b'"greeting","verified_identity","empathy","accurate_info","offered_more_help",'
    b'"proper_closing","hold_time","customer_satisfaction","first_contact_resolution",'
    b'"warm-greeting","identity-verification","empathy-statements","knowledge-base-search",'
    b'"offer-more-help","clean-closing","hold-etiquette","ownership-and-tone",'
    b'"resolve-first-time",0,"int-,1793694470.282],"c":[100.0,90.48,"x":[739923,1,1,'
    b'"d":[739923,120,1,150,"e":"emp-0015","t":"team-03","n":1794409661.217,'
    b'"p":1794406127.286,"s":{"greeting":[0,"43.654267/24.853397"],'
    b'"empathy":[0,"71.477612/47.208900"]'
)
_WBITS = -12
_MEM_LEVEL = 5

_STATUSES = ("assigned", "completed", "expired", "superseded", "cancelled")
_STATUS_CODE = {s: i for i, s in enumerate(_STATUSES)}


class StateFormatError(ValueError):
    """Bytes (or a dict) that are no employee state of any known format."""


# ---- the dedupe memory ---------------------------------------------------------------------


class SeenIds:
    """The dedupe memory: which event ids were applied, by the UTC day and hour of their event
    time. `days` maps a UTC day number to its entries, 4 bytes each (big-endian: the hour in
    the top 5 bits, then 27 bits of the event id's fingerprint, see agents.ids.digest) in the
    order they were added.

    An id is only looked up among the entries of its own event day and hour: a replay carries
    the same event time, so it is always found there. A new event is taken for a replay (and
    dropped) only if one of the k events of the same employee already applied in that day and
    hour has the same 27 bits: a chance of k / 2**27. At 50 interactions a day in an 8-hour
    shift k is about 3 on average and at most 6 or 7: 2e-8 per event on average, 5e-8 at
    worst; a 1,000-agent center loses one event in 1 to 3 years. (Day buckets of 32-bit
    fingerprints would give 50 / 2**32 = 1.2e-8, but the hour lets pruning keep the horizon
    and one hour instead of up to a day more: 100 to 200 bytes, 5-10 % of a state at 50 a day.)

    Entries migrated from format 1 (a 48-bit digest per day, no time of day) carry hour 31,
    which matches any hour of their day: 50 / 2**27 = 4e-7 for a replay of an event applied
    before the upgrade, during the one horizon they are kept."""

    __slots__ = ("days",)

    def __init__(self, days: dict[int, bytearray] | None = None) -> None:
        self.days: dict[int, bytearray] = days if days is not None else {}

    @staticmethod
    def _find(bucket: bytearray, needle: bytes) -> bool:
        i = bucket.find(needle)
        while i >= 0:
            if not i & 3:  # entries are 4-byte aligned; a match across two is no match
                return True
            i = bucket.find(needle, i + 1)
        return False

    @staticmethod
    def place(fingerprint: bytes, at: float) -> tuple[int, bytes]:
        """(UTC day, entry) of the event with this fingerprint and event time."""
        day, second = divmod(at, _DAY_S)
        slot = min(int(second // _SLOT_S), 23)  # a rounded `second` may be a whole day
        return int(day), (slot << _HASH_BITS | int.from_bytes(fingerprint, "big") >> _DROP_BITS
                          ).to_bytes(4, "big")

    def holds(self, place: tuple[int, bytes]) -> bool:
        bucket = self.days.get(place[0])
        if bucket is None:
            return False
        entry = place[1]
        find = self._find
        # an entry migrated from format 1 has hour 31: all top 5 bits set
        return find(bucket, entry) or find(bucket, bytes((entry[0] | 0xF8,)) + entry[1:])

    def put(self, place: tuple[int, bytes]) -> None:
        day, entry = place
        bucket = self.days.get(day)
        if bucket is None:
            self.days[day] = bytearray(entry)
        elif not self._find(bucket, entry):
            bucket += entry

    def contains(self, fingerprint: bytes, at: float) -> bool:
        """Whether the event with this fingerprint and event time was added."""
        return self.holds(self.place(fingerprint, at))

    def add(self, fingerprint: bytes, at: float) -> None:
        self.put(self.place(fingerprint, at))

    def add_legacy(self, fingerprint: bytes, day: int) -> None:
        """Add a fingerprint known only by its event day (format 1)."""
        bits = int.from_bytes(fingerprint[:DIGEST_LEN], "big") >> _DROP_BITS
        entry = (_LEGACY_ENTRY | bits).to_bytes(4, "big")
        bucket = self.days.setdefault(day, bytearray())
        if not self._find(bucket, entry):
            bucket += entry

    def forget_before(self, floor: float) -> None:
        """Forget the events of hours that end before `floor` (epoch seconds)."""
        first_day, second = divmod(floor, _DAY_S)
        first = int(first_day)
        for day in [d for d in self.days if d < first]:
            del self.days[day]
        bucket = self.days.get(first)
        if not bucket:
            return
        cut = int(second // _SLOT_S)  # the hours before it have ended
        if cut > 0 and min(bucket[0::4]) >> 3 < cut:
            kept = bytearray()
            for i in range(0, len(bucket), 4):
                if bucket[i] >> 3 >= cut:
                    kept += bucket[i:i + 4]
            if kept:
                self.days[first] = kept
            else:
                del self.days[first]

    def oldest(self) -> float | None:
        """Start of the oldest hour still remembered (epoch seconds)."""
        days = [d for d, bucket in self.days.items() if bucket]
        if not days:
            return None
        day = min(days)
        slot = min(self.days[day][0::4]) >> 3
        return float(day * _DAY_S + (0 if slot == _LEGACY_SLOT else slot * _SLOT_S))

    def copy(self) -> SeenIds:
        return SeenIds({d: bytearray(b) for d, b in self.days.items()})

    def __len__(self) -> int:
        return sum(len(b) for b in self.days.values()) >> 2

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeenIds) and _nonempty(self.days) == _nonempty(other.days)

    def __repr__(self) -> str:
        return f"SeenIds({len(self)} ids over {len(self.days)} days)"

    def _encode(self) -> list[bytes | bytearray]:
        days = self.days
        flat: list[int] = []
        for day, bucket in days.items():
            n = len(bucket) >> 2
            if n > _CHUNK_MAX:
                return self._encode_chunked()
            flat += (day, n)
        return [_heads(len(days)).pack(len(days), *flat), *days.values()]

    def _encode_chunked(self) -> list[bytes | bytearray]:
        heads: list[bytes | bytearray] = []
        bodies: list[bytes | bytearray] = []
        for day, bucket in self.days.items():
            n = len(bucket) >> 2
            if n <= _CHUNK_MAX:
                heads.append(_CHUNK.pack(day, n))
                bodies.append(bucket)
            else:  # a day this busy is written in several chunks
                for i in range(0, n, _CHUNK_MAX):
                    part = bucket[4 * i:4 * (i + _CHUNK_MAX)]
                    heads.append(_CHUNK.pack(day, len(part) >> 2))
                    bodies.append(part)
        return [_U32.pack(len(heads)), *heads, *bodies]

    @classmethod
    def _decode(cls, data: bytes, offset: int) -> tuple[SeenIds, int]:
        (m,) = _U32.unpack_from(data, offset)
        offset += 4
        if m > (len(data) - offset) // _CHUNK.size:
            raise StateFormatError(f"dedupe memory claims {m} day chunks, more than the bytes hold")
        heads = _heads(m).unpack_from(data, offset - 4)[1:]
        offset += _CHUNK.size * m
        days: dict[int, bytearray] = {}
        for i in range(0, 2 * m, 2):
            day, n = heads[i], heads[i + 1]
            end = offset + 4 * n
            if end > len(data):
                raise StateFormatError("dedupe memory is cut short")
            if n:
                if day in days:
                    days[day] += data[offset:end]
                else:
                    days[day] = bytearray(data[offset:end])
            offset = end
        return cls(days), offset

    def to_dict(self) -> dict[str, str]:
        return {str(day): bucket.hex() for day, bucket in self.days.items()}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> SeenIds:
        days = {}
        for day, hexed in _dict(d, "dedupe memory").items():
            raw = bytearray.fromhex(_str(hexed, "dedupe memory day"))
            if len(raw) % 4:
                raise StateFormatError(f"dedupe memory day {day} is not whole entries")
            if raw:
                days[int(day)] = raw
        return cls(days)


_HEADS: dict[int, struct.Struct] = {}


def _heads(m: int) -> struct.Struct:
    """The layout of the dedupe memory's header with m day chunks."""
    layout = _HEADS.get(m)
    if layout is None:
        layout = struct.Struct("<I" + "iH" * m)
        if len(_HEADS) < 64:
            _HEADS[m] = layout
    return layout


def _nonempty(days: dict[int, bytearray]) -> dict[int, bytearray]:
    return {d: b for d, b in days.items() if b}


# ---- per standard, assignment and lesson-effect measurement --------------------------------


@dataclass(slots=True)
class StandardState:
    # The sequential tests (agents/gap_rule.py): `s` the opening statistic (None until the
    # first outcome, which starts it at its head start), `c` the closing statistic while a gap
    # is open. The evidence run: the last interaction ids since the active statistic last stood
    # at zero and, in step, one character per outcome ("1" passed, "0" failed), plus the run's
    # full length and passes. Kept as a list and a string: they encode fast.
    s: int | None = None
    c: int = 0
    # "opening/closing" integer units per log-likelihood-ratio unit of `s` and `c` when they
    # were last stepped (a string: it is encoded on every state write): a playbook change that
    # moves the tests' steps rescales them (agents/gap_rule.py)
    scales: str | None = None
    ids: list[str] = field(default_factory=list)
    flags: str = ""
    run_n: int = 0
    run_passes: int = 0
    gap_id: str | None = None
    gap_opened_at: float | None = None
    gap_lesson_completed: bool = False
    gap_assignments: int = 0
    gap_deferred: bool = False  # a record said why this gap's lesson waits
    last_assigned_at: float | None = None
    # the standard's target when its open gap opened: the gap's closing record carries it even
    # if the standard has left the playbook by then
    gap_target: float | None = None

    def copy(self) -> StandardState:
        return StandardState(self.s, self.c, self.scales, self.ids.copy(), self.flags,
                             self.run_n, self.run_passes, self.gap_id, self.gap_opened_at,
                             self.gap_lesson_completed, self.gap_assignments,
                             self.gap_deferred, self.last_assigned_at, self.gap_target)

    def to_dict(self) -> dict[str, Any]:
        """The fields by the keys format 1 used (readable; `from_dict` reads every variant)."""
        return {
            "s": self.s,
            "c": self.c,
            "k": self.scales,
            "wi": self.ids,
            "wp": self.flags,
            "rn": self.run_n,
            "rp": self.run_passes,
            "g": self.gap_id,
            "go": self.gap_opened_at,
            "gl": self.gap_lesson_completed,
            "ga": self.gap_assignments,
            "gd": self.gap_deferred,
            "la": self.last_assigned_at,
            "gt": self.gap_target,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StandardState:
        """Every format-1 variant: the rolling-window versions ("w", or "wi"/"wp" without
        "s") wrote no sequential statistics, so their tests start afresh (their window is no
        run); scales written as a pair of numbers become the string GapRule compares."""
        d = _dict(d, "standard")
        fresh = "s" not in d
        ids, flags = ([], "") if fresh else _run(d.get("wi", []), d.get("wp", ""))
        return cls(
            s=_opt_int(d.get("s"), "standard statistic"),
            c=_int(d.get("c", 0), "standard closing statistic"),
            scales=_scales(d.get("k")),
            ids=ids,
            flags=flags,
            run_n=_int(d.get("rn", 0), "standard run length"),
            run_passes=_int(d.get("rp", 0), "standard run passes"),
            gap_id=_opt_str(d.get("g"), "gap id"),
            gap_opened_at=_opt_num(d.get("go"), "gap opening time"),
            gap_lesson_completed=_bool(d.get("gl", False), "gap lesson completed"),
            gap_assignments=_int(d.get("ga", 0), "gap assignments"),
            gap_deferred=_bool(d.get("gd", False), "gap deferred"),
            last_assigned_at=_opt_num(d.get("la"), "last assignment time"),
            gap_target=_opt_num(d.get("gt"), "gap target"),
        )

    def _pack(self) -> list[Any]:
        """Positional, trailing defaults left out; the run's length and passes only as far as
        they exceed what the kept ids and outcomes show; the ids joined by commas unless one
        has a comma (one JSON string encodes and compresses faster than a list of them)."""
        ids, flags = self.ids, self.flags
        if (not ids and self.gap_id is None and self.last_assigned_at is None and not self.c
                and not flags and not self.run_n and not self.run_passes
                and not self.gap_assignments and self.gap_opened_at is None
                and not self.gap_lesson_completed and not self.gap_deferred
                and self.gap_target is None):  # most standards, most of the time
            if self.scales is not None:
                return [self.s, self.scales]
            return [] if self.s is None else [self.s]
        rn, rp = self.run_n - len(ids), self.run_passes - flags.count("1")
        packed_ids: list[str] | str = ids
        if ids:
            joined = ",".join(ids)
            if joined.count(",") == len(ids) - 1:
                packed_ids = joined
        v = [self.s, self.scales, self.c, flags, packed_ids, rn, rp, self.gap_id,
             self.gap_opened_at,
             1 if self.gap_lesson_completed else 0, self.gap_assignments,
             1 if self.gap_deferred else 0, self.last_assigned_at, self.gap_target]
        if self.gap_target is not None:
            return v
        if self.last_assigned_at is not None:
            return v[:13]
        if self.gap_deferred:
            return v[:12]
        if self.gap_assignments:
            return v[:11]
        if self.gap_lesson_completed:
            return v[:10]
        if self.gap_opened_at is not None:
            return v[:9]
        if self.gap_id is not None:
            return v[:8]
        if rp:
            return v[:7]
        if rn:
            return v[:6]
        if ids:
            return v[:5]
        if flags:
            return v[:4]
        if self.c:
            return v[:3]
        if self.scales is not None:
            return v[:2]
        return v[:1] if self.s is not None else []

    @classmethod
    def _unpack(cls, v: Any) -> StandardState:
        v = _list(v, "standard")
        v = v + _STD_DEFAULTS[len(v):] if len(v) < len(_STD_DEFAULTS) else v
        ids, flags = _run(v[4], v[3])
        return cls(
            s=_opt_int(v[0], "standard statistic"),
            scales=_scales(v[1]),
            c=_int(v[2], "standard closing statistic"),
            ids=ids,
            flags=flags,
            run_n=len(ids) + _int(v[5], "standard run length"),
            run_passes=flags.count("1") + _int(v[6], "standard run passes"),
            gap_id=_opt_str(v[7], "gap id"),
            gap_opened_at=_opt_num(v[8], "gap opening time"),
            gap_lesson_completed=_bool(v[9], "gap lesson completed"),
            gap_assignments=_int(v[10], "gap assignments"),
            gap_deferred=_bool(v[11], "gap deferred"),
            last_assigned_at=_opt_num(v[12], "last assignment time"),
            gap_target=_opt_num(v[13], "gap target"),
        )


_STD_DEFAULTS: list[Any] = [None, None, 0, "", [], 0, 0, None, None, 0, 0, 0, None, None]


@dataclass(slots=True)
class EffectUnit:
    """A gap whose standard is being measured for its lesson's effect: the outcomes since the
    gap opened (`pre`, the last 2 x window), then, once its lesson is completed, the window
    before completion (`before`) and the outcomes after it (`after`)."""

    standard: str
    lesson_id: str
    pre: str = ""
    seen: int = 0  # applicable outcomes since the gap opened
    assignment_id: str | None = None
    before: str | None = None
    after: str | None = None
    comparison_done: bool = False

    def copy(self) -> EffectUnit:
        return EffectUnit(self.standard, self.lesson_id, self.pre, self.seen,
                          self.assignment_id, self.before, self.after, self.comparison_done)

    def to_dict(self) -> dict[str, Any]:
        return {"s": self.standard, "l": self.lesson_id, "p": self.pre, "n": self.seen,
                "a": self.assignment_id, "b": self.before, "f": self.after,
                "cd": self.comparison_done}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EffectUnit:
        d = _dict(d, "lesson-effect measurement")
        return cls._unpack([d.get("s"), d.get("l"), d.get("p", ""), d.get("n", 0), d.get("a"),
                            d.get("b"), d.get("f"), d.get("cd", False)])

    def _pack(self) -> list[Any]:
        v = [self.standard, self.lesson_id, self.pre, self.seen, self.assignment_id,
             self.before, self.after, 1 if self.comparison_done else 0]
        n = 8
        while n > 2 and v[n - 1] == _EFFECT_DEFAULTS[n - 1]:
            n -= 1
        return v[:n]

    @classmethod
    def _unpack(cls, v: Any) -> EffectUnit:
        v = _list(v, "lesson-effect measurement")
        if len(v) < 2:
            raise StateFormatError("a lesson-effect measurement has no standard or lesson")
        v = v + _EFFECT_DEFAULTS[len(v):] if len(v) < len(_EFFECT_DEFAULTS) else v
        return cls(_str(v[0], "measured standard"), _str(v[1], "measured lesson"),
                   _outcomes(v[2], "outcomes before"), _int(v[3], "outcomes seen"),
                   _opt_str(v[4], "measured assignment"), _opt_outcomes(v[5], "window before"),
                   _opt_outcomes(v[6], "window after"), _bool(v[7], "comparison done"))


_EFFECT_DEFAULTS: list[Any] = ["", "", "", 0, None, None, None, 0]


@dataclass(slots=True)
class AssignmentState:
    standard: str
    lesson_id: str
    gap_id: str
    assigned_at: float
    completed_at: float | None = None
    due_at: float | None = None
    status: str = "assigned"  # assigned | completed | expired | superseded | cancelled
    ended_at: float | None = None

    @property
    def open(self) -> bool:
        return self.status == "assigned"

    def copy(self) -> AssignmentState:
        return AssignmentState(self.standard, self.lesson_id, self.gap_id, self.assigned_at,
                               self.completed_at, self.due_at, self.status, self.ended_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.standard,
            "l": self.lesson_id,
            "g": self.gap_id,
            "a": self.assigned_at,
            "c": self.completed_at,
            "d": self.due_at,
            "st": self.status,
            "e": self.ended_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AssignmentState:
        """Format 1 before the lesson lifecycle had only a completion time ("c")."""
        d = _dict(d, "assignment")
        for key in ("s", "l", "g", "a"):
            if key not in d:
                raise StateFormatError(f"an assignment has no {key!r}")
        completed = _opt_num(d.get("c"), "completion time")
        status = d.get("st", "assigned" if completed is None else "completed")
        return cls(_str(d["s"], "assignment standard"), _str(d["l"], "assignment lesson"),
                   _str(d["g"], "assignment gap"), _num(d["a"], "assignment time"), completed,
                   _opt_num(d.get("d"), "due time"), _str(status, "assignment status"),
                   _opt_num(d.get("e", completed), "end time"))

    def _pack(self) -> list[Any]:
        """Positional; the status as its index in _STATUSES; the completion time only when it
        is not the end time of a completed assignment."""
        status = self.status
        completed_default = self.ended_at if status == "completed" else None
        v = [self.standard, self.lesson_id, self.gap_id, self.assigned_at, self.due_at,
             _STATUS_CODE.get(status, status), self.ended_at, self.completed_at]
        if self.completed_at != completed_default:
            return v
        if self.ended_at is not None:
            return v[:7]
        if status != "assigned":
            return v[:6]
        return v[:5] if self.due_at is not None else v[:4]

    @classmethod
    def _unpack(cls, v: Any) -> AssignmentState:
        v = _list(v, "assignment")
        if len(v) < 4:
            raise StateFormatError("an assignment has no standard, lesson, gap or time")
        due = _opt_num(v[4], "due time") if len(v) > 4 else None
        code = v[5] if len(v) > 5 else 0
        if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < len(_STATUSES):
            status = _STATUSES[code]
        else:
            status = _str(code, "assignment status")
        ended = _opt_num(v[6], "end time") if len(v) > 6 else None
        completed = _opt_num(v[7], "completion time") if len(v) > 7 else (
            ended if status == "completed" else None)
        return cls(_str(v[0], "assignment standard"), _str(v[1], "assignment lesson"),
                   _str(v[2], "assignment gap"), _num(v[3], "assignment time"), completed,
                   due, status, ended)


# ---- the employee -------------------------------------------------------------------------


@dataclass(slots=True)
class EmployeeState:
    employee_id: str
    team_id: str = ""
    # the event ids already applied; pruned past the dedupe horizon
    seen: SeenIds = field(default_factory=SeenIds)
    newest: float = 0.0
    pruned_at: float = 0.0
    standards: dict[str, StandardState] = field(default_factory=dict)
    assignments: dict[str, AssignmentState] = field(default_factory=dict)
    effects: dict[str, EffectUnit] = field(default_factory=dict)  # by gap id
    scores: list[float] = field(default_factory=list)
    # days (playbook time zone) already awarded sustained excellence, kept as long as points
    excellence_days: list[str] = field(default_factory=list)
    points: dict[str, int] = field(default_factory=dict)

    def standard(self, name: str) -> StandardState:
        st = self.standards.get(name)
        if st is None:
            st = self.standards[name] = StandardState()
        return st

    def forget_days_before(self, day: str) -> None:
        """Drop per-day bookkeeping older than `day` (ISO dates compare as strings)."""
        self.points = {d: p for d, p in self.points.items() if d >= day}
        self.excellence_days = [d for d in self.excellence_days if d >= day]

    def open_assignments(self) -> int:
        return sum(1 for a in self.assignments.values() if a.open)

    def copy(self) -> EmployeeState:
        """An independent copy, equal to `from_bytes(to_bytes())` and several times faster."""
        return EmployeeState(
            self.employee_id, self.team_id, self.seen.copy(), self.newest, self.pruned_at,
            {k: v.copy() for k, v in self.standards.items()},
            {k: v.copy() for k, v in self.assignments.items()},
            {k: v.copy() for k, v in self.effects.items()},
            self.scores.copy(), self.excellence_days.copy(), self.points.copy())

    # ---- format 2 ---------------------------------------------------------------------------

    def _fields(self) -> dict[str, Any]:
        """Every field but the dedupe memory, short keys, defaults left out. Days are written
        as ordinal-day deltas when they are plain ISO dates ("x", "d"), else as they are
        ("X", "D")."""
        d: dict[str, Any] = {"e": self.employee_id}
        if self.team_id:
            d["t"] = self.team_id
        if self.newest:
            d["n"] = self.newest
        if self.pruned_at:
            d["p"] = self.pruned_at
        if self.standards:
            d["s"] = {k: v._pack() for k, v in self.standards.items()}
        if self.assignments:
            d["a"] = {k: v._pack() for k, v in self.assignments.items()}
        if self.effects:
            d["f"] = {k: v._pack() for k, v in self.effects.items()}
        if self.excellence_days:
            packed = _pack_days(self.excellence_days)
            if packed is None:
                d["X"] = self.excellence_days
            else:
                d["x"] = packed
        if self.points:
            packed = _pack_days(list(self.points))
            if packed is None:
                d["D"] = self.points
            else:
                values = list(self.points.values())
                d["d"] = [x for pair in zip(packed, values, strict=True) for x in pair]
        return d

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-compatible data: format 2's fields plus the format version ("v")
        and the dedupe memory as hex per day ("i"). `from_dict` reads it back."""
        d = self._fields()
        if self.scores:
            d["c"] = self.scores
        d["v"] = FORMAT_VERSION
        d["i"] = self.seen.to_dict()
        return d

    def to_bytes(self) -> bytes:
        """Format 2, as written to the state changelog."""
        deflate = zlib.compressobj(1, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY,
                                   _ZDICT)
        text = _json_bytes(self._fields())
        if self.scores:  # "c", the last key: most of its floats' texts are known already
            text = b"".join((text[:-1], b',"c":', _floats_json(self.scores), b"}"))
        return b"".join([_VERSION_BYTE, *self.seen._encode(), deflate.compress(text),
                         deflate.flush()])

    @classmethod
    def from_bytes(cls, data: bytes) -> EmployeeState:
        """Any known format; raises StateFormatError for anything else."""
        if not data:
            raise StateFormatError("employee state is empty")
        version = data[0]
        try:
            if version == FORMAT_VERSION:
                seen, offset = SeenIds._decode(data, 1)
                inflate = zlib.decompressobj(_WBITS, zdict=_ZDICT)
                text = inflate.decompress(data[offset:], _MAX_FIELDS)
                if inflate.unconsumed_tail:
                    raise StateFormatError(f"the state's fields inflate to more than "
                                           f"{_MAX_FIELDS} bytes")
                if not inflate.eof:
                    raise StateFormatError("the state's fields are cut short")
                return cls._from_fields(json.loads(text), seen)
            if version in _JSON_STARTS:  # format 1: JSON, no version
                return cls._from_legacy(json.loads(data))
        except StateFormatError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
                RecursionError, struct.error, zlib.error) as exc:
            raise StateFormatError(f"employee state (format {_format_name(version)}) cannot "
                                   f"be decoded: {type(exc).__name__}: {exc}") from exc
        raise StateFormatError(f"employee state has unknown format version {version}; this "
                               f"version reads formats 1 and {FORMAT_VERSION}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmployeeState:
        """`to_dict`'s output, or a format-1 state as JSON data."""
        try:
            d = _dict(d, "employee state")
            if d.get("v") == FORMAT_VERSION:
                return cls._from_fields(d, SeenIds.from_dict(d.get("i", {})))
            return cls._from_legacy(d)
        except StateFormatError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) \
                as exc:
            raise StateFormatError(f"employee state cannot be decoded: "
                                   f"{type(exc).__name__}: {exc}") from exc

    @classmethod
    def _from_fields(cls, d: Any, seen: SeenIds) -> EmployeeState:
        d = _dict(d, "employee state")
        if "x" in d:
            excellence = _unpack_days(d["x"], "excellence days")
        else:
            excellence = [_str(x, "excellence day") for x in _list(d.get("X", []),
                                                                   "excellence days")]
        if "d" in d:
            flat = _list(d["d"], "points")
            if len(flat) % 2:
                raise StateFormatError("points per day are not day and points pairs")
            days = _unpack_days(flat[0::2], "points days")
            points = dict(zip(days, (_int(p, "points") for p in flat[1::2]), strict=True))
        else:
            points = _points(d.get("D", {}))
        return cls._build(d, seen, ("s", "a", "f", "c"), (
            StandardState._unpack, AssignmentState._unpack, EffectUnit._unpack),
            excellence, points)

    @classmethod
    def _build(cls, d: dict[str, Any], seen: SeenIds, keys: tuple[str, str, str, str],
               readers: tuple[Callable[[Any], StandardState], Callable[[Any], AssignmentState],
                              Callable[[Any], EffectUnit]],
               excellence: list[str], points: dict[str, int]) -> EmployeeState:
        """A state from the fields both formats name alike ("e", "t", "n", "p"), and those
        they name (`keys`: standards, assignments, measurements, scores) and read apart."""
        if "e" not in d:
            raise StateFormatError("employee state has no employee id")
        standards, assignments, effects, scores = keys
        read_standard, read_assignment, read_effect = readers
        return cls(
            employee_id=_str(d["e"], "employee id"),
            team_id=_str(d.get("t", ""), "team id"),
            seen=seen,
            newest=_num(d.get("n", 0.0), "newest event time"),
            pruned_at=_num(d.get("p", 0.0), "pruning time"),
            standards=_mapping(d.get(standards, {}), "standard", read_standard),
            assignments=_mapping(d.get(assignments, {}), "assignment", read_assignment),
            effects=_mapping(d.get(effects, {}), "lesson-effect measurement", read_effect),
            scores=[_num(x, "score") for x in _list(d.get(scores, []), "scores")],
            excellence_days=excellence,
            points=points,
        )

    # ---- format 1 ---------------------------------------------------------------------------

    @classmethod
    def _from_legacy(cls, d: Any) -> EmployeeState:
        """Format 1, every variant that shipped (each added keys, none was versioned):

        - the first changelog (written through Faust's JSON codec): "seen" maps the hex 48-bit
          digest of each event id to its event time; standards keep a rolling window "w";
          one sustained-excellence day "xd" (a string or null);
        - then "xd" a list of days;
        - then the compact JSON of `to_bytes`: "seen" maps a UTC day to its 8-character
          base64 digests, and the windows are "wi"/"wp";
        - then the sequential tests ("s", "c", "rn", "rp", "gd"), the lesson lifecycle
          ("st", "d", "e" of assignments) and lesson-effect measurements ("fx");
        - then the scales "k" of the tests, first as a pair of numbers, then as a string.
        """
        d = _dict(d, "employee state")
        seen = SeenIds()
        for key, value in _dict(d.get("seen", {}), "dedupe memory").items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                seen.add(bytes.fromhex(key)[:DIGEST_LEN], value)  # hex digest -> event time
            else:
                day, digests = int(key), _str(value, "dedupe memory day")
                for i in range(0, len(digests), 8):
                    seen.add_legacy(base64.urlsafe_b64decode(digests[i:i + 8]), day)
        xd = d.get("xd", [])
        excellence = [] if xd is None else [xd] if isinstance(xd, str) else list(
            _list(xd, "excellence days"))
        return cls._build(d, seen, ("std", "asg", "fx", "sc"), (
            StandardState.from_dict, AssignmentState.from_dict, EffectUnit.from_dict),
            [_str(x, "excellence day") for x in excellence], _points(d.get("pts", {})))


_VERSION_BYTE = bytes([FORMAT_VERSION])
_JSON_STARTS = frozenset(b"{ \t\r\n")


def _format_name(version: int) -> str:
    return "1" if version in _JSON_STARTS else str(version)


# ---- days as ordinal deltas ----------------------------------------------------------------

_ORDINALS: dict[str, int | None] = {}
_ISO_DAYS: dict[int, str] = {}


def _ordinal(day: str) -> int | None:
    """The proleptic ordinal of an ISO date ("2026-11-04"), None for any other string."""
    o = _ORDINALS.get(day, -1)
    if o == -1:
        try:
            parsed = date.fromisoformat(day)
            o = parsed.toordinal() if parsed.isoformat() == day else None
        except (TypeError, ValueError):
            o = None
        if len(_ORDINALS) > 4096:
            _ORDINALS.clear()
        _ORDINALS[day] = o
    return o


def _iso_day(o: int) -> str:
    day = _ISO_DAYS.get(o)
    if day is None:
        day = date.fromordinal(o).isoformat()
        if len(_ISO_DAYS) > 4096:
            _ISO_DAYS.clear()
        _ISO_DAYS[o] = day
    return day


def _pack_days(days: list[str]) -> list[int] | None:
    """The first day's ordinal, then each day's distance from the one before; None unless
    every day is an ISO date."""
    key = tuple(days)
    packed = _PACKED_DAYS.get(key, False)
    if packed is False:
        packed = _pack_days_now(days)
        if len(_PACKED_DAYS) > 4096:
            _PACKED_DAYS.clear()
        _PACKED_DAYS[key] = packed
    return packed  # type: ignore[return-value]


_PACKED_DAYS: dict[tuple[str, ...], list[int] | None | bool] = {}


def _pack_days_now(days: list[str]) -> list[int] | None:
    out: list[int] = []
    prev = 0
    for day in days:
        o = _ordinal(day)
        if o is None:
            return None
        out.append(o - prev)
        prev = o
    return out


def _unpack_days(v: Any, what: str) -> list[str]:
    out = []
    o = 0
    for delta in _list(v, what):
        o += _int(delta, what)
        out.append(_iso_day(o))
    return out


_FLOAT_JSON: dict[float, bytes] = {}


def _floats_json(values: list[float]) -> bytes:
    """A JSON array of numbers; the texts of scores repeat (two decimals), so they are kept."""
    texts = _FLOAT_JSON
    try:
        return b"[" + b",".join([texts[x] for x in values]) + b"]"
    except (KeyError, TypeError):
        pass
    if len(texts) > 20000:
        texts.clear()
    for x in values:
        texts[x] = _json_bytes(x)
    return _json_bytes(values)


# ---- checked reading -----------------------------------------------------------------------


def _bad(what: str, v: Any) -> StateFormatError:
    return StateFormatError(f"{what} is not valid: {v!r:.60}")


def _dict(v: Any, what: str) -> dict[Any, Any]:
    if not isinstance(v, dict):
        raise _bad(what, v)
    return v


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise _bad(what, v)
    return v


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise _bad(what, v)
    return v


def _mapping(v: Any, what: str, read: Callable[[Any], _T]) -> dict[str, _T]:
    """A JSON object of `what`s by their ids or names, each read by `read`."""
    return {_str(k, f"{what} key"): read(x) for k, x in _dict(v, f"{what}s").items()}


def _points(v: Any) -> dict[str, int]:
    return {_str(k, "points day"): _int(p, "points") for k, p in _dict(v, "points").items()}


def _opt_str(v: Any, what: str) -> str | None:
    return None if v is None else _str(v, what)


def _int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(what, v)
    return v


def _opt_int(v: Any, what: str) -> int | None:
    return None if v is None else _int(v, what)


def _num(v: Any, what: str) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise _bad(what, v)
    return v


def _opt_num(v: Any, what: str) -> float | None:
    return None if v is None else _num(v, what)


def _bool(v: Any, what: str) -> bool:
    if v in (0, 1) and not isinstance(v, float):
        return bool(v)
    raise _bad(what, v)


def _outcomes(v: Any, what: str) -> str:
    if not isinstance(v, str) or v.strip("01"):
        raise _bad(what, v)
    return v


def _opt_outcomes(v: Any, what: str) -> str | None:
    return None if v is None else _outcomes(v, what)


def _run(ids: Any, flags: Any) -> tuple[list[str], str]:
    """An evidence run's ids (a list, or joined by commas) and outcomes; if they differ in
    length, the most recent ones that line up."""
    if isinstance(ids, str):
        ids = ids.split(",")
    else:
        ids = [_str(i, "evidence interaction id") for i in _list(ids, "evidence ids")]
    flags = _outcomes(flags, "evidence outcomes")
    n = min(len(ids), len(flags))
    if n != len(ids) or n != len(flags):
        ids, flags = ids[len(ids) - n:], flags[len(flags) - n:]
    return ids, flags


def _scales(v: Any) -> str | None:
    """The scales of the gap tests: a string, or a pair of numbers as written by the version
    that first kept them (formatted as agents.gap_rule.GapRule.scales is)."""
    if v is None or isinstance(v, str):
        return v
    pair = _list(v, "test scales")
    if len(pair) != 2:
        raise _bad("test scales", v)
    return f"{_num(pair[0], 'test scale'):.6f}/{_num(pair[1], 'test scale'):.6f}"
