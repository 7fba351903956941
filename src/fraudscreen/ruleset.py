"""A RuleSet: the built-in rules plus the analyst's, selected and parameterised.

Per-run parameter overrides come from ``--param RULE_ID.NAME=VALUE`` and from a
site params YAML (``{RULE_ID: {NAME: VALUE}}``); the command line wins.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fraudscreen.contract import FAMILIES
from fraudscreen.resources import shipped, yaml_files
from fraudscreen.rule import (
    ParamLoader,
    Rule,
    RuleError,
    load_rule,
    place,
    read_text,
    read_yaml_file,
    yaml_positions,
)


def _tell_apart(rules: list[Rule], titles: dict[str, str]) -> None:
    """Refuse two families the leads and the report would show by the same name."""
    first = {}
    for rule in rules:
        first.setdefault(rule.family, rule)
    shown = {**{f: f for f in first}, **FAMILIES, **titles}
    by_name: dict[str, list[str]] = {}
    for family, name in sorted(shown.items()):
        by_name.setdefault(name, []).append(family)
    for name, families in sorted(by_name.items()):
        site = [f for f in families if f not in FAMILIES]
        if len(families) > 1 and site:
            culprit = sorted(site, key=lambda f: (f not in titles, f))[0]
            other = next(f for f in families if f != culprit)
            raise first[culprit].error(
                f"family {culprit} would be shown as {name!r}, as family {other} is: give "
                "it a family_title of its own", "family_title" if culprit in titles
                else "family")


def read_from(rules: list[Rule], paths: list[Path]) -> list[Rule]:
    """The rules loaded from these files or folders."""
    roots = [p.resolve() for p in paths]
    return [r for r in rules if r.path and any(
        root == Path(r.path).resolve() or root in Path(r.path).resolve().parents
        for root in roots)]


def derived(rule: Rule, new_id: str) -> str:
    """The text of ``rule``'s file under a new id and family (the part before the dot),
    as an experimental version 1: where an analyst starts a rule from one that works.
    Everything else is kept, tests included; a built-in family's title is dropped (the
    new family names itself, or lint reminds the analyst to)."""
    family = new_id.partition(".")[0]
    edits: dict[int, str | None] = {}
    value_ends: dict[int, int] = {}  # a replaced line's comment stays
    for key, value in {"id": new_id, "family": family, "version": '"1"',
                       "status": "experimental"}.items():
        if (key,) in rule.positions:
            line, scalar = rule.positions[(key,)][0], rule.scalars[(key,)]
            if scalar.line != line or "\n" in scalar.source:
                raise rule.error(f"{key}: its value is not on the key's line; write "
                                 f"`{key}: value` on one line, or copy the file by hand", key)
            edits[line] = f"{key}: {value}"
            value_ends[line] = scalar.col - 1 + len(scalar.source)
    if ("family_title",) in rule.positions and family != rule.family:
        edits[rule.positions[("family_title",)][0]] = None
    out: list[str] = []
    lines = Path(str(rule.path)).read_text(encoding="utf-8-sig").splitlines()
    for number, text in enumerate(lines, 1):
        kept = edits.get(number, text)
        comment = text[value_ends.get(number, len(text)):]
        if kept is not None:
            out.append(kept + comment if comment.strip().startswith("#") else kept)
        if number == rule.positions[("version",)][0] and ("status",) not in rule.positions:
            out.append("status: experimental")
    return "\n".join(out) + "\n"


def rule_files(path: Path) -> list[Path]:
    """The file itself, or every YAML file under a folder (``yaml_files``) but the
    shipped rules' reference data. A folder without one is an error: `run` would screen
    without the analyst's rules, and `rules test` pass having tested nothing."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise RuleError(f"no such rule file or folder: {path}")
    reference = (shipped("rules") / "reference").resolve()
    files = [p for p in yaml_files(path) if reference not in p.resolve().parents]
    if not files:
        raise RuleError(f"no rule files (*.yaml or *.yml) in the folder {path}")
    return files


@dataclass
class RuleSet:
    rules: list[Rule]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Each new family's Chinese name, from every rule loaded (kept by --only: a rule
    # selected without its family's title still shows it).
    titles: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, extra: list[Path] | None = None, builtin: bool = True) -> RuleSet:
        paths = (rule_files(shipped("rules")) if builtin else [])
        for p in extra or []:
            paths += rule_files(p)
        # A file named twice (a built-in rule given by its path, say) is one rule.
        paths = list({p.resolve(): p for p in reversed(paths)}.values())[::-1]
        rules: list[Rule] = []
        seen: dict[str, Rule] = {}
        titled: dict[str, Rule] = {}  # a new family -> the first rule naming it
        for path in paths:
            rule = load_rule(path)
            if rule.id in seen:
                raise rule.error(f"duplicate rule id (also in {seen[rule.id].path})", "id")
            seen[rule.id] = rule
            rules.append(rule)
            if rule.family_title and rule.family in FAMILIES:
                raise rule.error(f"{rule.family} is a built-in family, named "
                                 f"{FAMILIES[rule.family]}: family_title is for a new "
                                 "family", "family_title")
            first = titled.setdefault(rule.family, rule) if rule.family_title else None
            if first is not None and first.family_title != rule.family_title:
                raise rule.error(f"family {rule.family} is titled {first.family_title!r} in "
                                 f"{first.path}: one family, one title", "family_title")
        titles = {f: r.family_title for f, r in titled.items()}
        _tell_apart(rules, titles)
        for rule in rules:  # a rule of a titled family shows the family's title
            rule.family_title = titles.get(rule.family)
        return cls(sorted(rules, key=lambda r: r.id), titles=titles)

    def family_titles(self) -> dict[str, str]:
        """Each new family's Chinese name (``family_title``), as reports show it."""
        return {**{r.family: r.family_title for r in self.rules if r.family_title},
                **self.titles}

    def select(self, only: list[str] | None) -> RuleSet:
        """Keep rules whose id or family is named (``--only a --only b`` or ``--only a,b``);
        unknown names are an error."""
        if not only:
            return self
        only = [name.strip() for given in only for name in given.split(",") if name.strip()]
        if not only:  # --only "$FAMILIES" with the variable empty: not every rule, nor none
            raise RuleError("--only names nothing: give a family or rule id")
        known = {r.id for r in self.rules} | {r.family for r in self.rules}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise RuleError(f"--only names no rule or family: {', '.join(unknown)}"
                            f" (families: {', '.join(sorted({r.family for r in self.rules}))})")
        kept = [r for r in self.rules if r.id in only or r.family in only]
        ids = {r.id for r in kept}  # the others' overrides are checked and unused
        return RuleSet(kept, {k: v for k, v in self.overrides.items() if k in ids},
                       self.titles)

    def get(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        close = difflib.get_close_matches(rule_id, [r.id for r in self.rules], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RuleError(f"no rule {rule_id!r}{hint}")

    def with_params(self, cli: list[str], site_file: Path | None) -> RuleSet:
        """Attach overrides from a site params YAML and ``RULE_ID.NAME=VALUE`` pairs; a
        value that is not the parameter's type, or is outside its bounds, is an error
        naming the parameter, and the file, line and column it was given at."""
        overrides: dict[str, dict[str, Any]] = {}
        given: dict[tuple[str, str], tuple] = {}  # where each value was given
        if site_file:
            file = str(site_file)
            try:
                node, doc = read_yaml_file(read_text(site_file, "params file"), file,
                                           ParamLoader)
            except RuleError as err:
                raise RuleError(f"params file: {err.message}", file, err.line,
                                err.col) from None
            doc = doc or {}
            if not isinstance(doc, dict) or not all(
                    isinstance(v, dict | None) for v in doc.values()):
                raise RuleError("params file must map RULE_ID to {NAME: VALUE}", file)
            places = yaml_positions(node) if node is not None else {}
            for rule_id, values in doc.items():
                overrides.setdefault(rule_id, {})
                given[rule_id] = (file, *place(places, rule_id))
                for name, value in (values or {}).items():
                    overrides[rule_id][name] = value
                    given[rule_id, name] = (file, *place(places, rule_id, name))
        for item in cli:
            target, sep, value = item.partition("=")
            rule_id, dot, name = target.rpartition(".")
            if not sep or not dot:
                raise RuleError(f"--param {item!r}: write RULE_ID.NAME=VALUE")
            try:
                overrides.setdefault(rule_id, {})[name] = yaml.load(value, Loader=ParamLoader)
            except (yaml.YAMLError, ValueError):
                raise RuleError(f"--param {item!r}: cannot read the value; quote text "
                                "that holds quotes or colons") from None
            given[rule_id] = given[rule_id, name] = ()
        for rule_id, values in overrides.items():
            try:
                rule = self.get(rule_id)
            except RuleError as err:
                raise RuleError(err.message, *given[rule_id]) from None
            for name, value in values.items():
                where = given[rule_id, name]
                if name not in rule.params:
                    close = difflib.get_close_matches(name, list(rule.params), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise RuleError(f"rule {rule_id} has no parameter {name!r}{hint}", *where)
                try:
                    rule.params[name].coerce(value)
                except ValueError as err:
                    raise RuleError(f"parameter {rule_id}.{name}: {err}", *where) from None
        return RuleSet(self.rules, overrides, self.titles)
