"""From a rule's hits to rows of the contract's ``suspicions`` table.

Engines return the same raw columns (output fields, amount, ``ev__*`` evidence);
this one place gives every suspicion its stable id, its Chinese message and its
evidence JSON, so DuckDB and Spark runs produce identical rows. It loops over
suspicions (a few per thousand claims), never over claims.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from decimal import Decimal
from typing import Any

import polars as pl

from fraudscreen.contract import SUSPICIONS

SCHEMA = {c.name: c.type.polars for c in SUSPICIONS.columns}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# YAML folds a long message's line breaks into spaces; Chinese text wants none.
_FOLD = re.compile(r"\s+(?=[\u3000-\u9fff\uff00-\uffef])|(?<=[\u3000-\u9fff\uff00-\uffef])\s+")


_CJK = "[\u3000-\u9fff\uff00-\uffef]"
# Spaces and one line break: a blank line (``description: |``) is a paragraph's end.
_FOLD_BETWEEN = re.compile(rf"(?<={_CJK})[ \t]*(?:\n[ \t]*)?(?={_CJK})")


def unfold(text: str) -> str:
    """A rule's Chinese text as written across lines (``description: >``), without the
    spaces YAML put where two lines of Chinese met (`同一 ICD-10 类目` keeps its own),
    its paragraphs kept."""
    return _FOLD_BETWEEN.sub("", text.strip())


def text(value: Any) -> str:
    """How a figure reads in a message, a key and the evidence."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.microsecond:  # two times a fraction of a second apart must read apart
            return value.isoformat(" ", "microseconds").rstrip("0")
        return value.strftime("%Y-%m-%d %H:%M:%S" if value.second else "%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):  # exact; money-like: at least 2 places, no padding beyond
        places = max(2, -value.normalize().as_tuple().exponent)
        return format(value.quantize(Decimal(1).scaleb(-places)), "f")
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, (list, tuple)):
        return "、".join(text(v) for v in value)
    if isinstance(value, float) and math.isfinite(value):
        # A double (avg(), a quotient): to the fen at 1 and above, to four figures below
        # (a ratio), never in exponent form (3.087e+04); then as a decimal reads.
        places = 2 if abs(value) >= 1 or not value else 3 - math.floor(math.log10(abs(value)))
        return text(Decimal(f"{value:.{places}f}"))
    return str(value)


def suspicion_id(rule_id: str, version: str, key: list[Any]) -> str:
    """Stable: the same rule version and the same keys give the same id."""
    raw = "\x1f".join([rule_id, version] + [text(k) for k in key])
    return "S" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def _evidence(value: Any) -> Any:
    if isinstance(value, (dt.date, Decimal)):
        return text(value)
    if isinstance(value, (list, tuple)):
        return [_evidence(v) for v in value]
    return value


def _render(template: str, figures: dict) -> str:
    return _PLACEHOLDER.sub(lambda m: text(figures[m.group(1)]), template)


def finalize(rule, evidence_names: list[str], raw: pl.DataFrame) -> pl.DataFrame:
    """Contract-shaped suspicions for one rule's raw hits."""
    template = _FOLD.sub("", rule.emit.message.strip())
    rows = []
    for hit in raw.iter_rows(named=True):
        evidence = {n: hit[f"ev__{n}"] for n in evidence_names}
        figures = {**hit, **evidence}
        rows.append({
            "suspicion_id": suspicion_id(rule.id, rule.version,
                                         [figures[k] for k in rule.emit.key]),
            "rule_id": rule.id,
            "rule_version": rule.version,
            "family": rule.family,
            "severity": rule.severity,
            "institution_id": hit["institution_id"],
            "person_id": hit["person_id"],
            "settlement_id": hit["settlement_id"],
            "related_settlement_ids": sorted(hit["related_settlement_ids"] or []),
            "item_code": hit["item_code"],
            "period_start": hit["period_start"],
            "period_end": hit["period_end"],
            "amount_at_risk": hit["amount_at_risk"],
            "message": _render(template, figures),
            "evidence": json.dumps({k: _evidence(v) for k, v in evidence.items()},
                                   ensure_ascii=False, separators=(",", ":")),
        })
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    if frame["suspicion_id"].is_duplicated().any():
        raise rule.error(f"two hits share a key {rule.emit.key}; add the field that tells "
                         "them apart to emit.key", "emit", "key")
    return frame


def order(frame: pl.DataFrame) -> pl.DataFrame:
    """The one output order: by rule, then amount at risk (high first), then id."""
    return frame.sort(["family", "rule_id", "amount_at_risk", "suspicion_id"],
                      descending=[False, False, True, False])
