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
