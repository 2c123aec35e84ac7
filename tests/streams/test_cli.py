"""The command line: every mistake is one readable line on stderr and a non-zero exit (2 for a
bad argument), never a traceback. Most cases run `main()` in-process; a few run the real
command as a user would, to see exactly what reaches the terminal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from streams.cli import main
from streams.embedded_broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_frontline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FRONTLINE_"):
            monkeypatch.delenv(name)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTLINE_")}
    env.update(extra)
    return env


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv) in-process: (exit code, stdout, stderr)."""
    command = "frontline " + " ".join(argv)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exits (--help) and anything else that exits
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"PRODUCT BUG: `{command}` raised {type(exc).__name__}: {exc} - it must "
                    f"exit 2 with one line on stderr, not end in a traceback")
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(argv: list[str], env: dict[str, str] | None = None,
            timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """The real command (`python -m streams.cli`, as the console script runs it)."""
    return subprocess.run([sys.executable, "-m", "streams.cli", *argv], cwd=ROOT,
                          env=env if env is not None else _clean_env(), capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def one_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, f"`{command}` printed a traceback:\n{err}"
    assert len(lines) == 1, f"`{command}` should print one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("frontline"), lines[0]
    return lines[0]


# ---- bad arguments: exit 2, one line ---------------------------------------------------------

BAD_ARGUMENTS = [
    ([], "the following arguments are required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
    (["worker", "--bogus"], "unrecognized arguments: --bogus"),
    (["simulate", "--rate", "fast"], "argument --rate: expected a number, got 'fast'"),
    (["simulate", "--rate", "-5"], "argument --rate: expected a number >= 0, got '-5'"),
    (["simulate", "--count", "1.5"], "argument --count: expected a whole number >= 0"),
    (["simulate", "--malformed-share", "2"], "argument --malformed-share: expected a share"),
    (["simulate", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["demo", "--duration", "-1"], "argument --duration: expected a number >= 0, got '-1'"),
    (["demo", "--rate", "-300"], "argument --rate: expected a number >= 0"),
    (["demo", "--port", "70000"], "argument --port: expected a port 1-65535, got '70000'"),
    (["demo", "--metrics-port", "0"], "argument --metrics-port: expected a port 1-65535"),
    (["broker", "--port", "http"], "argument --port: expected a port 1-65535, got 'http'"),
    (["worker", "--metrics-port", "abc"], "argument --metrics-port: invalid int value"),
    (["worker", "--metrics-port", "70000"], "--metrics-port=70000"),
    (["worker", "--partitions", "0"], "--partitions=0"),
    (["worker", "--log-level", "loud"], "--log-level='loud': expected one of debug"),
    (["worker", "--broker", "nonsense"], "--broker='nonsense': expected kafka://HOST:PORT"),
    (["simulate", "--broker", "kafka://nohost"], "expected kafka://HOST:PORT"),
    # accepted by the parser but not by the simulator: still a usage error
    (["simulate", "--employees", "0"], "employees"),
    (["simulate", "--employees", "3", "--teams", "9"], "teams"),
    (["simulate", "--malformed-share", "0.6", "--duplicate-share", "0.6"], "share"),
]


@pytest.mark.parametrize(("argv", "says"), BAD_ARGUMENTS,
                         ids=[" ".join(a) or "(nothing)" for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], says: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(argv, capsys)
    line = one_line(err, "frontline " + " ".join(argv))
    assert code == 2, f"exit code {code}: {line}"
    assert says in line
    assert out == ""


def test_a_bad_environment_variable_is_named(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTLINE_METRICS_PORT", "lots")
    code, _, err = run_main(["worker"], capsys)
    assert code == 2
    assert one_line(err, "frontline worker").startswith("frontline: FRONTLINE_METRICS_PORT='lots'")


def test_help_exits_0_and_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["--help"], capsys)
    assert code == 0 and err == ""
    for command in ("broker", "worker", "simulate", "demo"):
        assert command in out


def test_the_real_command_prints_only_the_line() -> None:
    """Nothing else reaches the terminal: no warning, no traceback, no usage block."""
    result = run_cli(["simulate", "--rate", "-5"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "frontline simulate: argument --rate: expected a number >= 0, " \
                            "got '-5'\n"


# ---- a broken playbook -----------------------------------------------------------------------

def _default_playbook() -> str:
    return resources.files("models").joinpath("default_playbook.yaml").read_text("utf-8")


def _break(text: str, old: str, new: str, after: str) -> tuple[str, int]:
    """Replace the first `old` after the line containing `after`; return text and its line."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if after in line)
    at = next(i for i in range(start, len(lines)) if old in lines[i])
    lines[at] = lines[at].replace(old, new, 1)
    return "".join(lines), at + 1


BROKEN_PLAYBOOKS = [
    # (old, new, in the block after, field path named in the error)
    ("target: 0.8", "target: 1.5", "  empathy:", "standards.empathy.target"),
    ("lesson: warm-greeting", "lesson: no-such-lesson", "  greeting:", "standards.greeting.lesson"),
    ("daily_points_cap: 150", "daily_points_cap: -5", "limits:", "limits.daily_points_cap"),
]


@pytest.mark.parametrize("command", ["worker", "playbook check"])
@pytest.mark.parametrize(("old", "new", "after", "field"), BROKEN_PLAYBOOKS,
                         ids=[b[3] for b in BROKEN_PLAYBOOKS])
def test_a_broken_playbook_is_refused_with_file_line_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, after: str,
        field: str, command: str) -> None:
    """The worker refuses it at start; `playbook check` refuses it the same way beforehand."""
    text, line = _break(_default_playbook(), old, new, after)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    # the broker is never contacted: the playbook is refused first
    argv = (["worker", "--playbook", str(bad), "--broker", f"kafka://127.0.0.1:{free_port()}"]
            if command == "worker" else ["playbook", "check", str(bad)])
    code, out, err = run_main(argv, capsys)
    message = one_line(err, f"frontline {command} bad.yaml")
    assert code == 2 and out == ""
    assert message.startswith(f"frontline: {bad}:{line}: {field}: "), message


def test_worker_with_a_broken_playbook_real_command(tmp_path: Path) -> None:
    text, line = _break(_default_playbook(), "target: 0.8", "target: 1.5", "  empathy:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = run_cli(["worker", "--playbook", str(bad)])
    assert result.returncode != 0
    message = one_line(result.stderr, "frontline worker --playbook bad.yaml")
    assert message.startswith(f"frontline: {bad}:{line}: standards.empathy.target: "), message
    assert result.stdout == ""


def test_worker_with_a_missing_playbook_says_so(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    code, _, err = run_main(["worker", "--playbook", str(missing)], capsys)
    assert code != 0
    assert one_line(err, "frontline worker").startswith(f"frontline: {missing}: cannot read")


def test_playbook_check_prints_version_and_standards(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    edited = tmp_path / "next.yaml"
    edited.write_text(_default_playbook().replace('version: "2026.12.1"', 'version: "2027.1.1"')
                      .replace("false_gap_rate: 0.045", "false_gap_rate: 0.02"))
    code, out, err = run_main(["playbook", "check", str(edited)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"playbook 2027.1.1 ({edited}): 9 standards")
    assert "false gaps at most 2.0% of employees at target" in lines[1]
    # each standard's derived design: target, alternative, the exact false-gap rate (within
    # the budget), thresholds, power and median delay
    (empathy,) = [line.split() for line in lines if line.strip().startswith("empathy ")]
    assert empathy[:5] == ["empathy", "1.5", "empathy-statements", "0.8", "0.65"]
    assert 1.0 < float(empathy[5].rstrip("%")) <= 2.0
    assert float(empathy[6]) > 6.03  # a smaller budget needs a higher threshold
    monkeypatch.setenv("FRONTLINE_PLAYBOOK", str(edited))  # the worker's own setting
    code, out, _ = run_main(["playbook", "check"], capsys)
    assert code == 0 and out.startswith("playbook 2027.1.1")


# ---- ports that are taken --------------------------------------------------------------------

@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on for the duration of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_broker_on_a_taken_port_says_the_port_is_taken(taken_port: int) -> None:
    result = run_cli(["broker", "--port", str(taken_port)])
    assert result.returncode == 2, result.stderr  # as the README says
    message = one_line(result.stderr, f"frontline broker --port {taken_port}")
    assert f"port {taken_port}" in message and "already taken" in message, message


@pytest.mark.e2e
def test_worker_whose_metrics_port_is_taken_exits_with_one_line(
        broker: EmbeddedBroker, taken_port: int, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    env = _clean_env(FRONTLINE_BROKER=broker.url, FRONTLINE_TOPIC_PREFIX=f"cli-{tag}.",
                     FRONTLINE_APP_ID=f"frontline-cli-{tag}", FRONTLINE_METRICS_HOST="127.0.0.1",
                     FRONTLINE_DATA_DIR=str(tmp_path / "data"))
    result = run_cli(["worker", "--metrics-port", str(taken_port)], env=env)
    assert result.returncode != 0, result.stdout[-2000:]
    message = one_line(result.stderr, f"frontline worker --metrics-port {taken_port}")
    assert f":{taken_port}" in message and "metrics" in message, message


@pytest.mark.e2e
def test_demo_with_no_employees_is_a_usage_error(tmp_path: Path) -> None:
    """`--employees 0` passes the parser; it must still be refused as a usage error at once,
    not after starting a broker and a worker."""
    result = run_cli(["demo", "--employees", "0", "--duration", "1",
                      "--port", str(free_port()), "--metrics-port", str(free_port())],
                     timeout_s=90)
    if "Traceback" in result.stderr:
        pytest.fail("PRODUCT BUG: `frontline demo --employees 0` starts the broker and worker, "
                    f"then ends in a traceback (exit {result.returncode}): "
                    f"{result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 2
    assert "employees" in one_line(result.stderr, "frontline demo --employees 0")
