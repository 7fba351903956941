"""The rule file format: what an analyst writes in YAML.

A rule is metadata (id, family, Chinese title, references …), typed parameters,
one *detection* of a small set of kinds, what it *emits* per suspicion, and inline
*tests*. The models are pydantic so the JSON Schema editors use comes for free
(`docs/rule.schema.json`). Loading keeps every node's line and column, so an error
in a rule names ``file:line:col``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

# A SQL expression in DuckDB syntax, validated by fraudscreen.expressions. Never blank:
# an empty `where:` would otherwise filter nothing and flag every row.
Expr = Annotated[str, Field(pattern=r"\S")]


def location(file: str | None, line: int | None, col: int | None) -> str:
    """``file:line:col``, leaving out what is not known."""
    return ":".join(str(p) for p in (file, line, col) if p is not None)


class RuleError(ValueError):
    """A rule, or a file the rules read (a watch list, a params file), that cannot be
    loaded or compiled; carries where it is."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 col: int | None = None):
        self.file, self.line, self.col, self.message = file, line, col, message
        self.where = location(file, line, col)
        super().__init__(f"{self.where}: {message}" if self.where else message)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# Parameters every rule may use, bound by the run: a rule's own may not take their names.
RUN_PARAMS = frozenset({"window_start", "window_end", "filter_window", "data_start"})


# A decimal parameter is bound as DECIMAL(18 + places, places) (expressions.literal), in
# the 38 digits both engines hold; beyond 12 places its product with an amount or a
# quantity column (DECIMAL(16, 2) or (16, 4)) no longer fits, and the rule fails on the
# night's data. Checked when the value is read, so that it is refused naming the parameter.
DECIMAL_DIGITS, DECIMAL_PLACES = 18, 12


# A value wrapped in a Chinese input method's quotes: “11”, ‘08’, 「Z51」, 『Z51』.
_WIDE_QUOTED = re.compile(r"\s*[“‘「『].*[”’」』]\s*", re.S)


class Param(_Model):
    """A typed, documented rule parameter; analysts override it per run or site."""

    type: Literal["int", "decimal", "string", "date", "bool", "list"]
    default: Any
    description: str = ""
    # Bounds of an int or decimal parameter, inclusive (a day count is not negative):
    # a value outside them is refused wherever it is given, the default included.
    min: int | Decimal | None = None
    max: int | Decimal | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Param:
        if {self.min, self.max} != {None} and self.type not in ("int", "decimal"):
            raise ValueError("min and max bound an int or decimal parameter only")
        for bound in (self.min, self.max):
            if bound is not None:
                self._typed(bound)
        if None not in (self.min, self.max) and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def coerce(self, value: Any) -> Any:
        """The value as the declared type and within its bounds, or ValueError saying
        what was expected."""
        typed = self._typed(value)
        for text in [*(typed if self.type == "list" else []), str(value)]:
            if _WIDE_QUOTED.fullmatch(text):
                raise ValueError(f"{text.strip()} is in full-width quotes (a Chinese input "
                                 "method's), which would be compared as part of the value and "
                                 f"match nothing: remove them ({text.strip()[1:-1]})")
        if self.type == "decimal" and (typed.copy_abs() >= 10 ** DECIMAL_DIGITS
                                       or typed.as_tuple().exponent < -DECIMAL_PLACES):
            raise ValueError(f"{value} does not fit: a decimal parameter has at most "
                             f"{DECIMAL_DIGITS} digits before the point and "
                             f"{DECIMAL_PLACES} after it")
        if self.min is not None and typed < self.min:
            raise ValueError(f"{value} is below its minimum, {self.min}")
        if self.max is not None and typed > self.max:
            raise ValueError(f"{value} is above its maximum, {self.max}")
        return typed

    def _typed(self, value: Any) -> Any:
        """The value as the declared type; never null, and a list holds names or codes
        (text, or whole numbers read as their digits), never a mapping or a null."""
        try:
            if value is None:
                raise ValueError
            if self.type == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(str(value))
            if self.type == "decimal":
                number = Decimal(str(value))
                if not number.is_finite():
                    raise ValueError
                return number
            if self.type == "bool":
                if isinstance(value, bool):
                    return value
                return {"true": True, "false": False}[str(value).lower()]
            if self.type == "date":
                return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
            if self.type == "list":
                items = value if isinstance(value, list) else str(value).split(",")
                if not all(isinstance(v, str | int) and not isinstance(v, bool)
                           and str(v).strip() for v in items):
                    raise ValueError
                return [str(v).strip() for v in items]
            if isinstance(value, list | dict):
                raise ValueError
            return str(value)
        except (ValueError, KeyError, InvalidOperation, TypeError):
            hint = (": names or codes, as text (quoted if need be); [] for none"
                    if self.type == "list" else "")
            raise ValueError(f"expected {self.type}, got {value!r}{hint}") from None


class Lookup(_Model):
    """A value looked up per source row: ``value`` aggregated over ``source`` rows
    whose ``on`` columns equal the row's. Left-joined: no match gives NULL."""

    source: str
    on: list[str]
    where: Expr | None = None
    value: Expr


class _Detection(_Model):
    source: str
    where: Expr | None = None
    lookups: dict[str, Lookup] = Field(default_factory=dict)


class Filter(_Detection):
    """Every source row that passes ``where`` is a hit."""

    kind: Literal["filter"]


class Skip(_Model):
    """Groups not judged (e.g. no stock data): left out and counted in run.json."""

    when: Expr
    reason: str
    # What is counted: the distinct values of these group_by columns among the groups
    # not judged (``[institution_id]``: institutions); empty, the groups themselves.
    count: list[str] = []

    def unit(self) -> str:
        """What the count counts, for the run's record of the rule."""
        return f"distinct {', '.join(self.count)}" if self.count else "groups"


class Aggregate(_Detection):
    """Group rows; a group whose ``having`` holds is a hit."""

    kind: Literal["aggregate"]
    group_by: list[str]
    measures: dict[str, Expr]
    having: Expr
    skip: Skip | None = None


class Sequence(_Detection):
    """Each row against the nearest earlier row of its partition (``prev.col``)."""

    kind: Literal["sequence"]
    partition_by: list[str]
    order_by: list[str]
    match: Expr


class Other(_Model):
    source: str
    on: list[str]
    where: Expr | None = None


class Correlate(_Detection):
    """Each row with the rows of another source that match it (``other.col``)."""

    kind: Literal["correlate"]
    with_: Other = Field(alias="with")
    match: Expr
    measures: dict[str, Expr] = Field(default_factory=dict)


class Span(_Model):
    minutes: int | str | None = None
    hours: int | str | None = None
    days: int | str | None = None


class Window(_Detection):
    """Runs of events within a sliding span per partition whose ``having`` holds.

    "Within N minutes/hours" means last − first ≤ N; "within N days" means all
    events in one N-day calendar span (last date − first date ≤ N − 1). Windows that
    overlap are merged into one run; the hit is its first or last event.
    """

    kind: Literal["window"]
    partition_by: list[str]
    time: str
    span: Span
    having: Expr
    anchor: Literal["first", "last"]
    measures: dict[str, Expr] = Field(default_factory=dict)


class PeriodChange(_Detection):
    """A measure per group and calendar month against the previous month; ``measures``
    are more aggregates over the group's rows in the month judged."""

    kind: Literal["period_change"]
    group_by: list[str]
    time: str
    period: Literal["month"] = "month"
    value: Expr
    having: Expr
    measures: dict[str, Expr] = Field(default_factory=dict)


class Query(_Model):
    """Escape hatch: one read-only SELECT over rule sources, validated like the rest."""

    kind: Literal["query"]
    sql: str


Detection = Annotated[
    Filter | Aggregate | Sequence | Correlate | Window | PeriodChange | Query,
    Field(discriminator="kind"),
]


class Emit(_Model):
    """How a hit becomes a suspicion. Unset fields default to the hit's column of
    the same name when it has one."""

    settlement_id: Expr | None = None
    person_id: Expr | None = None
    institution_id: Expr | None = None
    item_code: Expr | None = None
    related_settlement_ids: Expr | None = None
    period_start: Expr | None = None
    period_end: Expr | None = None
    amount_at_risk: Expr
    evidence: dict[str, Expr] = Field(default_factory=dict)
    message: str
    key: list[str] = Field(default_factory=lambda: ["settlement_id"])

    @field_validator("evidence")
    @classmethod
    def _names_apart(cls, v: dict[str, Expr]) -> dict[str, Expr]:
        # SQL matches names in any letter case: `Qty` and `qty` would be one column.
        seen: dict[str, str] = {}
        for name in v:
            if name.casefold() in seen:
                raise ValueError(f"evidence names {seen[name.casefold()]!r} and {name!r} differ "
                                 "only in letter case, which SQL does not tell apart")
            seen[name.casefold()] = name
        return v


class Expected(_Model):
    """An expected suspicion in a rule test; only the fields given are compared."""

    settlement_id: str | None = None
    person_id: str | None = None
    institution_id: str | None = None
    item_code: str | None = None
    related_settlement_ids: list[str] | None = None
    period_start: dt.date | None = None
    period_end: dt.date | None = None
    amount_at_risk: Decimal | None = None
    message: str | None = None  # the whole sentence, exactly


class RuleTest(_Model):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    given: dict[str, list[dict[str, Any]]]
    expect: list[Expected]


@dataclass(frozen=True)
class Scalar:
    """A scalar as the file has it, to place an error on the line and column of a
    multi-line ``where: |`` block rather than on its key."""

    line: int
    col: int
    source: str  # the value's text in the file, quotes and block indicator included
    value: str   # what YAML made of it

    def find(self, text: str, at: int | None) -> tuple[int, int] | None:
        """(line, column) in the file of offset ``at`` of ``text``, this scalar's value.
        The word there is looked for in the file's text, as many times as it occurs
        before ``at``, so quoting, indentation and folding do not matter."""
        word = re.match(r"\w+|\S", text[at:]) if at is not None and text == self.value else None
        if word is None:
            return None
        # A name is found whole (not the t of a \t escape); a block's first line is its
        # indicator (|, >-) and a quoted value's first character its quote, never the text.
        name = re.escape(word.group(0))
        pattern = re.compile(rf"(?<!\w){name}(?!\w)" if word.group(0)[0].isalnum()
                             or word.group(0)[0] == "_" else name)
        skip = (self.source.find("\n") + 1 if self.source[:1] in "|>"
                else 1 if self.source[:1] in "'\"" else 0)
        matches = list(pattern.finditer(self.source, skip))
        before = len(pattern.findall(text, 0, at))
        if before >= len(matches):
            return None
        i = matches[before].start()
        newlines = self.source.count("\n", 0, i)
        if not newlines:
            return self.line, self.col + i
        return self.line + newlines, i - self.source.rfind("\n", 0, i)


def bad_id(rule_id: Any) -> str:
    """What is wrong with a rule id that is not FAMILY.NAME, for the loader and
    `rules new` alike."""
    return ("write FAMILY.NAME in lower-case letters, digits and _, each part starting "
            f"with a letter (e.g. site_a.night_visits), not {rule_id!r}")


class Rule(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    version: str
    family: str
    # A site family's Chinese name, as the leads and the report show it (the built-in
    # families have theirs): family: excess_prescribing, family_title: 超量开药.
    family_title: str | None = None
    title: str
    description: str
    severity: Literal["low", "medium", "high"]
    status: Literal["experimental", "stable", "deprecated"] = "experimental"
    references: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    amount_basis: str = ""
    # What one hit depends on, so that a nightly run can re-screen only what new data
    # touched: "person" — one person's settlements and fee lines (and the reference
    # tables); "institution" — one institution's settlements, fee lines and purchases;
    # "global" (the default, always safe) — anything.
    scope: Literal["global", "person", "institution"] = "global"
    params: dict[str, Param] = Field(default_factory=dict)
    detect: Detection
    emit: Emit
    tests: list[RuleTest] = Field(default_factory=list)

    # Where the rule came from; set by the loader, not written by analysts.
    # Set by load_rule, never written in a rule file (so not in its JSON Schema either).
    path: SkipJsonSchema[str | None] = Field(default=None, exclude=True)
    positions: SkipJsonSchema[dict[tuple, tuple[int, int]]] = Field(default_factory=dict,
                                                                     exclude=True)
    content_hash: SkipJsonSchema[str] = Field(default="", exclude=True)
    scalars: SkipJsonSchema[dict[tuple, Scalar]] = Field(default_factory=dict, exclude=True)

    @field_validator("params")
    @classmethod
    def _not_a_run_parameter(cls, v: dict[str, Param]) -> dict[str, Param]:
        taken = sorted(set(v) & RUN_PARAMS)
        if taken:
            raise ValueError(f"parameter {taken[0]!r} is the run's own (:{taken[0]} is the "
                             "analysis window); choose another name")
        return v

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        if not v.replace("_", "").isalnum():
            raise ValueError("family must be a snake_case name")
        return v

    @field_validator("family_title")
    @classmethod
    def _a_title(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("family_title is empty: give the family's Chinese name")
        return v.strip() if v else v

    def position(self, *path: Any, within: tuple[str, int | None] | None = None
                 ) -> tuple[int | None, int | None]:
        """Line and column of the deepest node on ``path`` that exists; with ``within``
        (an expression's text and an offset in it), of that spot inside the value."""
        scalar = self.scalars.get(tuple(path))
        if within is not None and scalar is not None:
            spot = scalar.find(*within)
            if spot is not None:
                return spot
        return place(self.positions, *path)

    def where(self, *path: Any) -> str:
        """``file:line:col`` of the deepest node on ``path`` that exists."""
        return location(self.path, *self.position(*path))

    def error(self, message: str, *path: Any,
              within: tuple[str, int | None] | None = None) -> RuleError:
        line, col = self.position(*path, within=within)
        return RuleError(f"rule {self.id}: {message}", self.path, line, col)


# libyaml's parser when PyYAML has it: the pure-Python one took 0.06 s a rule file.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLoader(_SafeLoader):
    """YAML 1.2 booleans and numbers. YAML 1.1 reads ``on:`` as True, and a code as a
    number: ``001102000010000`` as octal 77577850880, ``01`` as 1, ``12:30`` as 750. Here
    only a plain decimal number without a leading zero is a number; the rest stays text."""


_NUMBERS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
YamlLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in _NUMBERS]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?$"
               r"|^[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))


def _date(loader: YamlLoader, node: yaml.ScalarNode) -> dt.date | dt.datetime:
    """A value YAML reads as a date (``2024-02-30``) that is none: an error at its place,
    not a ValueError from the depths of PyYAML."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as err:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value} is not a date ({err}): dates are YYYY-MM-DD",
            node.start_mark) from None


YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _date)


class ParamLoader(YamlLoader):
    """``YamlLoader`` reading a decimal number as written (``Decimal``), for parameter
    values: a float keeps 17 digits, and ``123456789012345678.5`` would be bound as
    ``123456789012345680``."""


def _exact(loader: ParamLoader, node: yaml.ScalarNode) -> Decimal:
    try:
        number = Decimal(node.value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():  # !!float .inf
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a decimal number", node.start_mark)
    return number


ParamLoader.add_constructor("tag:yaml.org,2002:float", _exact)


def read_plain_yaml(text: str):
    """YAML 1.2 (``YamlLoader``), refusing aliases and keys given twice (as in rule
    files)."""
    return _compose(text)[1]


def _compose(text: str, loader_type: type[YamlLoader] = YamlLoader
             ) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for positions) and its data, parsed once."""
    loader = loader_type(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _plain_tree(node, set())
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _plain_tree(node: yaml.Node, seen: set[int]) -> None:
    """Refuse what a rule file has no use for and a reader would misread: an alias
    (``*a``: a 1 KB file of nested aliases expands to gigabytes) and a key given twice
    (YAML keeps the last silently: two ``where:`` lines, one of them ignored)."""
    if id(node) in seen:
        raise yaml.constructor.ConstructorError(
            None, None, "aliases (*name) are not allowed here: write the value out",
            node.start_mark)
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):  # {{type: int}}: braces doubled
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a name, not a mapping or a list (are braces "
                    "{{ doubled?)", key.start_mark)
            if key.value in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key.value!r} is given twice", key.start_mark)
            keys.add(key.value)
            _plain_tree(value, seen)
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            _plain_tree(value, seen)


def yaml_positions(node: yaml.Node, path: tuple = ()) -> dict[tuple, tuple[int, int]]:
    """Map every YAML path to its 1-based (line, column)."""
    out = {path: (node.start_mark.line + 1, node.start_mark.column + 1)}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out.update(yaml_positions(value, path + (key.value,)))
            out[path + (key.value,)] = (key.start_mark.line + 1, key.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out.update(yaml_positions(value, path + (i,)))
    return out


def place(positions: dict[tuple, tuple[int, int]], *path: Any
          ) -> tuple[int | None, int | None]:
    """Line and column of the deepest node on ``path`` that ``positions`` holds."""
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in positions:
            return positions[tuple(path[:n])]
    return None, None


def _scalars(node: yaml.Node, text: str, path: tuple = ()) -> dict[tuple, Scalar]:
    """Every scalar value by its YAML path, with its place and text in the file."""
    if isinstance(node, yaml.ScalarNode):
        return {path: Scalar(node.start_mark.line + 1, node.start_mark.column + 1,
                             text[node.start_mark.index:node.end_mark.index], node.value)}
    children = (node.value if isinstance(node, yaml.MappingNode)
                else enumerate(node.value) if isinstance(node, yaml.SequenceNode) else ())
    out: dict[tuple, Scalar] = {}
    for key, value in children:
        out.update(_scalars(value, text, path + (key if isinstance(key, int) else key.value,)))
    return out


def _alias_path(loc: tuple) -> tuple:
    """Pydantic error locations name union members; YAML paths do not."""
    return tuple(p for p in loc if not (isinstance(p, str) and p in {
        "filter", "aggregate", "sequence", "correlate", "window", "period_change", "query",
    })) if loc else loc


def read_text(path: Path, what: str = "rule file") -> str:
    """A YAML file's text; one that is not UTF-8 (an editor's GBK/ANSI) is a RuleError
    at the first byte that is not. ``what`` names the file to the analyst."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RuleError(f"cannot be read ({err.strerror})", str(path)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise RuleError(f"not UTF-8 (byte 0x{raw[err.start]:02x}): save the {what} as "
                        "UTF-8 (另存为 → 编码 UTF-8); GBK/ANSI is not read",
                        str(path), line, column) from None


# PyYAML's words for a tab or a misplaced key, and what an analyst should look at.
_YAML_HINTS = (
    ("mapping values are not allowed", "a value holding ': ' must be quoted, and a nested "
                                       "key indented under its parent"),
    ("did not find expected key", "check the indentation: the keys of one mapping line up"),
    ("expected <block end>", "check the indentation: the keys of one mapping line up"),
)


def _keys(*models: type[BaseModel]) -> set[str]:
    """The keys a rule file writes for these sections (``with``, not ``with_``)."""
    return {f.alias or name for m in models for name, f in m.model_fields.items()
            if not f.exclude}


def _held(annotation: Any) -> tuple[list[type[BaseModel]], int]:
    """The models a field's type holds, and how many parts of an error location stand
    between the field and them (a list's index, a mapping's key, a detection's kind)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], 0
    args = get_args(annotation)
    if get_origin(annotation) in (list, dict):
        models, depth = _held(args[-1])
        return models, depth + 1
    held = [_held(a) for a in args]
    models = [m for ms, _ in held for m in ms]
    return models, max((d for _, d in held), default=0) + (len(models) > 1)


def _section(loc: tuple) -> list[type[BaseModel]]:
    """The models the mapping at pydantic's error location ``loc`` may be; empty where
    the location cannot be followed."""
    models, parts = [Rule], list(loc[:-1])
    while parts:
        part = parts.pop(0)
        fields = [f for m in models for name, f in m.model_fields.items()
                  if part in (name, f.alias)]
        if not fields:
            return []
        models, depth = _held(fields[0].annotation)
        tags, parts = parts[:depth], parts[depth:]
        if len(models) > 1 and tags:  # a detection: pydantic names its kind
            models = [m for m in models if get_args(m.model_fields["kind"].annotation)
                      == (tags[-1],)]
    return models


def _unknown_key(loc: tuple) -> str:
    """A key its section of a rule file does not have, with the nearest one it has."""
    key, models, every = str(loc[-1]), list(_Model.__subclasses__()), set()
    while models:
        model = models.pop()
        models += model.__subclasses__()
        every |= _keys(model)
    here = _keys(*_section(loc)) or every
    if key in every - here:
        return f"{key!r} does not belong here (another detection kind or section takes it)"
    close = difflib.get_close_matches(key, sorted(here), n=1)
    return f"unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close
                                     else f"; write one of {', '.join(sorted(here))}")


def _plainly(error: dict) -> str:
    """A pydantic error in a rule file's words, saying what to write."""
    kind, given, loc = error["type"], error.get("input"), _alias_path(error["loc"])
    if kind == "string_pattern_mismatch":
        return bad_id(given) if loc == ("id",) else "is empty: write an expression"
    if kind == "extra_forbidden" and loc:
        return _unknown_key(error["loc"])
    if kind == "missing":
        return f"missing: add it ({loc[-1]}: …)" if isinstance(loc[-1], str) else "missing"
    if kind == "union_tag_not_found":  # `detect:` without its kind
        kinds = [get_args(m.model_fields["kind"].annotation)[0]
                 for m in get_args(get_args(Detection)[0])]
        return f"missing: add it (kind: one of {', '.join(kinds)})"
    if kind == "union_tag_invalid":
        tags = re.findall(r"'(\w+)'", error["ctx"]["expected_tags"])
        close = difflib.get_close_matches(str(error["ctx"]["tag"]), tags, n=1)
        return (f"unknown kind {error['ctx']['tag']!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + f" (kinds: {', '.join(tags)})")
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "list_type":
        return (f"write a list, [{given}], not {given!r}" if isinstance(given, str | int)
                else "write a list: [a, b], or a line '- …' for each item")
    wanted = error["msg"].removeprefix("Input should be ")
    if wanted != error["msg"] and isinstance(given, str | int | float):
        return f"write {wanted}, not {given!r}"
    return error["msg"]


def _wide_colon(text: str, failed_on: int) -> int | None:
    """Where a key typed with a Chinese input method (``where：``) made YAML fail on line
    ``failed_on`` (0-based): the first full-width colon after a word at a line's start
    whose ASCII ': ' lets YAML read past that line (one in a description does not)."""
    for found in re.finditer(r"(?m)^[ \t-]*[^\s:：#'\"{}\[\]]+[ \t]*(：)", text):
        at = found.start(1)
        try:
            _compose(f"{text[:at]}: {text[at + 1:]}")
        except yaml.YAMLError as again:
            mark = getattr(again, "problem_mark", None)
            if mark is None or mark.line <= failed_on:
                continue
        return at
    return None


def read_yaml_file(text: str, file: str, loader: type[YamlLoader] = YamlLoader
                   ) -> tuple[yaml.Node | None, Any]:
    """``text``'s node tree and data (as ``read_plain_yaml``); what is not valid YAML
    is a RuleError naming ``file``, line and column, with a hint where one helps."""
    try:
        return _compose(text, loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        wide = _wide_colon(text, mark.line if mark else text.count("\n"))
        if wide is not None:
            line = text.count("\n", 0, wide) + 1
            column = wide - (text.rfind("\n", 0, wide) + 1) + 1
            raise RuleError("not valid YAML: full-width '：' after a key: write ASCII ':' "
                            "(switch the input method to half-width, 半角)", file, line,
                            column) from None
        problem = str(getattr(err, "problem", err))
        hints = [hint for words, hint in _YAML_HINTS if words in problem]
        if mark and text[mark.index:mark.index + 1] == "\t":
            hints = ["a tab: YAML indents with spaces only"]
        if hints:
            problem = f"{problem} ({hints[0]})"
        raise RuleError(
            f"not valid YAML: {problem}",
            file,
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        ) from None


def _empty_key(node: yaml.Node, path: tuple = ()) -> tuple | None:
    """The first key written with nothing after it (``where:`` left empty), outside the
    tests: YAML reads it as null, which would be the key left out (no ``where``: every
    row a hit). A test's rows and expectations may hold a null."""
    if not isinstance(node, yaml.MappingNode) or path[:1] == ("tests",):
        return None
    for key, value in node.value:
        if value.tag == "tag:yaml.org,2002:null":
            return (*path, key.value)
        found = _empty_key(value, (*path, key.value))
        if found:
            return found
    return None


def load_rule(path: Path) -> Rule:
    """Read one rule file; any problem is a RuleError naming file, line and column."""
    text = read_text(path)
    node, data = read_yaml_file(text, str(path))
    if not isinstance(data, dict):
        raise RuleError("a rule file must be a YAML mapping", str(path), 1, 1)
    positions = yaml_positions(node)
    empty = _empty_key(node)
    if empty:
        raise RuleError(f"{'.'.join(map(str, empty))}: is empty: write its value, or leave the "
                        "key out", str(path), *positions[empty])
    try:
        rule = Rule.model_validate(data)
    except ValidationError as err:
        # A misspelt key is also a missing one: name the key written, not the one missed.
        first = min(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        loc = _alias_path(first["loc"])
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):  # the kind's key
            loc += (first["ctx"]["discriminator"].strip("'"),)
        line, col = place(positions, *loc)
        field = ".".join(str(p) for p in loc) or "(top level)"
        raise RuleError(f"{field}: {_plainly(first)}", str(path), line, col) from None
    rule.path = str(path)
    rule.positions = positions
    rule.scalars = _scalars(node, text)
    rule.content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return rule
