"""Suite-wide fixtures and guards: the embedded broker, a real PostgreSQL server (and a fresh
database per test), and a run that collected nothing, skipped something in CI, or ran no
end-to-end test fails instead of passing quietly."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from browser import chromium_binary
from ledger.pg_server import PostgresServer, describe_missing_binaries, find_postgres_bindir
from sqlalchemy.engine import make_url

from streams.embedded_broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (embedded Tansu) for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(port=free_port(), log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server (initdb'd into a temporary folder) for the whole session;
    stopped and deleted at the end. Tests may stop(), start() or restart() it."""
    bindir = find_postgres_bindir()
    if bindir is None:
        pytest.skip("NO POSTGRESQL SERVER: the ledger's PostgreSQL tests need a real server. "
                    + describe_missing_binaries())
    with PostgresServer(bindir=bindir) as server:
        yield server


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless browser to open HTML reports in, as a reader would."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("NO CHROMIUM: opening the HTML reports needs a headless browser (Debian: "
                    "apt-get install chromium; .ci/run installs it)")
    return binary


_taken: set[str] = set()


def _database_name(nodeid: str) -> str:
    """A unique, valid database name (at most 63 bytes) that hints at the test."""
    slug = re.sub(r"[^a-z0-9]+", "_", nodeid.rsplit("::", 1)[-1].lower()).strip("_")
    serial = len(_taken) + 1
    name = f"t{serial:04d}_{slug}"[:63]
    _taken.add(name)
    return name


@pytest.fixture
def pg_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database on the session's server, for this test only."""
    if not pg_server.running():  # a fault test that stopped it failed before starting it again
        pg_server.start()
    url = pg_server.create_database(_database_name(request.node.nodeid))
    yield url
    if not pg_server.running():
        pg_server.start()
    database = make_url(url).database
    assert database is not None
    pg_server.drop_database(database)


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
