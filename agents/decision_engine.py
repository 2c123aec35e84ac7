"""The decisions: one pure, deterministic step per input event.

`DecisionEngine.on_interaction` and `.on_completion` take an employee's state and one validated
event, update the state and return the records to publish. No I/O, no clock: every time comes
from the events, so a replay of the same events gives the same records with the same ids.

A standard the state knows but the playbook no longer has (removed or renamed) is retired on
the employee's next admitted event: its open gap is closed and its open assignments cancelled,
both with reason "standard_retired", and its state and lesson-effect measurements are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from agents.employee_state import (
    AssignmentState,
    EffectUnit,
    EmployeeState,
    SeenIds,
    StandardState,
)
from agents.gap_rule import Change, GapRule
from agents.ids import digest, stable_id
from agents.lesson_policy import lesson_block
from agents.reward_rules import grant_points, rolling_mean
from agents.scoring import NOT_APPLICABLE, PASS, Scorer
from models.events import (
    BonusAward,
    Evidence,
    ExecutionScore,
    Interaction,
    LessonAssignment,
    LessonCompletion,
    LessonEffect,
    OutputRecord,
    PerformanceGap,
)
from models.playbook import Playbook

Outcome = Literal["processed", "duplicate", "rejected"]

DEFAULT_DEDUPE_HORIZON_S = 7 * 24 * 3600.0
# Ended assignments are remembered this long, to refuse a late completion of them.
_DAY_S = 24 * 3600
_COMPLETED_ASSIGNMENT_KEPT_S = 90.0 * _DAY_S


@dataclass(slots=True)
class Decision:
    """What one input event led to. A rejected completion can still carry records: those of
    standards it retired first (see DecisionEngine._retire); they are to be published, and the
    state written, like those of a processed event."""

    outcome: Outcome
    records: list[OutputRecord] = field(default_factory=list)
    reason: str = ""  # why an event was rejected
    code: str = ""  # machine-readable kind of rejection: too_late or rejected


class DecisionEngine:
    """All decisions of one playbook version."""

    def __init__(self, playbook: Playbook,
                 dedupe_horizon_s: float = DEFAULT_DEDUPE_HORIZON_S) -> None:
        self.playbook = playbook
        self.version = playbook.version
        self.scorer = Scorer(playbook)
        self.rules = {name: GapRule.for_standard(playbook, name) for name in playbook.standards}
        self.horizon = dedupe_horizon_s
        # The dedupe memory forgets by the hour: pruning hourly keeps it near the horizon.
        self._prune_every = min(3600.0, dedupe_horizon_s / 28)
        self._days: dict[int, str] = {}

    # ---- shared bookkeeping -------------------------------------------------------------

    def _admit(self, state: EmployeeState, place: tuple[int, bytes],
               at: float) -> Decision | None:
        """Dedupe by event id (its `place` in the dedupe memory); refuse what is too old to
        prove new. None means go ahead."""
        if state.seen.holds(place):
            return Decision("duplicate")
        if at < state.newest - self.horizon:
            hours = self.horizon / 3600
            return Decision(
                "rejected",
                code="too_late",
                reason=f"event time is more than {hours:g} h older than the newest event of "
                f"employee {state.employee_id}; it cannot be told apart from a replay",
            )
        return None

    def _remember(self, state: EmployeeState, place: tuple[int, bytes], at: float) -> None:
        state.seen.put(place)
        if at > state.newest:
            state.newest = at
            # Prune every hour or so of event time rather than per event.
            if at - state.pruned_at >= self._prune_every:
                floor = at - self.horizon
                state.seen.forget_before(floor)
                # Days an admissible late event can still fall on keep their points history.
                state.forget_days_before(self._day(
                    datetime.fromtimestamp(floor - _DAY_S, UTC)))
                self._forget_old_assignments(state, at)
                state.pruned_at = at

    def _day(self, at: datetime) -> str:
        """The day of `at` in the playbook's time zone. Every zone's offset is a multiple of
        15 minutes, so the day is the same across a 15-minute slot: cache by slot."""
        slot = int(at.timestamp() // 900)
        day = self._days.get(slot)
        if day is None:
            if len(self._days) > 4096:
                self._days.clear()
            day = self._days[slot] = at.astimezone(self.playbook.zone).date().isoformat()
        return day

    # ---- interactions -------------------------------------------------------------------

    def on_interaction(self, state: EmployeeState, ev: Interaction) -> Decision:
        at = ev.ended_at.timestamp()
        place = SeenIds.place(digest(ev.event_id), at)
        refused = self._admit(state, place, at)
        if refused is not None:
            return refused
        state.team_id = ev.team_id
        judgements = self.scorer.judge(ev)
        score = self.scorer.score(judgements)
        base = {
            "employee_id": ev.employee_id,
            "team_id": ev.team_id,
            "playbook_version": self.version,
            "at": ev.ended_at,
        }
        records: list[OutputRecord] = [
            ExecutionScore(
                event_id=ev.event_id,
                interaction_id=ev.interaction_id,
                channel=ev.channel,
                score=score,
                # plain dicts: pydantic's core builds the results faster than Python calls
                results=[{"standard": j.standard, "outcome": j.outcome, "weight": j.weight}
                         for j in judgements],
                **base,
            )
        ]
        day = self._day(ev.ended_at)
        if not state.standards.keys() <= self.rules.keys():
            records.extend(self._retire(state, at, base, ev.interaction_id))
        records.extend(self._expire(state, at, base, ev.interaction_id))
        # (the loop body is inlined: it runs for every applicable outcome)
        standards, rules, interaction_id = state.standards, self.rules, ev.interaction_id
        # standards with a lesson-effect measurement (one opened by this event starts with
        # the next)
        measured = {u.standard for u in state.effects.values()} if state.effects else ()
        for j in judgements:
            outcome = j.outcome
            if outcome == NOT_APPLICABLE:
                continue
            name, passed = j.standard, outcome == PASS
            st = standards.get(name)
            if st is None:
                st = standards[name] = StandardState()
            if name in measured:
                records.extend(self._measure(state, name, passed, base))
            change = rules[name].observe(st, interaction_id, passed)
            if change is not None:
                records.extend(self._gap_change(state, ev, name, st, change, at, day, base))
        records.extend(self._assign_lessons(state, ev, at, base))
        records.extend(self._interaction_rewards(state, ev, score, day, base))
        self._remember(state, place, at)
        return Decision("processed", records)

    def _gap_change(self, state: EmployeeState, ev: Interaction, name: str, st: StandardState,
                    change: Change, at: float, day: str,
                    base: dict[str, object]) -> list[OutputRecord]:
        """The records of a gap that `ev`'s outcome on standard `name` opened or closed."""
        out: list[OutputRecord] = []
        rule = self.rules[name]
        target = self.playbook.standards[name].target
        evidence = Evidence(**rule.evidence(st, change))
        GapRule.reset(st)
        if change == "opened":
            st.gap_id = stable_id("gap", ev.employee_id, name, ev.event_id)
            st.gap_opened_at = at
            st.gap_lesson_completed = False
            st.gap_assignments = 0
            st.gap_deferred = False
            st.gap_target = target
            std = self.playbook.standards[name]
            state.effects[st.gap_id] = EffectUnit(name, std.lesson)
            out.append(PerformanceGap(gap_id=st.gap_id, standard=name, status="opened",
                                      target=target, evidence=evidence, **base))
            return out
        gap_id, lesson_done = st.gap_id, st.gap_lesson_completed
        assert gap_id is not None
        st.gap_id, st.gap_opened_at, st.gap_lesson_completed = None, None, False
        st.gap_target = None
        out.append(PerformanceGap(gap_id=gap_id, standard=name, status="closed", target=target,
                                  evidence=evidence, **base))
        # A lesson not done by the time its gap closed is no longer needed.
        for assignment_id, a in state.assignments.items():
            if a.open and a.gap_id == gap_id:
                out.append(self._end_assignment(state, assignment_id, a, "cancelled", at, base,
                                                f"gap {gap_id} closed before the lesson was "
                                                f"completed", interaction_id=ev.interaction_id))
        reward = self.playbook.rewards.gap_closed_after_lesson
        if reward is not None and lesson_done:
            award = self._award(state, "gap_closed_after_lesson", stable_id("award", gap_id),
                                reward.points, day, base,
                                evidence.model_copy(update={
                                    "detail": f"gap {gap_id} on {name} closed after its lesson "
                                    f"was completed; {evidence.detail}"}))
            if award is not None:
                out.append(award)
        return out

    # ---- lessons ------------------------------------------------------------------------

    def _assign_lessons(self, state: EmployeeState, ev: Interaction, at: float,
                        base: dict[str, object]) -> list[OutputRecord]:
        """Every open gap without a live assignment gets its lesson now, or (once per gap) a
        record saying why not yet."""
        out: list[OutputRecord] = []
        for name, st in state.standards.items():
            gap_id = st.gap_id
            # A gap whose lesson was completed waits for the evidence; one whose lesson
            # expired gets it again once the limits allow.
            if gap_id is None or st.gap_lesson_completed or any(
                    a.open and a.gap_id == gap_id for a in state.assignments.values()):
                continue
            std = self.playbook.standards.get(name)
            if std is None:  # retired (see _retire), not yet dropped: no lesson for it
                continue
            block = lesson_block(state, st, at, self.playbook.limits)
            if block is not None:
                if not st.gap_deferred:
                    st.gap_deferred = True
                    out.append(PerformanceGap(
                        gap_id=gap_id, standard=name, status="deferred", target=std.target,
                        reason=block.code,
                        evidence=Evidence(interaction_ids=[ev.interaction_id],
                                          statistic="lesson_limits",
                                          detail=f"lesson {std.lesson} waits: {block.reason}"),
                        **base))  # type: ignore[arg-type]
                continue
            # A live assignment of an older gap on this standard is replaced by this one.
            for old_id, old in state.assignments.items():
                if old.open and old.standard == name:
                    out.append(self._end_assignment(state, old_id, old, "superseded", at, base,
                                                    f"replaced by the lesson of gap {gap_id}",
                                                    interaction_id=ev.interaction_id))
            lesson = self.playbook.lessons.get(std.lesson)
            if lesson is None:  # the playbook check refuses this; never fail a record on it
                continue
            assignment_id = stable_id("assignment", gap_id, str(st.gap_assignments))
            st.gap_assignments += 1
            st.last_assigned_at = at
            due = ev.ended_at + timedelta(days=lesson.due_days)
            state.assignments[assignment_id] = AssignmentState(name, std.lesson, gap_id, at,
                                                               due_at=due.timestamp())
            unit = state.effects.get(gap_id)
            if unit is not None:
                unit.assignment_id = assignment_id
            rule = self.rules[name]
            out.append(LessonAssignment(
                assignment_id=assignment_id,
                lesson_id=std.lesson,
                lesson_title=lesson.title,
                standard=name,
                gap_id=gap_id,
                due_at=due,
                evidence=Evidence(interaction_ids=[ev.interaction_id], statistic="open_gap",
                                  design=rule.summary,
                                  detail=f"open gap {gap_id} on {name}"),
                **base,  # type: ignore[arg-type]
            ))
        return out

    def _end_assignment(self, state: EmployeeState, assignment_id: str, a: AssignmentState,
                        status: str, at: float, base: dict[str, object], why: str,
                        completion_event_id: str | None = None,
                        interaction_id: str | None = None,
                        reason: str | None = None) -> LessonAssignment:
        """End a live assignment (frees its slot) and say so on the assignments topic."""
        a.status, a.ended_at = status, at
        if status == "completed":
            a.completed_at = at
        lesson = self.playbook.lessons.get(a.lesson_id)
        ended = datetime.fromtimestamp(at, UTC)
        due = datetime.fromtimestamp(a.due_at if a.due_at is not None else a.assigned_at, UTC)
        return LessonAssignment(
            assignment_id=assignment_id, lesson_id=a.lesson_id,
            lesson_title=lesson.title if lesson is not None else a.lesson_id,
            standard=a.standard, gap_id=a.gap_id, due_at=due, status=status,  # type: ignore[arg-type]
            ended_at=ended, completion_event_id=completion_event_id, reason=reason,
            evidence=Evidence(interaction_ids=[interaction_id] if interaction_id else [],
                              statistic="lesson_status", detail=why),
            **base)  # type: ignore[arg-type]

    def _retire(self, state: EmployeeState, at: float, base: dict[str, object],
                interaction_id: str | None) -> list[OutputRecord]:
        """Standards the state has and the playbook no longer has (removed, or renamed: a new
        standard under the new name starts afresh): each open gap is closed and each open
        assignment cancelled, with reason "standard_retired"; then the standard's state and
        its lesson-effect measurements are dropped. Ended assignments stay, so that a late
        completion of one is refused as before. Records in standard-name order; their ids are
        those of any close or cancellation (gap id and status, assignment id and status)."""
        rules = self.rules
        names = {n for n in state.standards if n not in rules}
        names.update(a.standard for a in state.assignments.values()
                     if a.open and a.standard not in rules)
        out: list[OutputRecord] = []
        evidence_ids = [interaction_id] if interaction_id else []
        for name in sorted(names):
            why = f"standard {name} is not in playbook {self.version}"
            st = state.standards.pop(name, None)
            if st is not None and st.gap_id is not None:
                opened = ("" if st.gap_opened_at is None else " opened at "
                          + datetime.fromtimestamp(st.gap_opened_at, UTC).isoformat())
                out.append(PerformanceGap(
                    gap_id=st.gap_id, standard=name, status="closed",
                    target=st.gap_target if st.gap_target is not None else 0.0,
                    reason="standard_retired",
                    evidence=Evidence(interaction_ids=evidence_ids, statistic="standard_retired",
                                      detail=f"{why}: the gap{opened} is closed without a "
                                      f"verdict on the pass rate, and its evidence is dropped"),
                    **base))  # type: ignore[arg-type]
            for assignment_id, a in state.assignments.items():
                if a.open and a.standard == name:
                    out.append(self._end_assignment(
                        state, assignment_id, a, "cancelled", at, base,
                        f"{why}: the lesson is no longer needed", interaction_id=interaction_id,
                        reason="standard_retired"))
        for gap_id in [g for g, u in state.effects.items() if u.standard not in rules]:
            del state.effects[gap_id]
        return out

    def _expire(self, state: EmployeeState, at: float, base: dict[str, object],
                interaction_id: str) -> list[OutputRecord]:
        """Assignments still open a grace period after their due time expire (event time)."""
        out: list[OutputRecord] = []
        for assignment_id, a in state.assignments.items():
            if not a.open:
                continue
            expires = self._expires_at(a)
            if expires is not None and at > expires:
                out.append(self._end_assignment(
                    state, assignment_id, a, "expired", at, base,
                    f"not completed within {self.playbook.limits.lesson_grace_days:g} days "
                    f"after it was due", interaction_id=interaction_id))
        return out

    def _expires_at(self, a: AssignmentState) -> float | None:
        if a.due_at is None:
            return None
        return a.due_at + self.playbook.limits.lesson_grace_days * _DAY_S

    # ---- lesson effect measurements ----------------------------------------------------

    def _measure(self, state: EmployeeState, name: str, passed: bool,
                 base: dict[str, object]) -> list[OutputRecord]:
        """Feed one outcome of `name` to its gaps' effect measurements (there are some)."""
        w = self.playbook.evidence.effect_window
        flag = "1" if passed else "0"
        out: list[OutputRecord] = []
        done: list[str] = []
        for gap_id, u in state.effects.items():
            if u.standard != name:
                continue
            if u.after is not None:  # the lesson was completed: collecting "after"
                u.after += flag
                if len(u.after) >= w:
                    out.append(self._effect(gap_id, u, "lesson", u.before or "", u.after, base))
                    done.append(gap_id)
                continue
            u.seen += 1
            u.pre = (u.pre + flag)[-2 * w:]
            if u.seen == w and not self._gap_open(state, gap_id, u):
                # A lesson is only ever completed while its gap is open (closing cancels it):
                # a comparison gap must be open at the same point, or the groups differ.
                u.comparison_done = True
            elif not u.comparison_done and u.seen == 2 * w:
                u.comparison_done = True
                out.append(self._effect(gap_id, u, "comparison", u.pre[:w], u.pre[w:], base))
            if u.comparison_done and not self._may_complete(state, gap_id, u):
                done.append(gap_id)
        for gap_id in done:
            del state.effects[gap_id]
        return out

    @staticmethod
    def _gap_open(state: EmployeeState, gap_id: str, u: EffectUnit) -> bool:
        st = state.standards.get(u.standard)
        return st is not None and st.gap_id == gap_id

    @classmethod
    def _may_complete(cls, state: EmployeeState, gap_id: str, u: EffectUnit) -> bool:
        """Whether the gap can still get a completed lesson: open, or its assignment live."""
        a = state.assignments.get(u.assignment_id) if u.assignment_id else None
        return (a is not None and a.open) or cls._gap_open(state, gap_id, u)

    def _effect(self, gap_id: str, u: EffectUnit, group: str, before: str, after: str,
                base: dict[str, object]) -> LessonEffect:
        return LessonEffect(
            effect_id=stable_id("effect", gap_id, group), gap_id=gap_id,
            assignment_id=u.assignment_id, lesson_id=u.lesson_id, standard=u.standard,
            group=group, window=self.playbook.evidence.effect_window,  # type: ignore[arg-type]
            before_passes=before.count("1"), before_n=len(before),
            after_passes=after.count("1"), after_n=len(after), **base)  # type: ignore[arg-type]

    def _interaction_rewards(self, state: EmployeeState, ev: Interaction, score: float | None,
                             day: str, base: dict[str, object]) -> list[OutputRecord]:
        out: list[OutputRecord] = []
        rules = self.playbook.rewards
        delighted = rules.delighted_customer
        if delighted is not None and ev.csat is not None and ev.csat >= delighted.csat:
            award = self._award(state, "delighted_customer", stable_id("award", ev.event_id),
                                delighted.points, day, base,
                                Evidence(interaction_ids=[ev.interaction_id], statistic="csat",
                                         value=ev.csat, threshold=delighted.csat))
            if award is not None:
                out.append(award)
        excellence = rules.sustained_excellence
        if excellence is not None and score is not None:
            state.scores.append(score)
            if len(state.scores) > excellence.over_last:
                del state.scores[: len(state.scores) - excellence.over_last]
            mean = rolling_mean(state.scores)
            if (len(state.scores) == excellence.over_last and mean >= excellence.min_score
                    and day not in state.excellence_days):
                award = self._award(
                    state, "sustained_excellence",
                    stable_id("award", "sustained_excellence", ev.employee_id, day),
                    excellence.points, day, base,
                    Evidence(interaction_ids=[ev.interaction_id], statistic="rolling_mean_score",
                             value=round(mean, 2), threshold=excellence.min_score,
                             sample=len(state.scores),
                             detail=f"mean execution score over the last "
                             f"{excellence.over_last} scored interactions"))
                if award is not None:
                    state.excellence_days.append(day)
                    out.append(award)
        return out

    def _award(self, state: EmployeeState, rule: str, award_id: str, points: int, day: str,
               base: dict[str, object], evidence: Evidence) -> BonusAward | None:
        grant = grant_points(state, day, points, self.playbook.limits)
        if grant is None:
            return None
        if grant.points < grant.requested:
            capped = f"capped from {grant.requested} by the daily cap of " \
                     f"{self.playbook.limits.daily_points_cap}"
            evidence = evidence.model_copy(
                update={"detail": "; ".join(x for x in (evidence.detail, capped) if x)})
        return BonusAward(award_id=award_id, rule=rule, points=grant.points,
                          requested_points=grant.requested, period=day, evidence=evidence,
                          **base)  # type: ignore[arg-type]

    # ---- lesson completions -------------------------------------------------------------

    def on_completion(self, state: EmployeeState, ev: LessonCompletion) -> Decision:
        at = ev.completed_at.timestamp()
        place = SeenIds.place(digest("completion:" + ev.event_id), at)
        refused = self._admit(state, place, at)
        if refused is not None:
            return refused
        base: dict[str, object] = {"employee_id": ev.employee_id, "team_id": state.team_id,
                                   "playbook_version": self.version, "at": ev.completed_at}
        a = state.assignments.get(ev.assignment_id)
        # Retired standards first: a completion of one of their assignments finds it cancelled.
        records: list[OutputRecord] = []
        if not state.standards.keys() <= self.rules.keys() or (
                a is not None and a.open and a.standard not in self.rules):
            records = self._retire(state, at, base, None)
        if a is None:
            return Decision("rejected", records, code="rejected", reason=f"assignment "
                            f"{ev.assignment_id} is not an assignment of employee "
                            f"{ev.employee_id}")
        if ev.lesson_id is not None and ev.lesson_id != a.lesson_id:
            return Decision("rejected", records, code="rejected", reason=f"assignment "
                            f"{ev.assignment_id} is for lesson {a.lesson_id}, not {ev.lesson_id}")
        if not a.open:
            ended = datetime.fromtimestamp(a.ended_at or a.assigned_at, UTC).isoformat()
            return Decision("rejected", records, code="rejected", reason=f"assignment "
                            f"{ev.assignment_id} already ended as {a.status} at {ended}")
        expires = self._expires_at(a)
        if expires is not None and at > expires:
            # The expiry itself is published with the employee's next interaction.
            return Decision("rejected", records, code="rejected", reason=f"assignment "
                            f"{ev.assignment_id} expired at "
                            f"{datetime.fromtimestamp(expires, UTC).isoformat()}")
        records.append(self._end_assignment(
            state, ev.assignment_id, a, "completed", at, base, f"completion {ev.event_id}",
            ev.event_id))
        st = state.standards.get(a.standard)
        if st is not None and st.gap_id == a.gap_id:
            st.gap_lesson_completed = True
        unit = state.effects.get(a.gap_id)
        if unit is not None and unit.after is None:
            unit.assignment_id = ev.assignment_id
            unit.before = unit.pre[-self.playbook.evidence.effect_window:]
            unit.after = ""
        self._remember(state, place, at)
        self._forget_old_assignments(state, at)
        return Decision("processed", records)

    @staticmethod
    def _forget_old_assignments(state: EmployeeState, now: float) -> None:
        floor = now - _COMPLETED_ASSIGNMENT_KEPT_S
        stale = [k for k, a in state.assignments.items()
                 if a.ended_at is not None and a.ended_at < floor]
        for k in stale:
            del state.assignments[k]
