"""The playbook: the company's versioned service standards, lessons, reward rules and limits.

A playbook is a YAML file validated by pydantic; a bad one is refused with the file, line, field
and reason (`PlaybookError`), never half-loaded.
"""

from __future__ import annotations

from datetime import tzinfo
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PLAYBOOK_NAME = "default_playbook.yaml"

# A playbook is a few kilobytes; these bounds refuse a wrong file or an alias bomb ("billion
# laughs") at once instead of parsing or expanding it for minutes.
MAX_PLAYBOOK_BYTES = 1_000_000
MAX_YAML_NODES = 1_000_000  # with every alias expanded; 1 MB of YAML has far fewer

# Fields of an interaction a standard may check; "qa.<item>" names a QA checklist item.
NUMERIC_FIELDS = ("wait_s", "talk_s", "hold_s", "wrap_s", "transfers", "csat", "nps", "sentiment")
BOOLEAN_FIELDS = ("resolved",)

Probability = Annotated[float, Field(gt=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Strict):
    """How one interaction is judged against a standard; missing data means not applicable."""

    field: str = Field(description="interaction field, or qa.<item> for a QA checklist item")
    op: Literal["is_true", "le", "ge", "lt", "gt"] = "is_true"
    value: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Check:
        is_qa = self.field.startswith("qa.") and len(self.field) > 3
        if not (is_qa or self.field in NUMERIC_FIELDS or self.field in BOOLEAN_FIELDS):
            allowed = ", ".join(("qa.<item>",) + BOOLEAN_FIELDS + NUMERIC_FIELDS)
            raise ValueError(f"unknown field {self.field!r}; use one of {allowed}")
        if self.op == "is_true":
            if self.value is not None:
                raise ValueError("op is_true takes no value")
            if not (is_qa or self.field in BOOLEAN_FIELDS):
                raise ValueError(f"op is_true needs a yes/no field, {self.field!r} is numeric")
        else:
            if self.value is None:
                raise ValueError(f"op {self.op} needs a value")
            if self.field not in NUMERIC_FIELDS:
                raise ValueError(f"op {self.op} needs a numeric field, not {self.field!r}")
        return self


class Standard(_Strict):
    """A service standard: what is checked, how good is good enough, and the lesson teaching it."""

    title: str
    check: Check
    target: Probability = Field(description="pass rate the employee is expected to reach")
    weight: Annotated[float, Field(gt=0)] = 1.0
    lesson: str
    channels: list[Literal["voice", "chat", "email", "messaging"]] | None = None
    shortfall: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="overrides evidence.shortfall for this standard")


class Lesson(_Strict):
    title: str
    url: str | None = None
    minutes: Annotated[int, Field(gt=0, le=240)] = 5
    due_days: Annotated[int, Field(gt=0, le=90)] = 7


_RETIRED_EVIDENCE_KEYS = ("window", "min_sample", "confidence", "close_margin")


class EvidencePolicy(_Strict):
    """How convincing the evidence must be before a gap opens and when it closes, in a
    manager's terms; the sequential tests' thresholds are derived from these."""

    shortfall: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.15, description="how far below target a pass rate must be to be worth a lesson")
    false_gap_rate: Annotated[float, Field(ge=0.001, le=0.2)] = Field(
        0.045, description="share of employees exactly at target who may get a (false) gap "
        "per `per_interactions` applicable interactions")
    false_close_rate: Annotated[float, Field(ge=0.001, le=0.2)] = Field(
        0.01, description="share of employees truly `shortfall` below target whose open gap "
        "may (falsely) close per `per_interactions` applicable interactions")
    per_interactions: Annotated[int, Field(ge=20, le=1000)] = 200
    effect_window: Annotated[int, Field(ge=5, le=200)] = Field(
        20, description="applicable interactions before and after a lesson that measure it")

    @model_validator(mode="before")
    @classmethod
    def _no_rolling_window(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _RETIRED_EVIDENCE_KEYS:
                if key in data:
                    raise _FieldError((key,), (
                        "the rolling-window gap rule was replaced by a sequential test: remove "
                        "evidence.window, min_sample, confidence and close_margin, and set "
                        "evidence.shortfall and evidence.false_gap_rate instead"))
        return data


class SustainedExcellence(_Strict):
    points: Annotated[int, Field(gt=0)]
    min_score: Annotated[float, Field(gt=0, le=100)] = 90.0
    over_last: Annotated[int, Field(ge=2, le=500)] = 20


class GapClosedAfterLesson(_Strict):
    points: Annotated[int, Field(gt=0)]


class DelightedCustomer(_Strict):
    points: Annotated[int, Field(gt=0)]
    csat: Annotated[int, Field(ge=1, le=5)] = 5


class Rewards(_Strict):
    """Reward rules; leave one out (or null) to switch it off."""

    sustained_excellence: SustainedExcellence | None = None
    gap_closed_after_lesson: GapClosedAfterLesson | None = None
    delighted_customer: DelightedCustomer | None = None


class Limits(_Strict):
    """Fatigue guards."""

    max_open_lessons: Annotated[int, Field(ge=1, le=50)] = 2
    lesson_cooldown_hours: Annotated[float, Field(ge=0)] = 72.0
    lesson_grace_days: Annotated[float, Field(ge=0, le=90)] = Field(
        3.0, description="an assignment not completed this long after its due time expires")
    daily_points_cap: Annotated[int, Field(gt=0)] = 150


class Playbook(_Strict):
    version: Annotated[str, Field(min_length=1)]
    name: str = ""
    timezone: str = "UTC"
    evidence: EvidencePolicy = EvidencePolicy()
    standards: Annotated[dict[str, Standard], Field(min_length=1)]
    lessons: dict[str, Lesson]
    rewards: Rewards = Rewards()
    limits: Limits = Limits()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _lessons_exist(self) -> Playbook:
        for name, standard in self.standards.items():
            shortfall = self.shortfall_of(name)
            if standard.target - shortfall < 0.01:
                raise _FieldError(
                    ("standards", name, "target"),
                    f"target {standard.target:g} minus the shortfall {shortfall:g} leaves no "
                    f"pass rate to detect; lower the shortfall or raise the target")
            if standard.lesson not in self.lessons:
                raise _FieldError(
                    ("standards", name, "lesson"),
                    f"lesson {standard.lesson!r} is not defined under lessons",
                )
        return self

    def shortfall_of(self, standard: str) -> float:
        """The shortfall the gap tests of `standard` look for: its own, or the evidence one."""
        own = self.standards[standard].shortfall
        return own if own is not None else self.evidence.shortfall

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone)


class _FieldError(ValueError):
    """A cross-field error that knows which field it is about."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class PlaybookError(ValueError):
    """A playbook that cannot be used; the message names file, line, field and reason."""


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest YAML node on the path `loc`."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node = value_node
                    line = key_node.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


class _RecursiveAlias(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """Nodes of the document with every alias expanded (counting stops past `limit`); raises
    _RecursiveAlias for an alias inside its own anchor."""
    sizes: dict[int, int] = {}  # an anchored node is one object wherever its aliases point
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise _RecursiveAlias(node)
        open_nodes.add(id(node))
        total = 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        for child in children:
            total += size(child)
            if total > limit:
                break
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(root)


def _compose(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The YAML node tree (for line numbers) and the data built from it, parsed once."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        try:
            expanded = _expanded_nodes(root, MAX_YAML_NODES)
        except _RecursiveAlias as exc:
            raise PlaybookError(f"{source}:{exc.node.start_mark.line + 1}: a YAML alias refers "
                                f"to its own anchor") from None
        if expanded > MAX_YAML_NODES:
            raise PlaybookError(f"{source}: YAML anchors and aliases expand to more than "
                                f"{MAX_YAML_NODES:,} values; write the playbook out without "
                                f"them") from None
        return root, loader.construct_document(root)
    finally:
        loader.dispose()


def parse_playbook(text: str, source: str = "<playbook>") -> Playbook:
    """Validate playbook YAML text; raise PlaybookError naming line, field and reason."""
    try:
        root, data = _compose(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        reason = getattr(exc, "problem", None) or str(exc)
        raise PlaybookError(f"{where}: not valid YAML: {reason}") from None
    except RecursionError:
        raise PlaybookError(f"{source}: not a playbook: nested too deeply") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}:1: a playbook is a mapping with version, standards, lessons")
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, _FieldError):
            loc = loc + cause.loc
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PlaybookError(f"{source}:{line}: {field}: {message}{more}") from None


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Load a playbook file, or the one shipped with Frontline when `path` is None."""
    if path is None:
        text = resources.files("models").joinpath(DEFAULT_PLAYBOOK_NAME).read_text("utf-8")
        return parse_playbook(text, DEFAULT_PLAYBOOK_NAME)
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_PLAYBOOK_BYTES + 1)  # bounded: the path may be /dev/zero
    except OSError as exc:
        raise PlaybookError(f"{p}: cannot read playbook: {exc.strerror or exc}") from None
    if len(data) > MAX_PLAYBOOK_BYTES:
        raise PlaybookError(f"{p}: more than {MAX_PLAYBOOK_BYTES // 1_000_000} MB, too large "
                            f"for a playbook (they are a few kB): is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PlaybookError(f"{p}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x} at "
                            f"offset {exc.start}; save the playbook as UTF-8") from None
    return parse_playbook(text, str(p))
