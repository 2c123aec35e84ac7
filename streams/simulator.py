"""Seeded synthetic contact-center traffic (with malformed, duplicate and late records) that also
plays the learning system, and a runner that produces it to Kafka."""

from __future__ import annotations

import bisect
import heapq
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

log = logging.getLogger(__name__)

# The traits a simulated employee has a pass probability for. They are named like the standards
# of the default playbook so that a lesson assigned for a standard improves the matching trait.
QA_ITEMS = ("greeting", "verified_identity", "empathy", "accurate_info", "offered_more_help",
            "proper_closing")
HOLD_TIME = "hold_time"
FIRST_CONTACT_RESOLUTION = "first_contact_resolution"
CUSTOMER_SATISFACTION = "customer_satisfaction"
TRAITS = QA_ITEMS + (HOLD_TIME, FIRST_CONTACT_RESOLUTION, CUSTOMER_SATISFACTION)

WEAK_BELOW = 0.7  # a trait under this pass probability is reported as weak

_SHIFT_MS = 8 * 3600 * 1000
_DAY_MS = 24 * 3600 * 1000
_DUPLICATE_MEMORY = 1000  # duplicates re-send one of the last this many valid interactions
_LATE_AFTER = (20, 1500)  # a late event is delivered this many interaction records later
_MALFORMED_KINDS = ("not_json", "not_object", "missing_field", "wrong_type", "out_of_range",
                    "ends_before_start", "unknown_channel")
_REQUIRED_FIELDS = ("event_id", "interaction_id", "employee_id", "team_id", "channel",
                    "started_at", "ended_at", "wait_s", "talk_s", "hold_s", "wrap_s", "transfers")
# nps a customer gives, by the csat they gave (index csat - 1): inclusive ranges
_NPS_BY_CSAT = ((0, 3), (2, 5), (5, 7), (7, 9), (9, 10))
# How a contact goes besides the employee's traits; standard_pass_rates derives the true pass
# rates of the standards from these, so _interaction must use them and nothing else.
_HOLD_LIMIT_S = 60  # a hold longer than this fails the hold_time standard
_TRANSFERRED = 0.12  # share of contacts transferred (0.02 of all contacts twice)
_TRANSFERRED_RESOLVES = 0.7  # a transferred customer was often bounced around unsolved
_OUTCOME_UNKNOWN = 0.10  # share of contacts whose resolution is not known
_QA_ITEM_MISSING = 0.05  # share of contacts where one QA item (any) did not apply
_LONG_HOLD_QUALITY = 0.8  # how much a long hold spoils the contact for the customer
_UNRESOLVED_QUALITY = 0.7  # ... and an unresolved request
_to_json = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True)
class SimulatorConfig:
    """What traffic to simulate; shares are of interaction records."""

    seed: int = 7
    employees: int = 60
    teams: int = 6
    malformed_share: float = 0.02
    duplicate_share: float = 0.01
    late_share: float = 0.03
    survey_share: float = 0.35
    start: datetime = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    contacts_per_day: int = 55
    learning: bool = True

    def __post_init__(self) -> None:
        if self.employees < 1:
            raise ValueError(f"employees must be at least 1, got {self.employees}")
        if not 1 <= self.teams <= self.employees:
            raise ValueError(f"teams must be between 1 and employees ({self.employees}), "
                             f"got {self.teams}")
        if self.contacts_per_day < 1:
            raise ValueError(f"contacts_per_day must be at least 1, got {self.contacts_per_day}")
        for name in ("malformed_share", "duplicate_share", "late_share", "survey_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.malformed_share + self.duplicate_share > 1.0:
            raise ValueError("malformed_share + duplicate_share must not exceed 1")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got {self.start.isoformat()}")


@dataclass(frozen=True)
class SimRecord:
    """One record to produce: to the interactions or the lesson-completions topic."""

    topic_kind: Literal["interaction", "completion"]
    key: bytes
    value: bytes
    kind: Literal["valid", "duplicate", "malformed"]
    event_id: str | None


@dataclass(frozen=True)
class EmployeeProfile:
    """A snapshot of a simulated employee: pass probability per trait, and the weak traits."""

    employee_id: str
    team_id: str
    pass_probability: Mapping[str, float]
    weak: tuple[str, ...]


@dataclass(frozen=True)
class _Channel:
    name: str
    share: float
    wait_mean_s: float
    wait_range_s: tuple[float, float]
    talk_median_s: float
    talk_range_s: tuple[float, float]
    wrap_range_s: tuple[float, float]
    has_hold: bool


# Email waits are queue times of hours and their "talk" is writing time; chats run long because
# agents handle several at once.
_CHANNELS = (
    _Channel("voice", 0.50, 45, (2, 600), 330, (120, 900), (20, 120), True),
    _Channel("chat", 0.30, 30, (2, 600), 600, (240, 1800), (10, 90), True),
    _Channel("email", 0.12, 3600, (60, 4 * 3600), 200, (45, 600), (10, 60), False),
    _Channel("messaging", 0.08, 120, (2, 1800), 300, (60, 1200), (5, 60), False),
)


def standard_pass_rates(p: Mapping[str, float]) -> dict[str, float]:
    """The true probability that each standard of the default playbook passes in one of an
    employee's interactions where it applies, given the employee's trait probabilities `p`.

    Exact expressions of how _interaction makes a contact, no estimate: a QA item passes with
    its trait probability; hold_time too (a failed hold is always over the limit, a kept one
    never). A request is resolved with p[first_contact_resolution], less often when the contact
    was transferred. A surveyed customer gives 4 or 5 with p[customer_satisfaction] * quality²,
    where quality = (QA items passed / items) * 0.8 if the hold was long * 0.7 if unresolved;
    the three factors are independent, so E[quality²] is the product of their E[x²]."""
    rates = {item: p[item] for item in QA_ITEMS}
    rates[HOLD_TIME] = p[HOLD_TIME]
    fcr = p[FIRST_CONTACT_RESOLUTION] * (1.0 - _TRANSFERRED * (1.0 - _TRANSFERRED_RESOLVES))
    rates[FIRST_CONTACT_RESOLUTION] = fcr

    def mean_share_squared(items: tuple[str, ...]) -> float:
        # E[(S/n)²] of S passes of n independent items: (Var S + (E S)²) / n²
        mean = sum(p[i] for i in items)
        variance = sum(p[i] * (1.0 - p[i]) for i in items)
        return (variance + mean * mean) / (len(items) * len(items))

    qa = ((1.0 - _QA_ITEM_MISSING) * mean_share_squared(QA_ITEMS)
          + _QA_ITEM_MISSING * sum(mean_share_squared(tuple(i for i in QA_ITEMS if i != gone))
                                   for gone in QA_ITEMS) / len(QA_ITEMS))
    held = sum(c.share for c in _CHANNELS if c.has_hold)
    hold = 1.0 - held * (1.0 - p[HOLD_TIME]) * (1.0 - _LONG_HOLD_QUALITY ** 2)
    outcome = 1.0 - (1.0 - _OUTCOME_UNKNOWN) * (1.0 - fcr) * (1.0 - _UNRESOLVED_QUALITY ** 2)
    rates[CUSTOMER_SATISFACTION] = p[CUSTOMER_SATISFACTION] * qa * hold * outcome
    return rates


@dataclass
class _Employee:
    employee_id: str
    team_id: str
    key: bytes
    p: dict[str, float]
    last_end_ms: int = -1
    last_wrap_ms: int = 0
    # trait -> (event ms since start, p) whenever p changed: p holds for the interactions
    # ending after that time. Starts with the initial p at -inf.
    history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.history = {trait: [(-math.inf, p)] for trait, p in self.p.items()}

    def p_at(self, ms: float | None) -> dict[str, float]:
        """The trait probabilities an interaction ending `ms` after the start was made with
        (None: the latest)."""
        if ms is None:
            return dict(self.p)
        # a change recorded at t applies to interactions ending strictly after t
        return {trait: changes[bisect.bisect_left(changes, (ms, -math.inf)) - 1][1]
                for trait, changes in self.history.items()}


@dataclass(frozen=True)
class _Completion:
    employee_id: str
    standard: str
    improved_p: float
    record: SimRecord


@dataclass
class _Counts:
    valid: int = 0
    duplicate: int = 0
    malformed: int = 0
    late: int = 0
    completions: int = 0
    assignments: int = 0


class Simulator:
    """Generates the traffic record by record; thread-safe, so an assignments consumer can feed
    on_assignment while another thread calls next_record."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._employees = self._population()
        self._by_id = {e.employee_id: e for e in self._employees}
        # Least recently served first; the next contact goes to one of the first third, which
        # spreads contacts evenly over employees without making the order predictable.
        self._queue = list(self._employees)
        self._pick_window = max(1, len(self._employees) // 3)
        self._step_ms = _SHIFT_MS / (config.employees * config.contacts_per_day)
        self._clock_ms = 0.0
        self._day = 0
        self._n = 0  # interaction slots generated, the basis of event ids
        self._seq = 0  # tie-breaker for the heaps
        self._recent: list[SimRecord] = []
        self._recent_next = 0  # the slot of _recent the next valid record overwrites
        self._late: list[tuple[int, int, SimRecord]] = []  # (release at slot, seq, record)
        self._completions: list[tuple[int, int, _Completion]] = []  # (due ms, seq, completion)
        self._malformed_n = 0
        self._malformed_below = config.malformed_share
        self._duplicate_below = config.malformed_share + config.duplicate_share
        self._counts = _Counts()
        self._seen_assignments: set[str] = set()

    def _population(self) -> list[_Employee]:
        rng = self._rng
        employees = []
        for i in range(self.config.employees):
            excellent = rng.random() < 0.10
            p: dict[str, float] = {}
            for trait in TRAITS:
                if excellent:
                    p[trait] = rng.uniform(0.97, 0.995)
                elif trait == FIRST_CONTACT_RESOLUTION:
                    p[trait] = rng.uniform(0.78, 0.92)  # some requests cannot be solved at once
                else:
                    p[trait] = rng.uniform(0.9, 0.99)
            if not excellent:
                for trait in rng.sample(TRAITS, rng.choice((0, 1, 1, 2))):
                    p[trait] = rng.uniform(0.35, 0.6)
            employee_id = f"emp-{i + 1:04d}"
            employees.append(_Employee(employee_id, f"team-{i % self.config.teams + 1:02d}",
                                       employee_id.encode(), p))
        return employees

    def employees(self) -> list[EmployeeProfile]:
        """The population as it is now (pass probabilities improve as lessons are completed)."""
        with self._lock:
            return [EmployeeProfile(e.employee_id, e.team_id, dict(e.p),
                                    tuple(t for t in TRAITS if e.p[t] < WEAK_BELOW))
                    for e in self._employees]

    def true_rates(self, employee_id: str, at: datetime | None = None) -> dict[str, float]:
        """The true pass rate of every standard (see standard_pass_rates) for the employee's
        interactions ending at event time `at` (default: from now on), lessons completed by then
        included. Raises KeyError for an unknown employee."""
        ms = None if at is None else (at - self.config.start) / timedelta(milliseconds=1)
        with self._lock:
            p = self._by_id[employee_id].p_at(ms)
        return standard_pass_rates(p)

    def true_rate(self, employee_id: str, standard: str, at: datetime | None = None) -> float:
        """The probability that `standard` passes in an interaction of the employee ending at
        event time `at`, where it applies. Raises KeyError for an unknown employee or standard."""
        return self.true_rates(employee_id, at)[standard]

    def now(self) -> datetime:
        """The simulated clock: the event time (ended_at) of the latest generated interaction."""
        with self._lock:
            return self._at(int(self._clock_ms))

    def stats(self) -> dict[str, int]:
        """Records produced so far, by kind; late ones are also counted as valid."""
        with self._lock:
            c = self._counts
            return {"valid": c.valid, "duplicate": c.duplicate, "malformed": c.malformed,
                    "late": c.late, "completions": c.completions, "assignments": c.assignments}

    def next_record(self) -> SimRecord:
        """The next record to deliver, in delivery order."""
        with self._lock:
            if self._completions and self._completions[0][0] <= self._clock_ms:
                return self._complete(heapq.heappop(self._completions)[2])
            if self._late and self._late[0][0] <= self._n:
                self._counts.valid += 1
                self._counts.late += 1
                return self._remember(heapq.heappop(self._late)[2])
            while True:
                self._n += 1
                roll = self._rng.random()
                if roll < self._malformed_below:
                    self._counts.malformed += 1
                    return self._malformed(self._interaction())
                if roll < self._duplicate_below and self._recent:
                    self._counts.duplicate += 1
                    original = self._recent[self._rng.randrange(len(self._recent))]
                    return SimRecord("interaction", original.key, original.value, "duplicate",
                                     original.event_id)
                interaction = self._interaction()
                record = SimRecord("interaction", interaction["employee_id"].encode(),
                                   _to_json(interaction).encode(),
                                   "valid", interaction["event_id"])
                if self._rng.random() < self.config.late_share:
                    self._seq += 1
                    heapq.heappush(self._late,
                                   (self._n + self._rng.randint(*_LATE_AFTER), self._seq, record))
                    continue  # delivered later; this call delivers the next one
                self._counts.valid += 1
                return self._remember(record)

    def _remember(self, record: SimRecord) -> SimRecord:
        if len(self._recent) < _DUPLICATE_MEMORY:
            self._recent.append(record)
        else:
            self._recent[self._recent_next] = record
            self._recent_next = (self._recent_next + 1) % _DUPLICATE_MEMORY
        return record

    def _at(self, ms: int) -> datetime:
        return self.config.start + timedelta(0, ms // 1000, ms % 1000 * 1000)

    def _advance_clock(self) -> tuple[int, int]:
        """Move the event clock to the next contact's end; return (end ms, shift start ms)."""
        self._clock_ms += self._rng.expovariate(1.0 / self._step_ms)  # contacts end at random
        shift_start = self._day * _DAY_MS
        if self._clock_ms >= shift_start + _SHIFT_MS:  # nobody works at night
            self._day += 1
            shift_start = self._day * _DAY_MS
            self._clock_ms = shift_start + self._rng.uniform(0, self._step_ms)
        return int(self._clock_ms), shift_start

    def _interaction(self) -> dict[str, Any]:
        """A fresh, valid interaction: its employee, durations, checklist and survey."""
        rng = self._rng
        random_ = rng.random
        end_ms, shift_start = self._advance_clock()
        employee = self._queue.pop(int(random_() * self._pick_window))
        self._queue.append(employee)
        p = employee.p

        roll = random_()
        channel = _CHANNELS[-1]
        for candidate in _CHANNELS:
            if roll < candidate.share:
                channel = candidate
                break
            roll -= candidate.share

        # Durations in tenths of a second, the precision the records carry.
        wait_ds = int(10 * min(max(rng.expovariate(1.0 / channel.wait_mean_s),
                                   channel.wait_range_s[0]), channel.wait_range_s[1]))
        talk_ds = int(10 * min(max(math.exp(rng.gauss(0.0, 0.45)) * channel.talk_median_s,
                                   channel.talk_range_s[0]), channel.talk_range_s[1]))
        wrap_ds = int(10 * rng.uniform(*channel.wrap_range_s))
        hold_ds = 0
        hold_ok = True
        if channel.has_hold:
            hold_ok = random_() < p[HOLD_TIME]
            if not hold_ok:
                hold_ds = int(10 * rng.uniform(_HOLD_LIMIT_S + 1, 180))
            elif random_() < 0.5:
                hold_ds = int(10 * rng.uniform(3, 45))
        # Work starts inside the shift, and a phone agent takes one call at a time: the contact
        # fits after the shift start (and the previous call's wrap-up) unless that would make it
        # implausibly short. Chats, emails and messages may overlap: agents juggle several.
        free_from = shift_start
        if channel.name == "voice":
            free_from = max(employee.last_end_ms + employee.last_wrap_ms, free_from)
        room_ds = (end_ms - free_from) // 100 - hold_ds
        if talk_ds > room_ds:
            talk_ds = max(room_ds, int(channel.talk_range_s[0] * 10))
        employee.last_end_ms = end_ms
        employee.last_wrap_ms = wrap_ds * 100

        transfers = 0
        roll = random_()
        if roll < _TRANSFERRED:
            transfers = 1 if roll < 0.10 else 2
        resolved: bool | None = None
        if random_() >= _OUTCOME_UNKNOWN:
            resolved = random_() < p[FIRST_CONTACT_RESOLUTION] * (
                _TRANSFERRED_RESOLVES if transfers else 1.0)

        qa = {item: random_() < p[item] for item in QA_ITEMS}
        if random_() < _QA_ITEM_MISSING:  # e.g. no account details were discussed
            del qa[QA_ITEMS[int(random_() * len(QA_ITEMS))]]

        # How well the contact went drives the survey and the sentiment.
        quality = sum(qa.values()) / len(qa)
        if not hold_ok:
            quality *= _LONG_HOLD_QUALITY
        if resolved is False:
            quality *= _UNRESOLVED_QUALITY
        csat: int | None = None
        nps: int | None = None
        if random_() < self.config.survey_share:
            if random_() < p[CUSTOMER_SATISFACTION] * quality * quality:
                csat = 5 if random_() < 0.6 else 4
            else:
                roll = random_()
                csat = 3 if roll < 0.45 else 2 if roll < 0.75 else 1
            if random_() < 0.5:
                nps = rng.randint(*_NPS_BY_CSAT[csat - 1])
        sentiment: float | None = None
        if random_() >= 0.15:  # speech and text analytics miss some contacts
            sentiment = round(min(max(rng.gauss(1.1 * quality - 0.5, 0.25), -1.0), 1.0), 2)

        n = self._n
        seed = self.config.seed
        return {
            "schema_version": 1,
            "event_id": f"evt-{seed}-{n}",
            "interaction_id": f"int-{seed}-{n}",
            "employee_id": employee.employee_id,
            "team_id": employee.team_id,
            "channel": channel.name,
            "started_at": self._at(end_ms - (talk_ds + hold_ds) * 100).isoformat(),
            "ended_at": self._at(end_ms).isoformat(),
            "wait_s": wait_ds / 10,
            "talk_s": talk_ds / 10,
            "hold_s": hold_ds / 10,
            "wrap_s": wrap_ds / 10,
            "transfers": transfers,
            "resolved": resolved,
            "qa": qa,
            "csat": csat,
            "nps": nps,
            "sentiment": sentiment,
        }

    def _malformed(self, interaction: dict[str, Any]) -> SimRecord:
        """Spoil an interaction in the next of the ways real producers get records wrong."""
        kind = _MALFORMED_KINDS[self._malformed_n % len(_MALFORMED_KINDS)]
        round_ = self._malformed_n // len(_MALFORMED_KINDS)
        self._malformed_n += 1
        key = interaction["employee_id"].encode()
        event_id: str | None = interaction["event_id"]
        value: Any = interaction
        if kind == "not_json":
            return SimRecord("interaction", key, b"\xff\xfe garbage " + key, "malformed", None)
        if kind == "not_object":
            value = [interaction["event_id"], interaction["employee_id"], interaction["channel"]]
            event_id = None
        elif kind == "missing_field":
            missing = _REQUIRED_FIELDS[round_ % len(_REQUIRED_FIELDS)]
            del interaction[missing]
            if missing == "event_id":
                event_id = None
        elif kind == "wrong_type":
            interaction["talk_s"] = "long"
        elif kind == "out_of_range":
            if round_ % 2:
                interaction["hold_s"] = -3
            else:
                interaction["csat"] = 7
        elif kind == "ends_before_start":
            interaction["started_at"], interaction["ended_at"] = (interaction["ended_at"],
                                                                  interaction["started_at"])
        else:
            interaction["channel"] = "fax"
        return SimRecord("interaction", key, _to_json(value).encode(),
                         "malformed", event_id)

    def on_assignment(self, value: bytes) -> None:
        """Play the learning system: most employees complete an assigned lesson within two days.
        Repeated and unreadable assignment records and those of ended assignments are ignored."""
        if not self.config.learning:
            return
        try:
            assignment = json.loads(value)
            assignment_id = assignment["assignment_id"]
            employee_id = assignment["employee_id"]
            at = datetime.fromisoformat(assignment["at"])
        except (ValueError, TypeError, KeyError):
            return
        if assignment.get("status", "assigned") != "assigned":
            return  # how an assignment ended (completed, expired, ...): nothing to do
        lesson_id = assignment.get("lesson_id")
        standard = assignment.get("standard")
        if not (isinstance(assignment_id, str) and assignment_id and isinstance(employee_id, str)
                and employee_id):
            return
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # the contract's times are UTC when no offset is given
        # Seeded by the assignment itself, so whether and when it is completed does not depend
        # on when the record arrives relative to the traffic.
        rng = random.Random(f"{self.config.seed}:{assignment_id}")
        completes = rng.random() < 0.85
        completed_at = at + timedelta(seconds=rng.uniform(2 * 3600, 48 * 3600))
        score = round(rng.uniform(70, 100), 1)
        improved_p = rng.uniform(0.9, 0.98)
        with self._lock:
            if assignment_id in self._seen_assignments:
                return
            self._seen_assignments.add(assignment_id)
            self._counts.assignments += 1
            if not completes:
                return
            event_id = f"cmp-{assignment_id}"
            completion = {
                "schema_version": 1,
                "event_id": event_id,
                "assignment_id": assignment_id,
                "employee_id": employee_id,
                "lesson_id": lesson_id if isinstance(lesson_id, str) and lesson_id else None,
                "completed_at": completed_at.isoformat(),
                "score": score,
            }
            record = SimRecord("completion", employee_id.encode(),
                               _to_json(completion).encode(), "valid",
                               event_id)
            due_ms = (completed_at - self.config.start) // timedelta(milliseconds=1)
            self._seq += 1
            heapq.heappush(self._completions, (due_ms, self._seq, _Completion(
                employee_id, standard if isinstance(standard, str) else "", improved_p, record)))

    def _complete(self, completion: _Completion) -> SimRecord:
        """Deliver a completion; from now on the lesson shows in the employee's work."""
        self._counts.completions += 1
        employee = self._by_id.get(completion.employee_id)
        standard = completion.standard
        if employee is not None and completion.improved_p > employee.p.get(standard, 1.0):
            employee.p[standard] = completion.improved_p
            # the interactions generated from now on end after the clock
            employee.history[standard].append((self._clock_ms, completion.improved_p))
        return completion.record


def run_simulation(
    bootstrap: str,
    config: SimulatorConfig,
    *,
    count: int | None,
    rate: float,
    duration_s: float | None,
    interactions_topic: str = "interactions",
    completions_topic: str = "lesson-completions",
    assignments_topic: str | None = "lesson-assignments",
    progress: Callable[[dict[str, int]], None] | None = None,
    stop: threading.Event | None = None,
    sim: Simulator | None = None,
) -> dict[str, int]:
    """Produce simulated traffic at `rate` records/s (0 = unpaced) until `count` interaction
    records, `duration_s` seconds or `stop`; return the final stats (plus send_errors).
    Pass `sim` (made from the same config) to ask it afterwards what was true, e.g. true_rate."""
    if rate < 0:
        raise ValueError(f"rate must not be negative, got {rate}")
    if sim is None:
        sim = Simulator(config)
    elif sim.config != config:
        raise ValueError("sim must be made from the config given to run_simulation")
    server = bootstrap.removeprefix("kafka://")
    # The default (since kafka-python 2.1) is an idempotent producer, which Tansu does not offer.
    producer = KafkaProducer(bootstrap_servers=server, acks="all", linger_ms=5, retries=5,
                             enable_idempotence=False, client_id="frontline-simulator")
    errors_lock = threading.Lock()
    send_errors = 0

    def on_send_error(exc: BaseException) -> None:
        nonlocal send_errors
        with errors_lock:
            send_errors += 1
            first = send_errors == 1
        if first:
            log.warning("simulator: a record could not be produced: %s", exc)

    done = threading.Event()
    listener: threading.Thread | None = None
    if config.learning and assignments_topic:
        listener = threading.Thread(target=_feed_assignments, name="simulator-assignments",
                                    args=(server, assignments_topic, sim, done), daemon=True)
        listener.start()

    interactions = 0
    started = last = time.monotonic()
    next_progress = started + 1.0
    burst = max(1.0, rate / 20)  # at most 50 ms of records at once after a stall
    tokens = 1.0
    try:
        while not (stop is not None and stop.is_set()):
            now = time.monotonic()
            if count is not None and interactions >= count:
                break
            if duration_s is not None and now - started >= duration_s:
                break
            if progress is not None and now >= next_progress:
                progress(sim.stats())
                next_progress = now + 1.0
            if rate > 0:
                tokens = min(burst, tokens + (now - last) * rate)
                last = now
                if tokens < 1.0:
                    time.sleep(min(0.05, (1.0 - tokens) / rate))
                    continue
                tokens -= 1.0
            record = sim.next_record()
            if record.topic_kind == "interaction":
                topic = interactions_topic
                interactions += 1
            else:
                topic = completions_topic
            # The simulated clock runs far ahead of the wall clock: stamp each record no earlier
            # than it (every record's event time is at or before the clock when it is
            # delivered), as a producer replaying history would, so the worker's check of event
            # times against broker timestamps (FRONTLINE_MAX_EVENT_AHEAD_HOURS) lets it in.
            stamp_ms = max(int(time.time() * 1000), int(sim.now().timestamp() * 1000) + 1000)
            producer.send(topic, key=record.key, value=record.value,
                          timestamp_ms=stamp_ms).add_errback(on_send_error)
    finally:
        done.set()
        producer.flush()
        producer.close()
        if listener is not None:
            listener.join(timeout=5.0)
    stats = sim.stats()
    stats["send_errors"] = send_errors
    if progress is not None:
        progress(stats)
    return stats


def _feed_assignments(server: str, topic: str, sim: Simulator, done: threading.Event) -> None:
    """Read lesson assignments from the start of the topic into the simulator until done."""
    try:
        # No group: every run reads all partitions from the beginning. A short metadata age
        # notices the topic soon when the worker creates it after the simulator has started;
        # the simulator must not create it itself with the wrong number of partitions.
        consumer = KafkaConsumer(topic, bootstrap_servers=server, group_id=None,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=200, metadata_max_age_ms=5000,
                                 allow_auto_create_topics=False,
                                 client_id="frontline-simulator-assignments")
    except (KafkaError, OSError) as exc:  # the thread must report, not die silently
        log.warning("simulator: cannot read %s, no lesson completions: %s", topic, exc)
        return
    try:
        while not done.is_set():
            for batch in consumer.poll(timeout_ms=200).values():
                for message in batch:
                    if message.value is not None:
                        sim.on_assignment(message.value)
    except (KafkaError, OSError) as exc:
        log.warning("simulator: stopped reading %s: %s", topic, exc)
    finally:
        consumer.close()
