"""A throw-away PostgreSQL server for the ledger tests: initdb into a temporary folder, started
with pg_ctl on a free loopback port, trust authentication, durability off for speed.

The server binaries refuse to run as root, so under root they run as the `postgres` system
user (setuid/setgid in the child) and the temporary folders belong to that user. The folders
are made with tempfile.mkdtemp (under $TMPDIR or /tmp), not under pytest's basetemp: pytest
keeps /tmp/pytest-of-<user> at mode 0700, which the `postgres` user cannot traverse.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
ROOT_RUN_AS = "postgres"
LOG_TAIL_LINES = 40


class PostgresServerError(RuntimeError):
    """The test PostgreSQL server cannot be set up, started or stopped; says why."""


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in SERVER_BINARIES)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,); unparsable versions sort first."""
    return tuple(int(p) for p in re.findall(r"\d+", bindir.parent.name)) or (-1,)


def find_postgres_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: what `pg_config --bindir` says if it
    has them, else the newest /usr/lib/postgresql/<version>/bin (Debian's layout) that does."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_server_binaries(Path(out)):
            return Path(out)
    candidates = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_binaries(d)]
    if candidates:
        return max(candidates, key=_version_key)
    return None


def describe_missing_binaries() -> str:
    """Why find_postgres_bindir() found nothing, for a skip or error message."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        where = "pg_config is not on PATH"
    else:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            out = f"<failed: {exc}>"
        where = f"`pg_config --bindir` says {out or '<nothing>'}, which lacks them"
    scanned = sorted(str(d) for d in Path("/usr/lib/postgresql").glob("*/bin"))
    return (f"PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) not found: {where}, and "
            f"/usr/lib/postgresql/*/bin has none with all three (found: {scanned or 'none'}). "
            "Install the server with `apt-get install postgresql-15`.")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _traversable_by(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first folder from / down to `path` that uid cannot enter (search permission),
    or None when it can reach `path`."""
    for folder in [*reversed(path.parents), path]:
        st = folder.stat()
        if uid == 0:
            continue
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return folder
    return None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, reachable at
    postgresql+psycopg://<user>@127.0.0.1:<port>/<dbname> without a password.

    start() runs initdb the first time; stop() is a fast shutdown that keeps the data, so
    start() again (or restart()) brings the same cluster back on the same port. close()
    (or leaving the `with` block) stops it and deletes the folder."""

    def __init__(self, *, user: str = "frontline", dbname: str = "postgres",
                 bindir: Path | None = None, base_dir: Path | None = None,
                 port: int | None = None, start_timeout_s: int = 60) -> None:
        found = bindir or find_postgres_bindir()
        if found is None:
            raise PostgresServerError(describe_missing_binaries())
        self.bindir = Path(found)
        self.user = user
        self.dbname = dbname
        self.port = port if port is not None else free_port()
        self._port_given = port is not None
        self.start_timeout_s = start_timeout_s
        self._base_dir = base_dir
        self.root: Path | None = None
        self._initialized = False
        self._started_once = False
        self._db_counter = 0
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(ROOT_RUN_AS)
            except KeyError:
                raise PostgresServerError(
                    f"running as root, and PostgreSQL refuses to run as root, but there is no "
                    f"`{ROOT_RUN_AS}` system user to run it as (the postgresql-15 package "
                    f"creates it)") from None
            self._run_as: pwd.struct_passwd | None = pw
        else:
            self._run_as = None
        atexit.register(self._atexit_stop)

    # -- paths ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._require_root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_root() / "sock"

    @property
    def log_path(self) -> Path:
        return self._require_root() / "server.log"

    def _require_root(self) -> Path:
        if self.root is None:
            raise PostgresServerError("the server has no folder yet: call start() first")
        return self.root

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default database (`dbname`, initially `postgres`)."""
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    # -- running the server's binaries -----------------------------------------------------

    def _env(self) -> dict[str, str]:
        # PG* variables from the caller's shell (PGHOST, PGPORT, PGDATA...) must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env.pop("LANG", None)
        if self._run_as is not None:
            env["HOME"] = self._run_as.pw_dir
            env["USER"] = env["LOGNAME"] = self._run_as.pw_name
        return env

    def _run(self, binary: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / binary), *args]
        extra: dict[str, object] = {}
        if self._run_as is not None:
            extra = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid,
                     "extra_groups": []}
        try:
            # stdin from /dev/null, and output to pipes that the daemonised postmaster does not
            # keep (pg_ctl sends the server's own output to the log file).
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout, env=self._env(), cwd=self._require_root(),
                                  umask=0o077, check=False, **extra)  # type: ignore[call-overload]
        except subprocess.TimeoutExpired as exc:
            raise PostgresServerError(
                f"{binary} {' '.join(args[:1])} did not finish in {timeout:.0f} s"
                f"{self._log_tail()}") from exc

    def _log_tail(self) -> str:
        if self.root is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return f"\n--- last lines of {self.log_path} ---\n" + "\n".join(lines)

    def _make_folders(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="frontline-pg-", dir=self._base_dir))
        self.root = root
        if self._run_as is not None:
            # The folder itself is chowned below; every folder above it must let the
            # server's user through.
            blocked = _traversable_by(root.parent, self._run_as.pw_uid,
                                      {self._run_as.pw_gid,
                                       *os.getgrouplist(self._run_as.pw_name,
                                                        self._run_as.pw_gid)})
            if blocked is not None:
                mode = stat.filemode(blocked.stat().st_mode)
                shutil.rmtree(root, ignore_errors=True)
                self.root = None
                raise PostgresServerError(
                    f"the `{self._run_as.pw_name}` user cannot enter {blocked} ({mode}), "
                    f"so it cannot reach the data folder {root}; pass a base_dir it can "
                    f"traverse")
        self.socket_dir.mkdir(mode=0o700)
        if self._run_as is not None:
            for path in (root, self.socket_dir):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        # A Unix socket path is limited to ~107 bytes; the socket is sock/.s.PGSQL.<port>.
        if len(str(self.socket_dir)) > 90:
            raise PostgresServerError(f"socket folder path too long for a Unix socket: "
                                      f"{self.socket_dir} (use a shorter base_dir)")

    def _initdb(self) -> None:
        done = self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "-U", self.user,
                         "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
                         timeout=120)
        if done.returncode != 0:
            raise PostgresServerError(f"initdb failed (exit {done.returncode}):\n"
                                      f"{done.stdout}{done.stderr}")
        self._initialized = True

    # -- lifecycle -----------------------------------------------------------------------

    def _pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process is alive."""
        if self.root is None:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A postmaster that died uncleanly (stale postmaster.pid) may linger as a zombie until
        # init reaps it; kill(pid, 0) still succeeds on a zombie.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return pid
        return None if state in ("Z", "X") else pid

    def running(self) -> bool:
        return self._pid() is not None

    def start(self) -> Self:
        """Start the server (initdb first on the first call); a no-op when it is running.
        After a stop() it comes back with the same data folder on the same port."""
        if self.running():
            return self
        if self.root is None:
            self._make_folders()
        if not self._initialized:
            self._initdb()
        attempts = 1 if (self._port_given or self._started_once) else 3
        for attempt in range(attempts):
            done = self._pg_ctl_start()
            if done.returncode == 0:
                self._started_once = True
                return self
            tail = self._log_tail()
            port_taken = "could not bind" in tail or "Address already in use" in tail
            if port_taken and attempt + 1 < attempts:
                # Someone took the free port between free_port() and the bind: pick another.
                self.port = free_port()
                continue
            raise PostgresServerError(
                f"pg_ctl start failed (exit {done.returncode}) on port {self.port}:\n"
                f"{done.stdout}{done.stderr}{self._log_tail()}")
        raise AssertionError("unreachable")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        options = " ".join([
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories='{self.socket_dir}'",
            "-c fsync=off",
            "-c full_page_writes=off",
            "-c synchronous_commit=off",
        ])
        return self._run("pg_ctl", "start", "-w", "-t", str(self.start_timeout_s),
                         "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options,
                         timeout=self.start_timeout_s + 15)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (fast shutdown: open sessions are cut off), keeping its data."""
        if not self.running():
            return
        done = self._run("pg_ctl", "stop", "-w", "-m", mode, "-t", "30", "-D",
                         str(self.data_dir), timeout=45)
        if done.returncode != 0 and self.running():
            if mode != "immediate":
                self.stop("immediate")
                return
            raise PostgresServerError(f"pg_ctl stop failed (exit {done.returncode}):\n"
                                      f"{done.stdout}{done.stderr}{self._log_tail()}")

    def restart(self) -> Self:
        """Stop (fast) and start again: same data folder, same port."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop()
        finally:
            pid = self._pid()
            if pid is not None:  # pg_ctl could not stop it: do not leave it behind
                os.kill(pid, signal.SIGQUIT)
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
                self._initialized = False
                self._started_once = False
            atexit.unregister(self._atexit_stop)

    def _atexit_stop(self) -> None:
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            self.close()

    # -- databases -----------------------------------------------------------------------

    def _admin_connection(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                               dbname="postgres", autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique name when none is given) and return its URL."""
        if name is None:
            self._db_counter += 1
            name = f"test_{os.getpid()}_{self._db_counter}"
        with self._admin_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting off any sessions still connected to it."""
        with self._admin_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"PostgresServer({self.url_for(self.dbname)}, {state}, data={self.root})"
