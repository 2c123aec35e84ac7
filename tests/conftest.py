"""Suite-wide fixtures and guards: the embedded broker, and a run that collected nothing,
skipped something in CI, or ran no end-to-end test fails instead of passing quietly."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streams.embedded_broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (embedded Tansu) for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(port=free_port(), log_path=log) as running:
        yield running


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter is not None else {}
    problems = []
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        problems.append("no tests were collected")
    if os.environ.get("CI"):
        skipped = stats.get("skipped", [])
        if skipped:
            problems.append(f"{len(skipped)} tests were skipped in CI: "
                            + ", ".join(r.nodeid for r in skipped[:5]))
        ran_e2e = [r for r in stats.get("passed", []) + stats.get("failed", [])
                   if r.nodeid.startswith("tests/e2e/") and r.when == "call"]
        if not ran_e2e:
            problems.append("no end-to-end test ran")
    if problems:
        if reporter is not None:
            reporter.write_line("FAILED: " + "; ".join(problems), red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
