"""The worker image's Dockerfile, checked offline (no Docker engine here): what it copies
exists, it runs as a non-root user, and its command and settings are the project's own."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from deploy_refs import dockerfile_instructions

from streams.cli import build_parser
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_slim_base_non_root_user_and_the_worker_as_entry_point() -> None:
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    cmd = json.loads(dict(steps)["CMD"])
    assert entry == ["frontline"]
    args = build_parser().parse_args(cmd)  # a real command of the project's CLI
    assert args.command == "worker"


def test_copied_paths_exist_and_settings_are_real() -> None:
    steps = dockerfile_instructions()
    for word, args in steps:
        if word == "COPY":
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
    env: dict[str, str] = {}
    for word, args in steps:
        if word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
    frontline = {k: v for k, v in env.items() if k.startswith("FRONTLINE_")}
    assert frontline, "the image sets its data dir, metrics and ledger defaults"
    unknown = {k for k in frontline
               if k.removeprefix("FRONTLINE_").lower() not in Settings.model_fields}
    assert not unknown, f"not settings of the project: {unknown}"
    settings = Settings.load({}, environ=frontline)  # and every value is valid
    exposed = [int(args) for word, args in steps if word == "EXPOSE"]
    assert exposed == [settings.metrics_port]
    assert str(settings.data_dir) == "/var/lib/frontline"
