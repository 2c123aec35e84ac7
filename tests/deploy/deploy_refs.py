"""What the deployment files may refer to, read from the project itself: the image's entry point,
command and settings (deploy/Dockerfile), the command line (streams.cli), the settings
(streams.settings). Shared by the offline checks of deploy/compose.yaml and deploy/k8s/."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from streams.cli import UsageError, build_parser
from streams.settings import ENV_PREFIX, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
SHIPPED_PLAYBOOK = ROOT / "models" / "default_playbook.yaml"
SETTING_VARIABLES = frozenset(ENV_PREFIX + name.upper() for name in Settings.model_fields)


@dataclass(frozen=True)
class Image:
    """What the Frontline image runs when nothing overrides it."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, out = "", []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        joined += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = joined.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            joined = ""
    return out


@cache
def frontline_image() -> Image:
    steps = dockerfile_instructions()
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    user = ""
    for word, args in steps:
        if word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(args)
        elif word == "CMD":
            cmd = json.loads(args)
        elif word == "USER":
            user = args
    return Image(entrypoint=entrypoint, cmd=cmd, env=env, user=user)


def effective_argv(entrypoint: Sequence[str] | None, command: Sequence[str] | None,
                   image: Image | None = None) -> list[str]:
    """What a container of the image runs: an overridden entry point drops the image's CMD too
    (Docker, Compose and Kubernetes alike)."""
    image = image or frontline_image()
    if entrypoint is not None:
        return [*entrypoint, *(command or [])]
    return [*image.entrypoint, *(image.cmd if command is None else command)]


def command_problem(argv: Sequence[str]) -> str | None:
    """None when argv is a `frontline` command the project's own parser accepts, else why not."""
    if not argv or argv[0] != "frontline":
        return f"{list(argv)}: not a `frontline` command"
    try:
        build_parser().parse_args(list(argv[1:]))
    except SystemExit as exc:  # --help, --version
        return f"{shlex.join(argv)}: exits ({exc.code}) instead of running"
    except UsageError as exc:  # one line saying what is wrong
        return f"{shlex.join(argv)}: {exc}"
    return None


def parse_command(argv: Sequence[str]) -> object:
    """The parsed arguments of a valid `frontline` command (AssertionError otherwise)."""
    problem = command_problem(argv)
    assert problem is None, problem
    return build_parser().parse_args(list(argv[1:]))


def settings_problems(env: Mapping[str, str], where: str) -> list[str]:
    """Every FRONTLINE_* variable must be a setting, and all of them, over the image's own,
    must load (a value Frontline cannot use is refused with the variable's name)."""
    problems = [f"{where}: {name} is not a setting (streams.settings.Settings)"
                for name in sorted(env) if name.startswith(ENV_PREFIX)
                and name not in SETTING_VARIABLES]
    if not problems:
        try:
            load_settings(env)
        except SettingsError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def frontline_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in env.items() if k.startswith(ENV_PREFIX)}


def load_settings(env: Mapping[str, str]) -> Settings:
    """Settings as a container of the image with this environment sees them."""
    return Settings.load({}, environ={**frontline_image().env, **frontline_env(env)})
