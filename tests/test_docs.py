"""Generated docs stay in step with the code: regenerate with `fraudscreen rules docs`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fraudscreen.contract import markdown
from fraudscreen.lint import lint
from fraudscreen.quarantine import REASON_ZH
from fraudscreen.rule import Rule, load_rule
from fraudscreen.rule_docs import render
from fraudscreen.ruleset import RuleSet

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_rule_pages_are_current():
    stale = [name for name, text in render(RuleSet.load().rules).items()
             if not (DOCS / "rules" / name).exists()
             or (DOCS / "rules" / name).read_text(encoding="utf-8") != text]
    assert stale == [], f"stale docs/rules pages {stale}: run `fraudscreen rules docs`"


def test_contract_page_is_current():
    assert (DOCS / "data-contract.md").read_text(encoding="utf-8") == markdown(), (
        "docs/data-contract.md is stale: run `fraudscreen rules docs`")


def test_the_quarantine_reasons_are_documented_with_their_chinese_text():
    """docs/ingestion.md lists every reason beside the Chinese text the outputs show."""
    page = (DOCS / "ingestion.md").read_text(encoding="utf-8")
    assert [en for en, zh in REASON_ZH.items() if f"`{en}`" not in page or zh not in page] == []


def _shape(schema: dict) -> dict:
    """What a rule file may contain: each definition's fields and required fields.

    (Compared instead of the whole document, whose wording varies by pydantic version.)
    """
    defs = {"Rule": schema, **schema.get("$defs", {})}
    return {name: (sorted(d.get("properties", {})), sorted(d.get("required", [])))
            for name, d in defs.items()}


def test_rule_schema_is_current():
    committed = json.loads((DOCS / "rule.schema.json").read_text(encoding="utf-8"))
    assert _shape(committed) == _shape(Rule.model_json_schema(by_alias=True)), (
        "docs/rule.schema.json is stale: run `fraudscreen rules schema`")


def test_every_rule_page_names_its_legal_basis_and_an_example():
    pages = render(RuleSet.load().rules)
    for name, text in pages.items():
        if name == "README.md":
            continue
        basis = text.split("## Legal basis and sources")[1].split("##")[0]
        assert basis.strip().startswith("- "), name
        assert "## Example hit" in text, name


def test_rule_schema_offers_only_what_a_rule_file_holds():
    """Found in an analyst's review: editors offered path, positions and content_hash
    (set by the loader) as completions, and a test could not expect period_end."""
    schema = Rule.model_json_schema(by_alias=True)
    assert not {"path", "positions", "content_hash"} & set(schema["properties"])
    assert {"period_start", "period_end"} <= set(schema["$defs"]["Expected"]["properties"])


# What a rule example in rule-format.md leaves to "the rest (above)".
_HEAD = {"id": "site_a.doc_example", "version": '"1"', "family": "site_a", "title": "例",
         "description": "例", "severity": "low"}


def _rule_examples() -> list[str]:
    """rule-format.md's YAML examples that hold a detection and its emit, whole (not the
    outline with …)."""
    text = (DOCS / "rule-format.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return [b for b in blocks if re.search(r"^detect:", b, re.M)
            and re.search(r"^emit:", b, re.M) and "…" not in b]


@pytest.mark.parametrize("example", _rule_examples())
def test_the_rule_format_examples_load_and_compile(tmp_path, example):
    """Found in review: both query examples lacked emit.message and failed as written."""
    head = "".join(f"{k}: {v}\n" for k, v in _HEAD.items()
                   if not re.search(rf"^{k}:", example, re.M))
    path = tmp_path / "example.yaml"
    path.write_text(head + example, encoding="utf-8")
    errors = [str(f) for f in lint(load_rule(path)) if f.severity == "error"
              and f.code != "FS002"]  # an example leaves its tests out
    assert errors == []


def test_the_rule_format_has_rule_examples():
    assert len(_rule_examples()) >= 2


# --- the commands the documentation shows ---------------------------------------------

ROOT = DOCS.parent
_PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "drug_watchlists" / "README.md",
          ROOT / "sample_claims" / "README.md", ROOT / "rules" / "reference" / "README.md"]


def _top_level(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets: `test [RULE | FILE …] | docs` is two."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
    return [*parts, text[start:]]


def _doc_commands() -> list[tuple[str, list[str]]]:
    """Every `fraudscreen …` command in the pages' code blocks, as (page:line, words after
    `fraudscreen`); a synopsis's alternatives (`rules list | show RULE`) each whole."""
    found = []
    for page in _PAGES:
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S):
            first = text.count("\n", 0, block.start(1)) + 1
            logical: list[tuple[int, str]] = []  # (first line, text), continuations joined
            for n, line in enumerate(block.group(1).split("\n")):
                line = re.sub(r"\s#\s.*$", "", line)  # a comment
                if logical and logical[-1][1].endswith("\\"):
                    logical[-1] = (logical[-1][0], logical[-1][1][:-1] + " " + line)
                else:
                    logical.append((n, line))
            for n, line in logical:
                for m in re.finditer(r"(?:^|[\s;{(])(?:\S*/)?fraudscreen\s+([^;&}>]*)", line):
                    group: list[str] = []
                    for alt in _top_level(m.group(1).strip(), " | "):
                        words = [w for w in alt.split() if w]
                        if group and words and words[0] not in _command([])[0].commands:
                            words = [*group, *words]  # `rules list | show RULE`
                        group = words[:1]
                        found.append((f"{page.relative_to(ROOT)}:{first + n}", words))
    return found


def _command(words: list[str]):
    """The click command the words name, and the words after its name."""
    import typer.main

    from fraudscreen.cli import app

    command = typer.main.get_command(app)
    while words and hasattr(command, "commands") and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


def test_the_documentation_shows_commands():
    places = {place.split(":")[0] for place, _ in _doc_commands()}
    assert {"README.md", "docs/nightly.md", "docs/rule-format.md"} <= places


@pytest.mark.parametrize("place, words", _doc_commands(), ids=lambda v: v if isinstance(v, str)
                         else None)
def test_every_option_a_documented_command_shows_is_one_it_takes(place, words):
    command, rest = _command(words)
    if hasattr(command, "commands"):  # `fraudscreen COMMAND --help`: a placeholder
        assert rest and rest[0].isupper(), f"{place}: no command {rest[:1]}"
        return
    taken = {o for p in command.params for o in [*p.opts, *p.secondary_opts]} | {"--help"}
    given = [w.split("=")[0] for w in rest if w.startswith("--")]
    assert [o for o in given if o not in taken] == [], f"{place}: fraudscreen {' '.join(words)}"


@pytest.mark.parametrize("place, words", [(p, w) for p, w in _doc_commands() if "--param" in w])
def test_every_documented_parameter_is_one_the_command_runs(place, words):
    """Found following the README: `--only bed_holding --param
    split_hospitalisation.readmission.max_gap_days=10` set a rule --only left out."""
    rules = RuleSet.load()
    only = [n for i, w in enumerate(words[:-1]) if w == "--only"
            for n in words[i + 1].split(",")]
    for i, w in enumerate(words[:-1]):
        if w != "--param" or words[i + 1][:1].isupper():  # RULE_ID.NAME=VALUE
            continue
        target, _, value = words[i + 1].partition("=")
        rule_id, _, name = target.rpartition(".")
        rule = rules.get(rule_id)
        assert name in rule.params, f"{place}: {rule_id} has no parameter {name}"
        rule.params[name].coerce(value)
        assert not only or rule.id in only or rule.family in only, (
            f"{place}: --param {target} names a rule --only {','.join(only)} leaves out")


def _leaf_commands(command=None, path=()):
    if command is None:
        command = _command([])[0]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _leaf_commands(sub, (*path, name))
    else:
        yield path, command


@pytest.mark.parametrize("path, command", list(_leaf_commands()), ids=lambda v: " ".join(v)
                         if isinstance(v, tuple) else None)
def test_every_option_says_what_it_takes_in_a_user_s_words(path, command):
    """Found reading every --help: `--param <list[str]>`, `--threads <int range>`,
    `--institution <str>` with no help at all. An option names what to write (PATH,
    RULE_ID.NAME=VALUE, YYYY-MM-DD), never a Python type, and says what it is for."""
    from typer.testing import CliRunner

    from fraudscreen.cli import app

    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    options = result.output.split("Options:")[1]
    assert re.findall(r"^\s+--\S+(?: / --\S+)? (<[^>]*>)", options, re.M) == [], path
    silent = [p.opts[0] for p in command.params
              if p.param_type_name == "option" and not p.help]
    assert silent == [], f"fraudscreen {' '.join(path)}: options without help {silent}"


def test_the_nightly_page_lists_every_option_a_night_shares_with_run():
    """It left out --rule-timeout: a reader could not tell a night takes it."""
    text = (DOCS / "nightly.md").read_text(encoding="utf-8")
    listed = text.split("Every option of `run` that shapes the screening is accepted")[1]
    listed = set(re.findall(r"`(--[a-z-]+)`", listed.split(";")[0]))

    def opts(name):
        return {o for p in _command([name])[0].params for o in p.opts}

    assert listed == (opts("run") & opts("nightly")) - {"--out"}


def test_a_documented_crontab_line_names_fraudscreen_by_its_full_path():
    """cron's PATH is /usr/bin:/bin: a bare `fraudscreen` is `command not found`."""
    for page in _PAGES:
        for line in page.read_text(encoding="utf-8").splitlines():
            if re.match(r"^([\d*/,-]+\s+){5}.*\bfraudscreen\s", line):  # a schedule, then
                assert re.search(r"\s/\S*/fraudscreen\s", line), f"{page.name}: {line}"


def test_a_rule_page_reads_as_its_author_wrote_it(tmp_path):
    """Found writing a site rule: its page showed `（41） 至少4次` where the folded
    `description: >` met a line break, and a list default as Python's `['11', '14']`,
    which is not how --param takes it."""
    from fraudscreen.rule_docs import page

    text = page(RuleSet.load().get("pharmacy_card_skimming.hoarding"))
    assert "在定点药店（41）至少4次结算中购买同一项目" in text
    text = page(RuleSet.load().get("split_hospitalisation.readmission"))
    assert "`Z51,Z49,O80,O81,O82,O83,O84`" in text and "['Z51'" not in text
    assert "同一 ICD-10 类目" in text  # the spaces the author wrote stay


def test_a_rule_page_keeps_the_paragraphs_of_a_description():
    """Found in review: unfolding the lines YAML folds also ran a site rule's two
    paragraphs (`description: |`, a blank line between them) into one."""
    from fraudscreen.rule_docs import page

    rule = RuleSet.load().get("pharmacy_card_skimming.hoarding")
    rule = rule.model_copy(update={"description": "第一段，写在\n两行。\n\n第二段。\n"})
    assert "第一段，写在两行。\n\n第二段。" in page(rule)


@pytest.mark.parametrize("rule", [r for r in RuleSet.load().rules if r.params],
                         ids=lambda r: r.id)
def test_a_rule_page_s_parameter_example_is_its_default_as_param_takes_it(rule):
    from fraudscreen.rule_docs import page

    example = re.search(r"e\.g\. `--param ([^`]+)`", page(rule)).group(1)
    target, _, value = example.partition("=")
    rule_id, _, name = target.rpartition(".")
    assert rule_id == rule.id
    RuleSet.load().with_params([example], None)  # refused unless the parameter takes it
    param = rule.params[name]
    assert param.coerce(value) == param.coerce(param.default)
