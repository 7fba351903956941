"""The relations a rule may read: the contract's tables, cleaned, and shared prep.

Rules never see raw input. ``settlements`` and ``fee_lines`` here are the
*effective* ones: a reversal row (冲销) and the settlement it names are gone, so no
rule can flag them. The derived views (stays, stay days, item days, purchases per
settlement item, watch-listed lines) are the intermediates several rules share;
they are defined once here, created once per run, and their columns are what the
rule validator checks names against.

Views are written in DuckDB SQL over ``input_<table>`` relations and transpiled by
sqlglot for other engines. ``:window_start`` / ``:window_end`` are the analysis
window; rows outside it are dropped only when the run names one (``--from/--to``,
``:filter_window``), so a default run loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fraudscreen.contract import INPUT_TABLES

# The settlements named by reversal rows that were quarantined (one column,
# reversed_settlement_id): reversed all the same. Engines register it beside the inputs
# (empty when there are none); no rule can name it.
QUARANTINED_REVERSALS = "input_quarantined_reversals"


@dataclass(frozen=True)
class Attached:
    """Columns a source joins from another relation by key: a fee line's person,
    institution and dates are its settlement's.

    A rule that filters its rows, or groups them by the key, without reading these
    columns can work on ``rows`` (the source before the join) and join them to its few
    hits instead of to every row: 20 M fee lines grouped on four keys, not six. The inner
    join also drops what ``rows`` holds beyond the source (lines of reversed
    settlements), so the answer is the same.
    """

    rows: str  # an internal source: the source's own rows, before the join
    key: str
    relation: str
    columns: tuple[str, ...]

    def join(self, rows: str, columns: tuple[str, ...] | list[str]) -> str:
        """``rows`` (a relation with the key) with attached ``columns`` joined on."""
        picked = "".join(f', a."{c}"' for c in columns)
        return (f'SELECT g.*{picked} FROM {rows} AS g JOIN "{self.relation}" AS a'
                f' ON g."{self.key}" = a."{self.key}"')


@dataclass(frozen=True)
class Source:
    name: str
    key: tuple[str, ...]
    needs: tuple[str, ...]  # input tables that must be present for a rule to use it
    sql: str | None = None  # None: the input table as it is
    doc: str = ""
    # Computed once per run and kept (most rules read it), rather than a view that
    # every rule would recompute.
    materialize: bool = False
    attached: Attached | None = None
    # Read by compiled rules only, never named in a rule (it holds rows no rule may see).
    internal: bool = False
    # The same rows without the --from/--to window. A kind that judges a row by the rows
    # around it reads those from here (a sequence its earlier rows, a window the members
    # of a run, a correlate the other side) and flags only rows of this source: without
    # it, a window cut off the stay before a readmission, or the purchases before a
    # hoarding run, and a site screening month by month never saw one across a month's end.
    context: str | None = None


# item_days and settlement_items name their item as a rule names the item of a group of
# lines: by the least of the names the lines were billed under (docs/rule-format.md,
# "Naming an item"), one more aggregate in the grouping there is anyway.
_ITEM_DAYS = """
    SELECT f.settlement_id, f.item_code, f.charge_date, f.person_id, f.institution_id,
           sum(f.quantity) AS quantity, sum(f.amount) AS amount, count(*) AS line_count,
           min(f.item_name) AS item_name
    FROM fee_lines AS f {where}
    GROUP BY f.settlement_id, f.item_code, f.charge_date, f.person_id, f.institution_id
"""


_SETTLEMENT_ITEMS = """
    SELECT f.settlement_id, f.item_code, f.person_id, f.institution_id, f.medical_type,
           f.admit_time, f.admit_date,
           sum(f.quantity) AS quantity, sum(f.amount) AS amount,
           count(*) AS line_count, min(f.item_name) AS item_name
    FROM {fee_lines} AS f
    GROUP BY f.settlement_id, f.item_code, f.person_id, f.institution_id,
             f.medical_type, f.admit_time, f.admit_date
"""

_WATCHED = """
    WITH billed AS (
        SELECT DISTINCT item_code, item_name FROM {fee_lines}
    ), hits AS (
        SELECT DISTINCT b.item_code
        FROM billed AS b
        LEFT JOIN input_catalog AS c ON c.item_code = b.item_code
        JOIN input_watchlist AS w ON
             (w.item_code IS NOT NULL AND NOT ends_with(w.item_code, '*')
              AND b.item_code = w.item_code)
          OR (ends_with(w.item_code, '*')
              AND starts_with(b.item_code, rtrim(w.item_code, '*')))
          OR (w.generic_name IS NOT NULL
              AND (c.generic_name = w.generic_name
                   OR contains(b.item_name, w.generic_name)))
    )
    SELECT f.* FROM {fee_lines} AS f
    JOIN hits AS h ON h.item_code = f.item_code
    """

_FEE_LINE_SETTLEMENT = Attached(
    "fee_line_rows", "settlement_id", "effective_settlements",
    ("person_id", "institution_id", "medical_type", "admit_time", "admit_date",
     "discharge_time", "discharge_date", "off_site"))


def _table(name: str, doc: str) -> Source:
    t = INPUT_TABLES[name]
    return Source(name, t.key, (name,), None, doc)


SOURCES: tuple[Source, ...] = (
    # `reversed_settlement_id IS NOT NULL` in the subqueries changes no answer (NULL equals
    # nothing), but Spark does not infer it for a NOT EXISTS: without it, a join that is
    # not broadcast shuffles every settlement's NULL reversed_settlement_id to one task
    # (found measuring Spark: 99.7 % of 717 k settlements in one of 200 partitions).
    Source(
        "effective_settlements",
        ("settlement_id",),
        ("settlements",),
        """
        SELECT s.*,
               CAST(s.admit_time AS DATE) AS admit_date,
               CAST(s.discharge_time AS DATE) AS discharge_date,
               upper(substr(s.diagnosis_code, 1, 3)) AS diagnosis_category,
               substr(s.visit_region, 1, 4) AS visit_area,
               substr(s.insured_region, 1, 4) AS insured_area,
               substr(s.insured_region, 1, 4) <> substr(s.visit_region, 1, 4) AS off_site
        FROM input_settlements AS s
        WHERE s.reversed_settlement_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM input_settlements AS r
                          WHERE r.reversed_settlement_id IS NOT NULL
                            AND r.reversed_settlement_id = s.settlement_id)
          AND NOT EXISTS (SELECT 1 FROM input_quarantined_reversals AS q
                          WHERE q.reversed_settlement_id IS NOT NULL
                            AND q.reversed_settlement_id = s.settlement_id)
        """,
        "Every effective settlement (reversals removed, also those of quarantined reversal "
        "rows), whatever the analysis window, "
        "with the columns of `settlements`: the context a `--from/--to` window cuts off "
        "(a stay admitted before it whose lines are charged in it).",
        materialize=True,
    ),
    Source(
        "settlements",
        ("settlement_id",),
        ("settlements",),
        """
        SELECT * FROM effective_settlements
        WHERE NOT :filter_window OR admit_date BETWEEN :window_start AND :window_end
        """,
        "Effective settlements (reversals removed) admitted in the analysis window, with "
        "admit/discharge dates, diagnosis_category (ICD-10 3-character, upper case), pooling "
        "areas and off_site. (The rows a `sequence`, `window` or `correlate` rule judges a "
        "settlement by may be admitted outside the window.)",
        context="effective_settlements",
    ),
    Source(
        "fee_line_rows",
        ("line_id",),
        ("settlements", "fee_lines"),
        """
        SELECT f.*, CAST(f.charge_time AS DATE) AS charge_date
        FROM input_fee_lines AS f
        WHERE NOT :filter_window
           OR CAST(f.charge_time AS DATE) BETWEEN :window_start AND :window_end
        """,
        "Fee lines charged in the analysis window, of any settlement (reversed ones too): "
        "fee_lines before it joins the effective settlements.",
        internal=True,
    ),
    Source(
        "fee_lines",
        ("line_id",),
        ("settlements", "fee_lines"),
        _FEE_LINE_SETTLEMENT.join("fee_line_rows", _FEE_LINE_SETTLEMENT.columns),
        "Fee lines of effective settlements charged in the analysis window (whenever "
        "their settlement was admitted), with charge_date and their settlement's person, "
        "institution, medical type and dates.",
        # A view, not a table: the input fee lines are already in memory (Arrow) and
        # each rule reads a few of their columns, so joining the materialised
        # settlements per rule is cheaper than a wide copy that spills past the memory
        # limit at scale (20 M lines: 16 s to build, and every rule then reads it back
        # from disk).
        attached=_FEE_LINE_SETTLEMENT,
        context="all_fee_lines",
    ),
    Source(
        "all_fee_lines",
        ("line_id",),
        ("settlements", "fee_lines"),
        _FEE_LINE_SETTLEMENT.join(
            "(SELECT f.*, CAST(f.charge_time AS DATE) AS charge_date FROM input_fee_lines"
            " AS f)", _FEE_LINE_SETTLEMENT.columns),
        "fee_lines whatever the analysis window: its context.",
        internal=True,
    ),
    Source(
        "stays",
        ("settlement_id",),
        ("settlements",),
        """
        SELECT s.*,
               date_diff('day', s.admit_date, s.discharge_date) AS los,
               greatest(date_diff('day', s.admit_date, s.discharge_date), 1) AS bed_days
        FROM settlements AS s
        WHERE s.medical_type = '21' AND s.discharge_time IS NOT NULL
        """,
        "Inpatient stays (medical_type 21) with los = discharge date − admit date and "
        "bed_days counted 算入不算出 (a same-day stay counts 1).",
    ),
    Source(
        "stay_days",
        ("settlement_id", "day"),
        ("settlements", "fee_lines"),
        """
        WITH days AS (
            SELECT s.settlement_id, s.person_id, s.institution_id, s.los,
                   s.admit_date, s.discharge_date, CAST(d.day AS DATE) AS day
            FROM stays AS s,
                 unnest(generate_series(CAST(s.admit_date AS TIMESTAMP),
                                        CAST(s.discharge_date AS TIMESTAMP) - INTERVAL 1 DAY,
                                        INTERVAL 1 DAY)) AS d(day)
        ), fees AS (  -- every line of the stay, also one charged after the window
            SELECT f.settlement_id, CAST(f.charge_time AS DATE) AS day, count(*) AS line_count,
                   sum(f.amount) AS amount,
                   count(*) FILTER (WHERE f.fee_category NOT IN ('01', '02', '07'))
                       AS care_lines
            FROM input_fee_lines AS f
            WHERE f.settlement_id IN (SELECT settlement_id FROM stays)
            GROUP BY f.settlement_id, CAST(f.charge_time AS DATE)
        )
        SELECT days.*, coalesce(fees.line_count, 0) AS line_count,
               coalesce(fees.amount, 0) AS amount,
               coalesce(fees.care_lines, 0) = 0 AS basic_only
        FROM days LEFT JOIN fees
          ON fees.settlement_id = days.settlement_id AND fees.day = days.day
        """,
        "One row per day of a stay, admit date inclusive to discharge date exclusive "
        "(each with its stay's admit_date, discharge_date and los), with the day's "
        "line_count and amount (all the stay's lines: with --from/--to, also those "
        "charged after the window); basic_only is true when the day has no lines or only "
        "01 床位费 / 02 诊察费 / 07 护理费 lines.",
    ),
    Source(
        "item_days",
        ("settlement_id", "item_code", "charge_date"),
        ("settlements", "fee_lines"),
        _ITEM_DAYS.format(where=""),
        "One row per settlement, item and charge date: quantity, amount, line_count, "
        "item_name (the least name the lines were billed under). "
        "(Person and institution are grouped on, not aggregated, so a rule's filter on "
        "them is applied before the grouping.)",
    ),
    Source(
        "exclusive_pairs",
        ("item_code", "partner_code"),
        (),
        """
        SELECT DISTINCT item_code_a AS item_code, item_code_b AS partner_code
        FROM input_item_pairs WHERE relation = 'exclusive'
        UNION
        SELECT item_code_b, item_code_a FROM input_item_pairs WHERE relation = 'exclusive'
        """,
        "The exclusive pairs of item_pairs in both directions (item_code, partner_code), "
        "so a rule can join on equality.",
    ),
    Source(
        "paired_item_days",
        ("settlement_id", "item_code", "charge_date"),
        ("settlements", "fee_lines"),
        _ITEM_DAYS.format(
            where="WHERE f.item_code IN (SELECT item_code FROM exclusive_pairs)"),
        "item_days of the items that have an exclusive partner only (filtered before "
        "grouping: DuckDB does not push an IN-subquery below an aggregate).",
        # Small (the paired items' days), but a pass over every fee line to compute,
        # and a rule correlating it with itself reads it twice.
        materialize=True,
    ),
    Source(
        "settlement_items",
        ("settlement_id", "item_code"),
        ("settlements", "fee_lines"),
        _SETTLEMENT_ITEMS.format(fee_lines="fee_lines"),
        "One row per settlement and item (two lines of one item in one settlement are "
        "one purchase): quantity, amount, line_count, item_name (the least name the "
        "lines were billed under), and the settlement's person, institution, type and "
        "time. (A `window` rule's other members may be charged before the analysis "
        "window.)",
        context="all_settlement_items",
    ),
    Source(
        "all_settlement_items",
        ("settlement_id", "item_code"),
        ("settlements", "fee_lines"),
        _SETTLEMENT_ITEMS.format(fee_lines="all_fee_lines"),
        "settlement_items whatever the analysis window: its context.",
        internal=True,
    ),
    Source(
        "watched_fee_lines",
        ("line_id",),
        ("settlements", "fee_lines"),
        _WATCHED.format(fee_lines="fee_lines"),
        "Fee lines of items on an active watch list: by code, code prefix ending '*', "
        "or generic name (catalog.generic_name equal, or an item_name it was billed "
        "under containing it). Once an item matches, all its lines count. (A "
        "`period_change` rule reads whole months, also those a window cuts.)",
        context="all_watched_fee_lines",
    ),
    Source(
        "all_watched_fee_lines",
        ("line_id",),
        ("settlements", "fee_lines"),
        _WATCHED.format(fee_lines="all_fee_lines"),
        "watched_fee_lines whatever the analysis window: its context.",
        internal=True,
    ),
    _table("persons", "Insured persons (参保人员)."),
    _table("institutions", "Designated institutions (定点医药机构)."),
    _table("catalog", "The insurance catalogue (医保目录)."),
    _table("purchases", "Stock purchases (进货记录)."),
    Source(
        "item_pairs",
        (),
        (),
        "SELECT * FROM input_item_pairs",
        "Mutually exclusive item pairs: the data's table, else the project's "
        "rules/reference/item_pairs.csv.",
    ),
    Source(
        "watchlist",
        (),
        (),
        "SELECT * FROM input_watchlist",
        "Active watch-list entries: the shipped lists plus the data's table.",
    ),
)

BY_NAME: dict[str, Source] = {s.name: s for s in SOURCES}


@cache
def _empty_connection():
    """DuckDB over empty contract tables: answers 'which columns would this have?'."""
    from fraudscreen.engine_duckdb import connect, create_sources, register_empty, seal

    con = connect()  # binding a rule's SQL must not fetch an extension nor read a file
    register_empty(con)
    create_sources(con, window=None)
    seal(con)
    return con


def describe(sql: str) -> tuple[str, ...]:
    """Output column names of a query over the sources; ValueError with DuckDB's words
    when it cannot bind (an ambiguous column, types that cannot be compared)."""
    import duckdb

    try:
        return tuple(r[0] for r in _empty_connection().execute(f"DESCRIBE {sql}").fetchall())
    except duckdb.Error as err:
        raise ValueError(str(err).splitlines()[0]) from None


def converts(text: str, kind: str) -> bool:
    """Whether DuckDB reads ``text`` as a value of type ``kind`` (the value is bound)."""
    con = _empty_connection()
    return con.execute(f"SELECT TRY_CAST(? AS {kind}) IS NOT NULL", [text]).fetchone()[0]


@cache
def types() -> dict[str, dict[str, str]]:
    """Every source's columns with their DuckDB types."""
    con = _empty_connection()
    return {s.name: {name: kind for name, kind, *_ in
                     con.execute(f'DESCRIBE SELECT * FROM "{s.name}"').fetchall()}
            for s in SOURCES}


@cache
def columns() -> dict[str, tuple[str, ...]]:
    """Columns of every source a rule may name."""
    return {s.name: tuple(types()[s.name]) for s in SOURCES if not s.internal}
