"""When a gap opens and when it closes, per (employee, standard): the sequential tests of
`sequential_test` applied to one outcome at a time, with the evidence each decision carries."""

from __future__ import annotations

from typing import Any, Literal

from agents.employee_state import StandardState
from agents.sequential_test import GapDesign, design_gap_tests
from models.playbook import Playbook

Change = Literal["opened", "closed"]

# Interaction ids kept as evidence of the current run (the outcomes since the statistic last
# stood at its floor); the run's pass count and length are kept in full.
EVIDENCE_IDS = 50


class GapRule:
    """The opening and closing tests of one standard, derived from the playbook."""

    def __init__(self, design: GapDesign) -> None:
        self.design = design
        self.opening = design.opening
        self.closing = design.closing
        self.scales = f"{design.opening.scale:.6f}/{design.closing.scale:.6f}"
        self.summary = self._design_summary()  # the same on every record of this standard

    @classmethod
    def for_standard(cls, playbook: Playbook, standard: str) -> GapRule:
        ev = playbook.evidence
        return cls(design_gap_tests(playbook.standards[standard].target,
                                    playbook.shortfall_of(standard), ev.false_gap_rate,
                                    ev.false_close_rate, ev.per_interactions))

    def observe(self, st: StandardState, interaction_id: str, passed: bool) -> Change | None:
        """Feed one applicable outcome; return "opened" or "closed" when the gap changes."""
        if st.scales != self.scales:
            self._rescale(st)
        # (the steps are inlined: this runs for every applicable outcome)
        if st.gap_id is None:
            test = self.opening
            s = (st.s if st.s is not None else test.start) + (test.down if passed else test.up)
        else:
            test = self.closing
            s = st.c + (test.up if passed else test.down)
        if s <= 0:  # back at the floor: the evidence so far is spent
            s = 0
            st.ids, st.flags, st.run_n, st.run_passes = [], "", 0, 0
        else:
            st.ids.append(interaction_id)
            st.flags += "1" if passed else "0"
            if len(st.ids) > EVIDENCE_IDS:
                del st.ids[:-EVIDENCE_IDS]
                st.flags = st.flags[-EVIDENCE_IDS:]
            st.run_n += 1
            st.run_passes += passed
        if st.gap_id is None:
            st.s = s
            return "opened" if s >= test.threshold else None
        st.c = s
        return "closed" if s >= test.threshold else None

    def _rescale(self, st: StandardState) -> None:
        """Statistics stepped under another playbook keep their evidence in log-likelihood
        units when the new playbook's tests count in other integer units."""
        if st.scales is not None:
            old_open, old_close = (float(x) for x in st.scales.split("/"))
            if st.s is not None:
                st.s = round(st.s * self.design.opening.scale / old_open)
            st.c = round(st.c * self.design.closing.scale / old_close)
        st.scales = self.scales

    def evidence(self, st: StandardState, change: Change) -> dict[str, Any]:
        """Evidence fields for the record of `change`, read before `reset`."""
        test = self.opening if change == "opened" else self.closing
        value = st.s if change == "opened" else st.c
        d = self.design
        rate = f"{st.run_passes}/{st.run_n} passed" if st.run_n else "no run"
        if change == "opened":
            why = (f"the evidence that the pass rate has fallen from {d.target:g} to "
                   f"{d.alternative:g} or below reached the threshold ({rate} since it last "
                   f"stood at zero)")
        else:
            why = (f"the evidence that the pass rate is back from {d.alternative:g} above the "
                   f"target, at {d.recovered:g}, reached the threshold ({rate} since it last "
                   f"stood at zero)")
        return {
            "interaction_ids": list(st.ids),
            "statistic": "bernoulli_cusum_" + ("fall" if change == "opened" else "recovery"),
            "value": test.llr(value or 0),
            "threshold": test.llr(test.threshold),
            "passes": st.run_passes,
            "sample": st.run_n,
            "design": self.summary,
            "detail": f"{why}; {d.describe()}",
        }

    def _design_summary(self) -> dict[str, Any]:
        d = self.design
        return {
            "test": "bernoulli_cusum",
            "target": d.target,
            "alternative": d.alternative,
            "recovered": d.recovered,
            "per_interactions": d.opening.horizon,
            "false_gap_budget": d.false_gap_budget,
            "false_gap_rate": round(d.opening.false_alarm, 4),
            "false_close_budget": d.false_close_budget,
            "false_close_rate": round(d.closing.false_alarm, 4),
            "power": round(d.power, 4),
            "median_delay": d.median_delay,
            "open_threshold": d.opening.llr(d.opening.threshold),
            "close_threshold": d.closing.llr(d.closing.threshold),
            "head_start": d.opening.llr(d.opening.start),
        }

    @staticmethod
    def reset(st: StandardState) -> None:
        """After a change: the other test starts from its floor with no evidence."""
        st.ids, st.flags, st.run_n, st.run_passes = [], "", 0, 0
        st.c = 0
        # After a recovery the employee has just shown the target rate: no head start.
        st.s = 0
