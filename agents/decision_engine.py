"""The decisions: one pure, deterministic step per input event.

`DecisionEngine.on_interaction` and `.on_completion` take an employee's state and one validated
event, update the state and return the records to publish. No I/O, no clock: every time comes
from the events, so a replay of the same events gives the same records with the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from agents.employee_state import AssignmentState, EmployeeState, StandardState
from agents.evidence import Bounds, GapRule
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
    OutputRecord,
    PerformanceGap,
)
from models.playbook import Playbook

Outcome = Literal["processed", "duplicate", "rejected"]

DEFAULT_DEDUPE_HORIZON_S = 7 * 24 * 3600.0
# Completed assignments are remembered this long, to refuse a second completion of them.
_DAY_S = 24 * 3600
_COMPLETED_ASSIGNMENT_KEPT_S = 90.0 * _DAY_S


@dataclass(slots=True)
class Decision:
    """What one input event led to."""

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
        self.gaps = GapRule(playbook.evidence)
        self.horizon = dedupe_horizon_s
        self._days: dict[int, str] = {}

    # ---- shared bookkeeping -------------------------------------------------------------

    def _admit(self, state: EmployeeState, event_id: str, at: float) -> Decision | None:
        """Dedupe by event id; refuse what is too old to prove new. None means go ahead."""
        key = digest(event_id)
        if key in state.seen:
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

    def _remember(self, state: EmployeeState, event_id: str, at: float) -> None:
        state.seen.add(digest(event_id), at)
        if at > state.newest:
            state.newest = at
            # Prune a few times per horizon rather than per event.
            if at - state.pruned_at >= self.horizon / 28:
                floor = at - self.horizon
                state.seen.forget_before(floor)
                # Days an admissible late event can still fall on keep their points history.
                state.forget_days_before(self._day(
                    datetime.fromtimestamp(floor - _DAY_S, UTC)))
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
        refused = self._admit(state, ev.event_id, at)
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
        for j in judgements:
            if j.outcome != NOT_APPLICABLE:
                records.extend(self._update_standard(state, ev, j.standard, j.outcome == PASS,
                                                     at, day, base))
        records.extend(self._assign_lessons(state, ev, at, base))
        records.extend(self._interaction_rewards(state, ev, score, day, base))
        self._remember(state, ev.event_id, at)
        return Decision("processed", records)

    def _update_standard(self, state: EmployeeState, ev: Interaction, name: str, passed: bool,
                         at: float, day: str, base: dict[str, object]) -> list[OutputRecord]:
        st = state.standard(name)
        st.push(ev.interaction_id, passed, self.gaps.window)
        target = self.playbook.standards[name].target
        n = len(st.ids)
        passes = st.passes
        rate = passes / n
        # The Wilson bounds straddle the observed rate, so most calls need no bounds at all.
        if st.gap_id is None and (n < self.gaps.min_sample or rate >= target):
            return []
        if st.gap_id is not None and rate < target - self.gaps.close_margin:
            return []
        b = self.gaps.bounds(passes, n)
        if st.gap_id is None and self.gaps.should_open(b, target):
            st.gap_id = stable_id("gap", ev.employee_id, name, ev.event_id)
            st.gap_opened_at = at
            st.gap_lesson_completed = False
            st.gap_assignments = 0
            return [self._gap_record(st, st.gap_id, name, "opened", target, b, base,
                                     f"upper {self.gaps.confidence:.0%} bound of the pass rate "
                                     f"is below target")]
        if st.gap_id is not None and self.gaps.should_close(b, target):
            gap_id, lesson_done = st.gap_id, st.gap_lesson_completed
            st.gap_id, st.gap_opened_at, st.gap_lesson_completed = None, None, False
            out: list[OutputRecord] = [
                self._gap_record(st, gap_id, name, "closed", target, b, base,
                                 f"lower {self.gaps.confidence:.0%} bound of the pass rate "
                                 f"reached target - {self.gaps.close_margin:g}")
            ]
            rule = self.playbook.rewards.gap_closed_after_lesson
            if rule is not None and lesson_done:
                award = self._award(state, "gap_closed_after_lesson", stable_id("award", gap_id),
                                    rule.points, day, base,
                                    Evidence(interaction_ids=list(st.ids),
                                             statistic="wilson_lower_bound", value=b.lower,
                                             threshold=target - self.gaps.close_margin,
                                             passes=b.passes, sample=b.sample,
                                             confidence=self.gaps.confidence,
                                             detail=f"gap {gap_id} on {name} closed after its "
                                             f"lesson was completed"))
                if award is not None:
                    out.append(award)
            return out
        return []

    def _gap_record(self, st: StandardState, gap_id: str, name: str, status: str, target: float,
                    b: Bounds, base: dict[str, object], detail: str) -> PerformanceGap:
        opened = status == "opened"
        return PerformanceGap(
            gap_id=gap_id,
            standard=name,
            status=status,  # type: ignore[arg-type]
            target=target,
            evidence=Evidence(
                interaction_ids=list(st.ids),
                statistic="wilson_upper_bound" if opened else "wilson_lower_bound",
                value=round(b.upper if opened else b.lower, 4),
                threshold=target if opened else round(target - self.gaps.close_margin, 4),
                passes=b.passes,
                sample=b.sample,
                confidence=self.gaps.confidence,
                detail=f"{detail}; {b.passes}/{b.sample} passed ({b.rate:.0%})",
            ),
            **base,  # type: ignore[arg-type]
        )

    def _assign_lessons(self, state: EmployeeState, ev: Interaction, at: float,
                        base: dict[str, object]) -> list[OutputRecord]:
        out: list[OutputRecord] = []
        for name, st in state.standards.items():
            if st.gap_id is None or lesson_block(state, st, name, at, self.playbook.limits):
                continue
            std = self.playbook.standards[name]
            lesson = self.playbook.lessons[std.lesson]
            assignment_id = stable_id("assignment", st.gap_id, str(st.gap_assignments))
            st.gap_assignments += 1
            st.last_assigned_at = at
            state.assignments[assignment_id] = AssignmentState(name, std.lesson, st.gap_id, at)
            b = self.gaps.bounds(st.passes, len(st.ids))
            out.append(LessonAssignment(
                assignment_id=assignment_id,
                lesson_id=std.lesson,
                lesson_title=lesson.title,
                standard=name,
                gap_id=st.gap_id,
                due_at=ev.ended_at + timedelta(days=lesson.due_days),
                evidence=Evidence(
                    interaction_ids=list(st.ids),
                    statistic="wilson_upper_bound",
                    value=round(b.upper, 4),
                    threshold=std.target,
                    passes=b.passes,
                    sample=b.sample,
                    confidence=self.gaps.confidence,
                    detail=f"open gap {st.gap_id} on {name}",
                ),
                **base,  # type: ignore[arg-type]
            ))
        return out

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
        event_key = "completion:" + ev.event_id
        refused = self._admit(state, event_key, at)
        if refused is not None:
            return refused
        a = state.assignments.get(ev.assignment_id)
        if a is None:
            return Decision("rejected", code="rejected", reason=f"assignment {ev.assignment_id} is not an "
                            f"assignment of employee {ev.employee_id}")
        if a.completed_at is not None:
            done = datetime.fromtimestamp(a.completed_at, UTC).isoformat()
            return Decision("rejected", code="rejected", reason=f"assignment {ev.assignment_id} was already "
                            f"completed at {done}")
        if ev.lesson_id is not None and ev.lesson_id != a.lesson_id:
            return Decision("rejected", code="rejected", reason=f"assignment {ev.assignment_id} is for lesson "
                            f"{a.lesson_id}, not {ev.lesson_id}")
        a.completed_at = at
        st = state.standard(a.standard)
        if st.gap_id == a.gap_id:
            st.gap_lesson_completed = True
        self._remember(state, event_key, at)
        self._forget_old_assignments(state, at)
        return Decision("processed")

    @staticmethod
    def _forget_old_assignments(state: EmployeeState, now: float) -> None:
        floor = now - _COMPLETED_ASSIGNMENT_KEPT_S
        stale = [k for k, a in state.assignments.items()
                 if a.completed_at is not None and a.completed_at < floor]
        for k in stale:
            del state.assignments[k]
