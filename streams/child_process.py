"""The child processes Frontline starts (broker, worker): started so that they die with their
parent, even one killed with SIGKILL, and stopped politely, then firmly."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Any:
    """libc's prctl on Linux, else None. Looked up once here, never in a freshly forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn after which the kernel sends the child SIGKILL when its parent ends, or None
    where that is not available (not Linux) or not safe.

    Linux sends the signal when the *thread* that started the child ends, not the process, so
    the hook is only given to children started from the main thread: a child started from a
    worker thread that returns early would otherwise be killed with it."""
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    prctl = _prctl

    def hook() -> None:
        # Runs in the child between fork and exec: no imports, no locks, only system calls.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def start_child(argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen(argv, **popen) in a session of its own (a Ctrl-C in the terminal reaches
    only Frontline, which stops its children in order) that dies with this process on Linux.
    Elsewhere a child outlives a parent killed with SIGKILL; a parent that ends otherwise stops
    it with stop_process on its way out."""
    return subprocess.Popen(list(argv), start_new_session=True,
                            preexec_fn=die_with_parent_hook(), **popen)  # noqa: PLW1509


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    """SIGTERM, then SIGKILL if it does not end in time; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
