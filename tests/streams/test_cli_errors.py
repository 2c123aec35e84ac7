"""Every bad situation met on the command line, run as a user meets it (the real command in a
subprocess): one readable line on stderr, no traceback, and a non-zero exit - 2 when the command
could not start as told (argument, setting, playbook, port), 1 when something it needs failed
while it ran (broker, database, file system), 130 for Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.embedded_broker import EmbeddedBroker, free_port
from streams.ledger_schema import create_ledger_engine, migrate
from streams.settings import Settings, SettingsError, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-pw"  # in every database URL below; must never be printed


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTLINE_")}
    # the broker checks of these cases wait 1 s, not the default 10
    env.update({"FRONTLINE_CONNECT_TIMEOUT_S": "1", **extra})
    return env


def frontline(argv: list[str], env: dict[str, str] | None = None, **popen: object
              ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *argv], cwd=ROOT,
                            env=env or clean_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]


def run(argv: list[str], env: dict[str, str] | None = None,
        timeout_s: float = 60.0) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of the real command."""
    started = time.monotonic()
    proc = frontline(argv, env)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"`frontline {' '.join(argv)}` still ran after {timeout_s:g} s")
    return proc.returncode, out, err, time.monotonic() - started


def the_line(err: str, command: str) -> str:
    assert "Traceback" not in err, f"`{command}` printed a traceback:\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"`{command}` should print one line on stderr, got:\n{err}"
    assert lines[0].startswith("frontline"), lines[0]
    assert SECRET not in lines[0], f"`{command}` printed the database password: {lines[0]}"
    return lines[0]


@dataclass(frozen=True)
class Places:
    """What the cases point at: files, a ledger with its schema, ports in every state."""

    tmp: Path
    ledger_url: str  # a SQLite ledger with the current schema
    closed_port: int  # nobody listens
    silent_port: int  # accepts connections and never answers
    taken_port: int  # something listens (the silent listener)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Places]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    url = f"sqlite:///{tmp / 'ledger.sqlite'}"
    engine = create_ledger_engine(url)
    migrate(engine)
    engine.dispose()
    (tmp / "latin1.yaml").write_bytes(b'version: "1"\nname: caf\xe9\n')
    with (tmp / "huge.yaml").open("w") as f:
        f.write('version: "1"\n# ' + "x" * 2_000_000 + "\n")
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]")
    (tmp / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    (tmp / "a-folder.yaml").mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(128)  # the kernel completes the handshakes; nobody ever answers
        port = int(silent.getsockname()[1])
        yield Places(tmp, url, free_port(), port, port)


Build = Callable[[Places], list[str]]


def _pg(port: int) -> str:
    return f"postgresql+psycopg://frontline:{SECRET}@127.0.0.1:{port}/ledger"


# (id, argv built from the places, exit code, what the line says)
CASES: list[tuple[str, Build, int, str]] = [
    # ---- arguments and files the user named: 2
    ("since-not-a-date", lambda p: ["ledger", "awards", "--since", "yesterday",
                                    "--database-url", p.ledger_url],
     2, "argument --since: expected a date or time like 2026-11-02"),
    ("output-folder-missing", lambda p: ["ledger", "lessons", "--output",
                                         str(p.tmp / "missing" / "l.txt"),
                                         "--database-url", p.ledger_url],
     2, "cannot write"),
    ("output-is-a-folder", lambda p: ["ledger", "lessons", "--output", str(p.tmp),
                                      "--database-url", p.ledger_url],
     2, "cannot write"),
    ("output-not-writable", lambda p: ["ledger", "lessons", "--output", "/proc/version",
                                       "--database-url", p.ledger_url],
     2, "cannot write /proc/version"),
    ("broker-port-taken", lambda p: ["broker", "--port", str(p.taken_port)],
     2, "already taken"),
    ("broker-unknown-host", lambda p: ["broker", "--host", "nohost.invalid",
                                       "--port", str(p.closed_port)],
     2, "cannot listen on nohost.invalid: unknown host"),
    ("worker-data-dir-unusable", lambda p: ["worker", "--data-dir", "/proc/frontline",
                                            "--broker", f"kafka://127.0.0.1:{p.closed_port}"],
     2, "cannot use the data directory /proc/frontline"),
    ("playbook-not-utf8", lambda p: ["playbook", "check", str(p.tmp / "latin1.yaml")],
     2, "latin1.yaml:2: not UTF-8 text: byte 0xe9 at offset 22"),
    ("playbook-too-large", lambda p: ["playbook", "check", str(p.tmp / "huge.yaml")],
     2, "more than 1 MB, too large for a playbook"),
    ("playbook-endless", lambda p: ["playbook", "check", "/dev/zero"],
     2, "/dev/zero: more than 1 MB"),
    ("playbook-is-a-folder", lambda p: ["playbook", "check", str(p.tmp / "a-folder.yaml")],
     2, "cannot read playbook: Is a directory"),
    ("playbook-missing", lambda p: ["playbook", "check", str(p.tmp / "nope.yaml")],
     2, "cannot read playbook: No such file or directory"),
    ("playbook-alias-bomb", lambda p: ["worker", "--playbook", str(p.tmp / "bomb.yaml")],
     2, "YAML anchors and aliases expand to more than 1,000,000 values"),
    ("ledger-without-schema", lambda p: ["ledger", "balance", "e1", "--database-url",
                                         f"sqlite:///{p.tmp / 'empty.sqlite'}"],
     2, "has no schema yet: run `frontline ledger migrate`"),
    # ---- database URLs Frontline cannot use: 2
    ("db-postgres-scheme", lambda p: ["ledger", "migrate", "--database-url",
                                      f"postgres://u:{SECRET}@db/ledger"],
     2, "postgres:// is not a SQLAlchemy URL: use postgresql+psycopg://"),
    ("db-unknown-driver", lambda p: ["ledger", "migrate", "--database-url",
                                     f"postgresql+psycopgg://u:{SECRET}@db/ledger"],
     2, "unknown postgresql driver 'psycopgg': use postgresql+psycopg://"),
    ("db-misspelt-sqlite", lambda p: ["ledger", "awards", "--database-url", "sqlit:///x.db"],
     2, "unsupported database 'sqlit' (did you mean sqlite?)"),
    ("db-mysql", lambda p: ["ledger", "export", "--database-url",
                            f"mysql://u:{SECRET}@db/ledger"],
     2, "unsupported database 'mysql': the ledger supports PostgreSQL"),
    ("db-not-a-url", lambda p: ["ledger", "migrate", "--database-url", "not a url"],
     2, "not a database URL; the ledger supports PostgreSQL"),
    ("db-port-not-a-number", lambda p: ["ledger", "migrate", "--database-url",
                                        f"postgresql+psycopg://u:{SECRET}@db:port/ledger"],
     2, "not a database URL (is the port a number?)"),
    # ---- a database that cannot be reached or opened: 1
    ("db-refused-migrate", lambda p: ["ledger", "migrate", "--database-url",
                                      _pg(p.closed_port)],
     1, "cannot open the ledger database postgresql+psycopg://frontline:***@127.0.0.1:"),
    ("db-refused-balance", lambda p: ["ledger", "balance", "e1", "--database-url",
                                      _pg(p.closed_port)],
     1, "Connection refused"),
    ("db-refused-run", lambda p: ["ledger", "run", "--database-url", _pg(p.closed_port)],
     1, "cannot open the ledger database"),
    ("sqlite-not-writable", lambda p: ["ledger", "migrate", "--database-url",
                                       "sqlite:////proc/version"],
     1, "unable to open database file (can the file and its folder be written?)"),
    ("sqlite-folder-impossible", lambda p: ["ledger", "migrate", "--database-url",
                                            "sqlite:////proc/frontline/ledger.sqlite"],
     1, "cannot create the folder /proc/frontline of the ledger database"),
    # ---- a broker that cannot be reached: 1, within FRONTLINE_CONNECT_TIMEOUT_S
    ("simulate-unknown-host", lambda p: ["simulate", "--broker", "kafka://nohost.invalid:9092"],
     1, "cannot reach the Kafka broker at nohost.invalid:9092 within 1 s: unknown host"),
]


def _against(command: list[str], state: str) -> Build:
    def build(p: Places) -> list[str]:
        port = p.closed_port if state == "closed" else p.silent_port
        ledger = ["--database-url", p.ledger_url] if command[0] == "ledger" else []
        return [*command, "--broker", f"kafka://127.0.0.1:{port}", *ledger]
    return build


for _command in (["simulate"], ["ledger", "run"], ["ledger", "reconcile"]):
    for _state, _says in (("closed", "within 1 s: connection refused"),
                          ("silent", ("within 1 s: it accepts connections but does not "
                                      "answer as a Kafka broker"))):
        CASES.append((f"{'-'.join(_command)}-{_state}-broker", _against(_command, _state), 1,
                      _says))


@pytest.mark.parametrize(("build", "code", "says"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_one_line_and_a_non_zero_exit(places: Places, build: Build, code: int,
                                      says: str) -> None:
    argv = build(places)
    command = "frontline " + " ".join(argv)
    status, _, err, took = run(argv)
    line = the_line(err, command)
    assert status == code, f"`{command}` exited {status}, not {code}: {line}"
    assert says in line, line
    assert took < 20, f"`{command}` took {took:.0f} s"


def test_a_broker_check_gives_up_after_the_connect_timeout(places: Places) -> None:
    """The default wait is 10 s; FRONTLINE_CONNECT_TIMEOUT_S sets it (the cases above use 1)."""
    status, _, err, took = run(["simulate", "--broker",
                                f"kafka://127.0.0.1:{places.silent_port}"],
                               env=clean_env(FRONTLINE_CONNECT_TIMEOUT_S="3"))
    assert status == 1 and "within 3 s" in the_line(err, "frontline simulate")
    assert 3 <= took < 15, took


@pytest.mark.e2e
def test_ledger_writer_whose_metrics_port_is_taken(places: Places, broker: EmbeddedBroker) -> None:
    argv = ["ledger", "run", "--broker", broker.url, "--database-url", places.ledger_url,
            "--metrics-port", str(places.taken_port)]
    status, _, err, _ = run(argv, env=clean_env(FRONTLINE_METRICS_HOST="127.0.0.1"))
    line = the_line(err, "frontline ledger run --metrics-port (taken)")
    assert status == 2 and f"cannot serve metrics on 127.0.0.1:{places.taken_port}" in line


# ---- Ctrl-C, a closed pipe ---------------------------------------------------------------------

def test_ctrl_c_exits_130_with_one_line() -> None:
    """Interrupted while it waits for a broker that accepted the connection and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(30)
        port = listener.getsockname()[1]
        proc = frontline(["simulate", "--broker", f"kafka://127.0.0.1:{port}"],
                         env=clean_env(FRONTLINE_CONNECT_TIMEOUT_S="60"))
        try:
            conn, _ = listener.accept()  # the command is waiting for the broker now
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
            conn.close()
        finally:
            proc.kill()
    assert proc.returncode == 130
    assert the_line(err, "frontline simulate (Ctrl-C)") == "frontline: interrupted"


def test_a_closed_pipe_ends_quietly() -> None:
    """`frontline ... | head` with a reader that has gone: no traceback, no complaint."""
    proc = frontline(["playbook", "check"])
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert err == "" and proc.returncode == 141


# ---- FRONTLINE_* variables that are not settings -----------------------------------------------

def test_a_misspelt_variable_is_named_with_the_setting_it_resembles() -> None:
    status, out, err, _ = run(["playbook", "check"], env=clean_env(FRONTLINE_PARTITONS="12"))
    assert status == 0 and out.startswith("playbook ")
    assert err == ("frontline: warning: FRONTLINE_PARTITONS is not a Frontline setting and is "
                   "ignored; did you mean FRONTLINE_PARTITIONS?\n")


def test_unknown_variables_one_warning_each() -> None:
    warnings = unknown_variables({"FRONTLINE_BROKERS": "kafka://k:9092", "FRONTLINE_BROKER": "x",
                                  "FRONTLINE_COLOUR": "blue", "FRONTLINE_PARTITIONS": "4",
                                  "FRONTLINE_GROUP_INSTANCE_ID": "pod-0", "PATH": "/bin"})
    assert warnings == [
        ("FRONTLINE_BROKERS is not a Frontline setting and is ignored; did you mean "
         "FRONTLINE_BROKER?"),
        "FRONTLINE_COLOUR is not a Frontline setting and is ignored"]


def test_every_variable_the_project_sets_is_known() -> None:
    """The deploy files, the Makefile and the tests set only settings (or the allow-list)."""
    import re

    used: set[str] = set()
    for folder in ("deploy", "bench", "streams", "tests/e2e"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".yaml", ".yml", ".env", ""):
                used |= set(re.findall(r"\bFRONTLINE_[A-Z0-9_]*[A-Z0-9]\b",
                                       path.read_text(errors="replace")))
    used |= set(re.findall(r"\bFRONTLINE_[A-Z0-9_]*[A-Z0-9]\b", (ROOT / "Makefile").read_text()))
    assert not unknown_variables(dict.fromkeys(used, "1"))


# ---- database URLs (in-process) ----------------------------------------------------------------

def test_a_bare_postgresql_url_means_the_installed_driver() -> None:
    settings = Settings.load({"database_url": f"postgresql://u:{SECRET}@db:5432/ledger"},
                             environ={})
    assert settings.database_url == f"postgresql+psycopg://u:{SECRET}@db:5432/ledger"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///ledger.sqlite",
                                 "sqlite+pysqlite:////var/lib/frontline/ledger.sqlite",
                                 "postgresql+psycopg://frontline@db/ledger?connect_timeout=5"])
def test_good_database_urls_pass_unchanged(url: str) -> None:
    assert Settings.load({"database_url": url}, environ={}).database_url == url


def test_a_refused_url_is_shown_without_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.load({}, environ={"FRONTLINE_DATABASE_URL":
                                   f"mysql://u:{SECRET}@db/x?password={SECRET}"})
    assert SECRET not in str(refused.value)
    assert "mysql://u:***@db/x?password=***" in str(refused.value)
