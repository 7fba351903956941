"""report.html: one self-contained page an inspector opens offline.

Everything is inline — CSS, and charts as SVG drawn here — so the file needs no
network, no CDN and no script. The page holds the run summary (from the
manifest), amount at risk by family, the top institutions and persons, the
monthly trend, and a table per family with every suspicion's message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from fraudscreen import integrity
from fraudscreen.contract import INPUT_TABLES
from fraudscreen.leads import (
    SEVERITY_ZH,
    by_family,
    by_month,
    families,
    family_name,
    family_titles,
    month_expr,
    ordered,
    rule_titles,
)
from fraudscreen.privacy import shown_rule
from fraudscreen.quarantine import reason_zh
from fraudscreen.xlsx import display_width

TOP = 20
# Per-family detail tables stop here (highest amounts first) so that a very large
# run still gives a page a browser opens; leads.xlsx has every suspicion.
ROWS_PER_FAMILY = 5000
WIDTH = 960
FONT = '"Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif'
PALETTE = ("#2f6db5", "#d9822b", "#3a9a5b", "#c0392b", "#8e5fb5", "#16a5a5",
           "#7f8c8d", "#b8860b")
STATUS_ZH = {"ran": "已运行", "skipped": "已跳过", "failed": "失败"}
# What a skip counts (rules[].skipped_unit), as the page says it.
_UNIT_ZH = {"groups": "组", "distinct institution_id": "家机构", "distinct person_id": "名参保人",
            "distinct settlement_id": "笔结算", "distinct item_code": "个项目"}


def rule_note(rule: dict) -> tuple[str, str]:
    """A rule's reason in the report's words, and run.json's English (for scripts) when
    that differs: `1 家机构未判断：机构在进货记录中没有任何记录…` beside `1 not judged
    (distinct institution_id)`, `缺少 catalog 表，未运行` beside `needs table catalog
    (absent)`. A failure's message stays as the error said it."""
    reason = rule.get("reason") or ""
    if rule.get("status") == "ran" and rule.get("skipped"):
        unit = _UNIT_ZH.get(rule.get("skipped_unit") or "", f"（{rule.get('skipped_unit')}）")
        english, _, why = reason.partition("): ")
        return (f"{rule['skipped']} {unit}未判断" + (f"：{why}" if why else ""),
                f"{english})" if why else reason)
    if rule.get("status") == "skipped" and (tables := re.fullmatch(
            r"needs table (.+?)(?: \(absent\))?", reason)):
        return f"缺少 {tables.group(1)} 表，未运行", reason
    return reason, ""
PROFILE_ZH = {"full": "完整（full）", "investigator": "调查（investigator）",
              "public": "公开脱敏（public）"}
# The total is known only once the report is written: shown in run.json, not here, so
# that `fraudscreen report` regenerates the same page.
TIMING_ZH = {"ingest": "读取数据", "rules": "运行规则"}


def yuan(amount: Any) -> str:
    return f"¥{Decimal(amount or 0):,.2f}"


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal | int
    shown: str
    color: str = PALETTE[0]


def _text(x: float, y: float, body: str, anchor: str = "start", size: int = 13,
          fill: str = "#222", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'fill="{fill}"{extra}>{escape(body)}</text>')


def _clip(label: str, width: int) -> str:
    """Shorten a label to ``width`` display columns."""
    if display_width(label) <= width:
        return label
    out = ""
    for ch in label:
        if display_width(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def hbar_svg(bars: Sequence[Bar], title: str) -> Markup:
    """A horizontal bar chart, one row per bar, value printed after the bar."""
    row, pad = 26, 6
    label_cols = min(36, max(display_width(b.label) for b in bars))
    label_w = int(label_cols * 7.6) + 16
    value_w = max(display_width(b.shown) for b in bars) * 7 + 16
    plot_w = WIDTH - label_w - value_w
    top = max(float(b.value) for b in bars) or 1.0
    height = pad * 2 + row * len(bars)
    parts = [(f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
             f'height="{height}" role="img" aria-label="{escape(title)}" '
             f'font-family=\'{FONT}\'><title>{escape(title)}</title>')]
    for i, b in enumerate(bars):
        y = pad + i * row
        w = plot_w * float(b.value) / top
        w = max(w, 2.0) if b.value else 0.0
        parts.append('<g class="bar">')
        parts.append(_text(label_w - 8, y + 17, _clip(b.label, label_cols), "end"))
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
                     f'rx="2" fill="{b.color}"><title>{escape(b.label)}：{escape(b.shown)}'
                     '</title></rect>')
        parts.append(_text(label_w + w + 6, y + 17, b.shown, fill="#444"))
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice_step(top: float, ticks: int = 4) -> float:
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def vbar_svg(bars: Sequence[Bar], title: str, unit: str) -> Markup:
    """A vertical bar chart over time (one bar per month), with a y axis."""
    height, left, right, top_pad, bottom = 280, 56, 16, 24, 56
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    top = max(float(b.value) for b in bars) or 1.0
    step = max(1.0, _nice_step(top))  # counts: whole-number ticks
    axis_top = step * math.ceil(top / step)
    slot = plot_w / len(bars)
    bar_w = min(48.0, max(2.0, slot * 0.7))
    every = max(1, math.ceil(len(bars) / 12))
    parts = [(f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
             f'height="{height}" role="img" aria-label="{escape(title)}" '
             f'font-family=\'{FONT}\'><title>{escape(title)}</title>')]
    tick = 0.0
    while tick <= axis_top + 1e-9:
        y = top_pad + plot_h * (1 - tick / axis_top)
        parts.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#e3e3e3"/>')
        label = f"{tick:g}" if tick < 1e6 else f"{tick:.3g}"
        parts.append(_text(left - 6, y + 4, label, "end", 11, "#666"))
        tick += step
    parts.append(_text(left - 6, top_pad - 10, unit, "end", 11, "#666"))
    parts.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{top_pad + plot_h}" '
                 f'y2="{top_pad + plot_h}" stroke="#999"/>')
    for i, b in enumerate(bars):
        h = plot_h * float(b.value) / axis_top
        x = left + i * slot + (slot - bar_w) / 2
        y = top_pad + plot_h - h
        parts.append('<g class="bar">')
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                     f'fill="{b.color}"><title>{escape(b.label)}：{escape(b.shown)}</title>'
                     '</rect>')
        if len(bars) <= 24 and b.value:
            parts.append(_text(x + bar_w / 2, y - 4, str(b.value), "middle", 11, "#444"))
        if i % every == 0:
            cx, cy = x + bar_w / 2, top_pad + plot_h + 16
            rotate = f' transform="rotate(-35 {cx:.1f} {cy:.1f})"' if len(bars) > 8 else ""
            parts.append(_text(cx, cy, b.label, "end" if rotate else "middle", 11, "#444",
                               rotate))
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _summary(manifest: dict, suspicions: pl.DataFrame, profile: str) -> dict:
    rules = [shown_rule(r, profile) for r in manifest.get("rules") or []]
    titles = family_titles(manifest)
    counts = {s: sum(1 for r in rules if r.get("status") == s) for s in STATUS_ZH}
    window = manifest.get("window") or {}
    quarantine = manifest.get("quarantine") or []
    timings = manifest.get("timings_seconds") or {}
    inputs = manifest.get("inputs") or []
    read = {k: int(v) for k, v in (manifest.get("rows_read") or {}).items()}
    kept = {k: int(v) for k, v in (manifest.get("rows_kept") or {}).items()}
    names = list(dict.fromkeys([*read, *kept, *(f.get("table") for f in inputs)]))
    tables = [{"table": t, "zh": INPUT_TABLES[t].zh if t in INPUT_TABLES else "",
               "files": [str(f.get("path", "")) for f in inputs if f.get("table") == t],
               "read": read.get(t), "kept": kept.get(t)} for t in names]
    tool = f"{manifest.get('tool', 'fraudscreen')} {manifest.get('version', '')}".strip()
    started = str(manifest.get("started", "")).replace("T", " ")
    return {
        "tool": tool, "started": started, "profile_zh": PROFILE_ZH.get(profile, profile),
        "facts": [
            ("工具版本", tool),
            ("开始时间", started),
            ("数据目录", str(manifest.get("data", ""))),
            ("计算引擎", str(manifest.get("engine", ""))),
            ("分析期间", f"{window.get('start') or '—'} 至 {window.get('end') or '—'}"
                        + ("（指定）" if window.get("given") else "（按数据）")),
            ("读取行数", f"{sum(read.values()):,}"),
            ("保留行数", f"{sum(kept.values()):,}"),
            # Read minus kept: a row with two reasons is one row.
            ("隔离行数", f"{sum(read.values()) - sum(kept.values()):,}"),
            ("规则", (f"运行 {counts['ran']} 条，跳过 {counts['skipped']} 条，"
                     f"失败 {counts['failed']} 条")),
            ("用时", "，".join(f"{TIMING_ZH[k]} {v} 秒" for k, v in timings.items()
                             if k in TIMING_ZH) or "—"),
            ("脱敏级别", PROFILE_ZH.get(profile, profile)),
        ],
        "incomplete": _incomplete(manifest.get("status") or {}),
        "tables": tables,
        "missing": manifest.get("missing_optional_tables") or [],
        # run.json names them ingestion_notes, a night's notes
        "notes": manifest.get("ingestion_notes") or manifest.get("notes") or [],
        # What the console warns of (a line whose settlement is missing, a gender not
        # coded 1/2, …): each can change what the rules find, so the page says it too.
        "warnings": integrity.warnings(manifest.get("integrity") or {}),
        # Counted by the English reason (run.json); shown in Chinese, the English beside.
        "quarantine": [{**q, "reason_zh": reason_zh(q.get("reason")),
                        "table_zh": INPUT_TABLES[q["table"]].zh
                        if q.get("table") in INPUT_TABLES else ""} for q in quarantine],
        "rules": [{**r, "family_zh": family_name(r.get("family"), titles),
                   "status_zh": STATUS_ZH.get(r.get("status"), r.get("status")),
                   "note": rule_note(r),
                   "amount_shown": yuan(r.get("amount_at_risk") or 0)} for r in rules],
        "suspicions": suspicions.height,
        "amount": yuan(suspicions.get_column("amount_at_risk").sum()
                       if suspicions.height else 0),
    }


def _incomplete(status: dict) -> str:
    """Why this is not a complete screening ('' when it is)."""
    why = [f"规则 {r} 失败" for r in status.get("failed_rules") or []]
    if status.get("strict_quarantine"):
        why.append("--strict 下有隔离行")
    return f"运行不完整：{'；'.join(why)}（退出码 1）" if why else ""


def _lead_rows(frame: pl.DataFrame) -> list[dict]:
    return [{**r, "amount_shown": yuan(r["amount_at_risk"]),
             "families_shown": "、".join(r["families"]),
             "severity_zh": SEVERITY_ZH.get(r["max_severity"], r["max_severity"])}
            for r in frame.head(TOP).drop("suspicion_ids", "top_messages").iter_rows(
                named=True)]


def context(suspicions: pl.DataFrame, lead_table: pl.DataFrame, manifest: dict,
            profile: str) -> dict:
    titles = family_titles(manifest)
    named = rule_titles(manifest)
    fams = families(suspicions, titles)
    color = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(fams)}
    fam_rows = [{**r, "amount_shown": yuan(r["amount_at_risk"])}
                for r in by_family(suspicions, titles).iter_rows(named=True)]
    institutions, persons = (lead_table.filter(pl.col("lead_type") == t).drop("lead_type")
                             for t in ("institution", "person"))
    months = by_month(suspicions)
    charts = {}
    if suspicions.height:
        charts["family"] = hbar_svg(
            [Bar(r["family_zh"], r["amount_at_risk"], r["amount_shown"], color[r["family"]])
             for r in fam_rows], "各类别涉嫌金额")
        if institutions.height:
            charts["institutions"] = hbar_svg(
                [Bar(r["lead_name"] or r["lead_id"], r["amount_at_risk"],
                     yuan(r["amount_at_risk"]))
                 for r in institutions.head(TOP).iter_rows(named=True)],
                f"涉嫌金额前{TOP}的定点医药机构")
        charts["months"] = vbar_svg(
            [Bar(r["month"], r["suspicions"],
                 f"{r['suspicions']} 条，{yuan(r['amount_at_risk'])}", PALETTE[0])
             for r in months.iter_rows(named=True)], "疑点月度趋势", "疑点数")
    detail = ordered(suspicions).with_columns(month=month_expr())
    # Suspicions neither roll-up holds (a site rule's hits with no institution and no
    # person; lint warns of such rules, FS008): said, never silently left out.
    unled = suspicions.filter(pl.col("institution_id").is_null()
                              & pl.col("person_id").is_null())
    sections = []
    for f, zh in fams.items():
        rows = detail.filter(pl.col("family") == f)
        sections.append({
            "family": f, "zh": zh, "color": color[f], "count": rows.height,
            "amount": yuan(rows.get_column("amount_at_risk").sum() if rows.height else 0),
            "hidden": max(0, rows.height - ROWS_PER_FAMILY),
            "rows": [{**r, "amount_shown": yuan(r["amount_at_risk"]),
                      "rule_title": named.get(r["rule_id"], ""),
                      "severity_zh": SEVERITY_ZH.get(r["severity"], r["severity"]),
                      "month_shown": r["month"].strftime("%Y-%m") if r["month"] else ""}
                     for r in rows.head(ROWS_PER_FAMILY).select(
                         "suspicion_id", "rule_id", "severity", "institution_id", "person_id",
                         "month", "amount_at_risk", "message").iter_rows(named=True)],
        })
    return {
        "font": FONT, "top": TOP, "profile": profile,
        "summary": _summary(manifest, suspicions, profile),
        "families": fam_rows, "charts": charts,
        "institutions": _lead_rows(institutions), "institution_count": institutions.height,
        "persons": _lead_rows(persons), "person_count": persons.height,
        "months": [{**r, "amount_shown": yuan(r["amount_at_risk"])}
                   for r in months.iter_rows(named=True)],
        "sections": sections,
        "unled": {"count": unled.height,
                  "amount": yuan(unled.get_column("amount_at_risk").sum() if unled.height
                                 else 0)},
    }


def render(suspicions: pl.DataFrame, lead_table: pl.DataFrame, manifest: dict,
           profile: str) -> str:
    """The page; ``lead_table`` is :func:`fraudscreen.leads.leads` of the same suspicions
    (made once for leads.csv, leads.xlsx and this page)."""
    env = Environment(loader=PackageLoader("fraudscreen", "templates"),
                      autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    page = context(suspicions, lead_table, manifest, profile)
    return env.get_template("report.html.j2").render(**page)
