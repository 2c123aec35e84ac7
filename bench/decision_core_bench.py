"""What the decisions cost per record, without Kafka or Faust: simulated contact-center traffic
(the demo's mix, lessons completed by the simulated learning system) through the pure record
processor, including the state encoding the worker writes to its changelog.

    python bench/decision_core_bench.py [--records 30000] [--employees 60] [--repeat 3]

Prints records per CPU second (best of the repeats) and the mean encoded state size. Run two versions of
Frontline back to back on the same machine to compare them: this is the part of the pipeline the
decisions add to a bare Faust agent, measured without the broker's noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from agents.record_processor import RecordProcessor, partition_for
from models.playbook import load_playbook
from streams.simulator import Simulator, SimulatorConfig

PARTITIONS = 4


class _Store:
    def __init__(self) -> None:
        self.states: dict[str, EmployeeState] = {}

    def get(self, key: str) -> EmployeeState | None:
        return self.states.get(key)

    def put(self, key: str, state: EmployeeState, partition: int) -> None:
        self.states[key] = state


def run(records: int, employees: int) -> tuple[float, Counter[str], float]:
    sim = Simulator(SimulatorConfig(seed=7, employees=employees,
                                    teams=max(1, employees // 10)))
    batch = []
    for _ in range(records):
        r = sim.next_record()
        source = "interactions" if r.topic_kind == "interaction" else "lesson-completions"
        batch.append((source, r.key, r.value))
    store = _Store()
    processor = RecordProcessor(DecisionEngine(load_playbook()), store,
                                lambda topic: PARTITIONS)
    outcomes: Counter[str] = Counter()
    started = time.process_time()  # CPU time: less disturbed by whatever else runs
    for offset, (source, key, value) in enumerate(batch):
        result = processor.process(source, source, partition_for(key, PARTITIONS),  # type: ignore[arg-type]
                                   offset, key, value)
        outcomes[result.outcome] += 1
        for out in result.outgoing:
            if out.topic == "lesson-assignments":
                sim.on_assignment(out.value)
        if result.state is not None:
            result.state.to_bytes()  # the worker writes it to the changelog
    elapsed = time.process_time() - started
    size = sum(len(s.to_bytes()) for s in store.states.values()) / max(1, len(store.states))
    return records / elapsed, outcomes, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30000)
    parser.add_argument("--employees", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.records < 1 or args.employees < 1 or args.repeat < 1:
        parser.error("--records, --employees and --repeat must be at least 1")
    best, outcomes, size = 0.0, Counter[str](), 0.0
    for _ in range(args.repeat):
        rate, outcomes, size = run(args.records, args.employees)
        best = max(best, rate)
    print(f"decision core: {best:,.0f} records per CPU second (best of {args.repeat}), "
          f"{dict(outcomes)}, mean state {size:,.0f} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
