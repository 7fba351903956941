"""SQL dialects the compiled rules are written for, where sqlglot's own differ.

Rules and sources are DuckDB SQL. sqlglot transpiles them for other engines, but a
few of its Spark renderings keep the *syntax* and lose DuckDB's *meaning*. Each
correction lives here, as a dialect, not as string patches in an engine:

``date_diff(unit, a, b)``
    DuckDB counts unit *boundaries* crossed (23:00 → 01:00 next day is 1 day);
    sqlglot emits Spark ``DATEDIFF(DAY, a, b)`` = ``timestampdiff``, which counts
    *whole* units elapsed (0 days). Here: day → ``DATEDIFF(CAST(b AS DATE),
    CAST(a AS DATE))``; month/quarter/year → calendar arithmetic; hour … microsecond
    → floor of microseconds since a fixed wall-clock epoch. Units without an exact
    rendering (week, isoyear, …) are refused, never approximated.
``epoch(ts)``
    DuckDB returns fractional seconds (DOUBLE); sqlglot's ``UNIX_TIMESTAMP`` returns
    whole seconds and reads the session time zone. Here: microseconds since
    ``1970-01-01`` between wall-clock (``TIMESTAMP_NTZ``) values, divided by 10⁶.
``generate_series(a, b, step)``
    DuckDB gives an empty list when ``a > b`` (a same-day stay has no nights);
    Spark ``SEQUENCE`` raises "Illegal sequence boundaries". Here: guarded by
    ``IF(a > b, ARRAY(), SEQUENCE(a, b, step))`` for a positive literal step.
``round(x, n)``
    DuckDB rounds a DOUBLE as ``std::round(x * 10ⁿ) / 10ⁿ``; Spark rounds it through
    its shortest decimal string, so ``round(1.005, 2)`` is 1.0 on one and 1.01 on the
    other. Here: ``ROUND(x * 10ⁿ, 0) / 10ⁿ`` when Spark says x is a DOUBLE
    (``TYPEOF``, folded at planning), ``ROUND(x, n)`` on a DECIMAL (exact on both).
    DuckDB 2 rounds a double's exact binary value instead (2.675 → 2.67, where x · 10ⁿ
    is 267.5 → 2.68): still different at such ties, and for an integer x (a DOUBLE here);
    docs/spark.md lists it.
``a / b``
    DuckDB divides DECIMALs in DOUBLE; Spark divides them exactly. Either is
    defensible, but both engines must give the same amount, so Spark divides in
    DOUBLE too (for integers both already do).
``avg(x)``
    DuckDB averages a DECIMAL as a DOUBLE (0.6); Spark as a DECIMAL with four more
    places ("0.60000000" in a message). Here: ``CAST(SUM(x) AS DOUBLE) / COUNT(x)``, each
    with the call's FILTER and OVER.
``floor(x)``, ``ceil(x)``
    DuckDB gives a DOUBLE for an integer or a double (2.0, a message's "2.00"); Spark a
    BIGINT (2). Here: divided by 1, which Spark does in DOUBLE for whole numbers and in
    DECIMAL for a decimal, as DuckDB keeps it.
``trim(s)``
    DuckDB trims every Unicode space separator, the full-width 　 (U+3000) a Chinese
    input method types among them; Spark only the ASCII space. Here: Spark is given
    DuckDB's characters to trim.
``extract(unit FROM t)``
    Spark counts the day of the week from Sunday = 1 (DuckDB 0), keeps a second's
    fraction (1.5; DuckDB 1), and lacks isodow, isoyear, epoch, millisecond, decade and
    other units DuckDB has. Here: each unit in Spark's words (``_EXTRACT``).
``left(s, n)``, ``right(s, n)``, ``substr(s, start, length)``
    DuckDB reads a negative count as "all but" (``left('abc', -1)`` is 'ab'), a negative
    length as the characters before ``start``, and a start of 0 as the place before the
    first character (``substr('abc', 0, 2)`` is 'a'); Spark gives '' or 'ab'. Here: a
    form Spark reads as DuckDB does whenever the numbers are not plain (a count or length
    of 0 or more, a start of 1 or more, written as numbers).

``FraudscreenSpark`` is registered with sqlglot under ``fraudscreenspark``; the
Spark engine's ``dialect`` is that name, so ``CompiledRule.sql_for`` needs no change.
``FraudscreenPostgres`` (``fraudscreenpostgres``) only refuses what PostgreSQL
lacks. ``for_engine('spark')`` maps a user-facing name to ours.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.dialect import sequence_sql
from sqlglot.dialects.postgres import Postgres
from sqlglot.dialects.spark import Spark
from sqlglot.generators.postgres import PostgresGenerator
from sqlglot.generators.spark import SparkGenerator

SPARK = "fraudscreenspark"

# Units whose boundaries fall on a fixed number of microseconds of wall-clock time.
_MICROS = {"HOUR": 3_600_000_000, "MINUTE": 60_000_000, "SECOND": 1_000_000,
           "MILLISECOND": 1_000, "MICROSECOND": 1}
_MONTHS = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}
_UNIT_ALIASES = {"D": "DAY", "DAYS": "DAY", "H": "HOUR", "HOURS": "HOUR",
                 "M": "MINUTE", "MINUTES": "MINUTE", "S": "SECOND", "SECONDS": "SECOND",
                 "MS": "MILLISECOND", "MILLISECONDS": "MILLISECOND",
                 "US": "MICROSECOND", "MICROSECONDS": "MICROSECOND",
                 "MONTHS": "MONTH", "MON": "MONTH", "QUARTERS": "QUARTER",
                 "YEARS": "YEAR", "Y": "YEAR"}


# The Unicode space separators (Zs) DuckDB's trim(s) removes; Spark's removes only " ".
_SPACES = (" \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
           "\u200a\u202f\u205f\u3000")
# DuckDB's EXTRACT(unit FROM x) in Spark's words, where Spark's own differs or is missing;
# x is the value. Units not here (year, month, day, hour, week, doy, …) mean the same.
_EXTRACT = {
    "SECOND": "SECOND({x})",  # Spark's EXTRACT keeps the fraction: 1.5, not 1
    "DOW": "(DAYOFWEEK({x}) - 1)",  # Spark's Sunday is 1, DuckDB's 0
    "ISODOW": "EXTRACT(DAYOFWEEK_ISO FROM {x})",
    "ISOYEAR": "EXTRACT(YEAROFWEEK FROM {x})",
    "YEARWEEK": "(EXTRACT(YEAROFWEEK FROM {x}) * 100 + EXTRACT(WEEK FROM {x}))",
    "MILLISECOND": "CAST(EXTRACT(SECOND FROM {x}) * 1000 AS BIGINT)",
    "MICROSECOND": "CAST(EXTRACT(SECOND FROM {x}) * 1000000 AS BIGINT)",
    "DECADE": "(YEAR({x}) DIV 10)",
    "CENTURY": "((YEAR({x}) - 1) DIV 100 + 1)",
    "MILLENNIUM": "((YEAR({x}) - 1) DIV 1000 + 1)",
}
_EXTRACT_ALIASES = {"SECONDS": "SECOND", "DAYOFWEEK": "DOW", "WEEKDAY": "DOW",
                    "DAYOFYEAR": "DOY", "DAYOFMONTH": "DAY", "WEEKOFYEAR": "WEEK",
                    "QUARTERS": "QUARTER", "MILLISECONDS": "MILLISECOND",
                    "MICROSECONDS": "MICROSECOND", "DECADES": "DECADE",
                    "CENTURYS": "CENTURY", "MILLENNIUMS": "MILLENNIUM"}


def _plain(node: exp.Expression | None) -> bool:
    """A whole number of 0 or more written as a number: Spark counts it as DuckDB does."""
    return isinstance(node, exp.Literal) and node.is_int and int(node.name) >= 0


def _all_but(text: exp.Expression, count: exp.Expression) -> exp.Expression:
    """DuckDB's count for left/right: a negative one is all characters but that many."""
    if _plain(count):
        return count
    return exp.If(this=exp.LT(this=count.copy(), expression=exp.Literal.number(0)),
                  true=exp.Add(this=exp.Length(this=text.copy()), expression=count.copy()),
                  false=count.copy())


def _avg_in_double(tree: exp.Expression) -> None:
    """Each ``avg(x) [FILTER (…)] [OVER (…)]`` as ``CAST(SUM(x) … AS DOUBLE) / COUNT(x) …``:
    a DECIMAL's mean as DuckDB gives it, the same FILTER and OVER on both calls. Innermost
    first, so that an avg in a window's ORDER BY is rewritten before it is copied."""
    for avg in reversed(list(tree.find_all(exp.Avg))):
        call, wrappers = avg, []
        while isinstance(call.parent, (exp.Filter, exp.Window)) and call.parent.this is call:
            call = call.parent
            wrappers.append(call)

        call.replace(exp.Div(
            this=exp.cast(_wrapped(exp.Sum(this=avg.this.copy()), wrappers),
                          exp.DataType.Type.DOUBLE),
            expression=_wrapped(exp.Count(this=avg.this.copy()), wrappers)))


def _wrapped(aggregate: exp.Expression, wrappers: list[exp.Expression]) -> exp.Expression:
    """``aggregate`` inside copies of the FILTER, then the OVER, an avg was called with."""
    for wrapper in wrappers:
        outer = wrapper.copy()
        outer.set("this", aggregate)
        aggregate = outer
    return aggregate


def _trim_spaces(tree: exp.Expression) -> None:
    """Each ``trim(s)`` as ``trim(s, <DuckDB's spaces>)``."""
    for trim in tree.find_all(exp.Trim):
        if trim.args.get("expression") is None and not trim.args.get("position"):
            trim.set("expression", exp.Literal.string(_SPACES))


def _divided_by_one(rounding):
    """Spark's floor/ceil as DuckDB types it: a BIGINT divided by 1 is a DOUBLE (as DuckDB
    gives for an integer or a double), a DECIMAL stays one."""
    def generate(self, expression: exp.Expression) -> str:
        return f"({rounding(self, expression)} / 1)"

    return generate


def _cast(node: exp.Expression, to: str) -> exp.Expression:
    if isinstance(node, exp.Cast) and node.to.is_type(to):
        return node.copy()
    return exp.cast(node.copy(), to)


def _wall_micros(node: exp.Expression) -> exp.Expression:
    """Microseconds from 1970-01-01 00:00 to a wall-clock time: no time zone involved."""
    return exp.Anonymous(this="TIMESTAMPDIFF", expressions=[
        exp.var("MICROSECOND"),
        exp.cast(exp.Literal.string("1970-01-01 00:00:00"), exp.DataType.Type.TIMESTAMPNTZ),
        _cast(node, exp.DataType.Type.TIMESTAMPNTZ)])


def _month_number(node: exp.Expression, months: int) -> exp.Expression:
    as_date = _cast(node, exp.DataType.Type.DATE)
    total = exp.Add(
        this=exp.Mul(this=exp.Year(this=as_date), expression=exp.Literal.number(12)),
        expression=exp.Sub(this=exp.Month(this=as_date.copy()),
                           expression=exp.Literal.number(1)))
    if months == 1:
        return exp.paren(total)
    return exp.IntDiv(this=exp.paren(total), expression=exp.Literal.number(months))


def _positive_literal_step(step: exp.Expression | None) -> bool:
    if step is None:
        return True
    if isinstance(step, exp.Interval):
        step = step.this
    try:
        return float(step.name) > 0 if isinstance(step, exp.Literal) else False
    except ValueError:
        return False


class FraudscreenSpark(Spark):
    """Spark SQL with DuckDB's meaning for the constructs listed in the module doc."""

    class Generator(SparkGenerator):
        # Transforms win over *_sql methods: drop sqlglot's renderings we replace.
        TRANSFORMS = {
            **{k: v for k, v in SparkGenerator.TRANSFORMS.items()
               if k not in (exp.TimeToUnix, exp.GenerateSeries, exp.DateDiff, exp.Div)},
            exp.Floor: _divided_by_one(SparkGenerator.TRANSFORMS[exp.Floor]),
            exp.Ceil: _divided_by_one(SparkGenerator.TRANSFORMS[exp.Ceil]),
        }

        def preprocess(self, expression: exp.Expression) -> exp.Expression:
            expression = super().preprocess(expression)
            _avg_in_double(expression)
            _trim_spaces(expression)
            return expression

        def extract_sql(self, expression: exp.Extract) -> str:
            unit = expression.this.name.upper()
            unit = _EXTRACT_ALIASES.get(unit, unit)
            value = expression.expression
            if unit == "EPOCH":
                return self.timetounix_sql(exp.TimeToUnix(this=value.copy()))
            if unit in _EXTRACT:
                return _EXTRACT[unit].format(x=self.sql(value))
            return super().extract_sql(exp.Extract(this=exp.var(unit), expression=value.copy()))

        def left_sql(self, expression: exp.Left) -> str:
            return self.func("LEFT", expression.this, _all_but(expression.this,
                                                               expression.expression))

        def right_sql(self, expression: exp.Right) -> str:
            return self.func("RIGHT", expression.this, _all_but(expression.this,
                                                                expression.expression))

        def substring_sql(self, expression: exp.Substring) -> str:
            start, length = expression.args.get("start"), expression.args.get("length")
            if length is None or (_plain(start) and start.name != "0"
                                  and (_plain(length) or start.name == "1")):
                return self.function_fallback_sql(expression)  # Spark counts these as DuckDB
            # DuckDB's characters [first, last), from 0: start 0 is before the first one
            # (one less counted), a negative start counts from the end, a negative length
            # goes back from the start. Spark clips ``last`` to the text as DuckDB does.
            text, start, length = (self.sql(expression, k) for k in ("this", "start", "length"))
            begin = (f"CASE WHEN {start} > 0 THEN {start} - 1 "
                     f"WHEN {start} < 0 THEN CHAR_LENGTH({text}) + {start} ELSE 0 END")
            count = f"({length} - CASE WHEN {start} = 0 THEN 1 ELSE 0 END)"
            first = f"GREATEST(CASE WHEN {count} >= 0 THEN {begin} ELSE {begin} + {count} END, 0)"
            last = f"CASE WHEN {count} >= 0 THEN {begin} + {count} ELSE {begin} END"
            return (f"CASE WHEN {start} IS NULL OR {length} IS NULL THEN NULL "
                    f"ELSE SUBSTRING({text}, {first} + 1, {last} - {first}) END")

        def datediff_sql(self, expression: exp.DateDiff) -> str:
            if not expression.args.get("date_part_boundary"):
                return super().datediff_sql(expression)
            end, start = expression.this, expression.expression
            unit = expression.text("unit").upper() or "DAY"
            unit = _UNIT_ALIASES.get(unit, unit)
            if unit == "DAY":
                return self.func("DATEDIFF", _cast(end, exp.DataType.Type.DATE),
                                 _cast(start, exp.DataType.Type.DATE))
            if unit in _MONTHS:
                diff = exp.Sub(this=_month_number(end, _MONTHS[unit]),
                               expression=_month_number(start, _MONTHS[unit]))
                return self.sql(exp.paren(diff))
            if unit in _MICROS:
                def floor(node: exp.Expression) -> exp.Expression:
                    micros = _wall_micros(node)
                    if _MICROS[unit] == 1:
                        return micros
                    # Spark's own FLOOR (a BIGINT), not the one given DuckDB's type
                    return exp.Anonymous(this="FLOOR", expressions=[exp.Div(
                        this=micros, expression=exp.Literal.number(_MICROS[unit]))])
                return self.sql(exp.paren(exp.Sub(this=floor(end), expression=floor(start))))
            self.unsupported(f"date_diff('{unit.lower()}', …) has no exact Spark equivalent "
                             "(DuckDB counts unit boundaries); use day, month, quarter, year, "
                             "hour, minute, second, millisecond or microsecond")
            return super().datediff_sql(expression)

        def timetounix_sql(self, expression: exp.TimeToUnix) -> str:
            seconds = exp.Div(this=_wall_micros(expression.this),
                              expression=exp.Literal.number(1_000_000))
            return self.sql(exp.paren(seconds))

        def generateseries_sql(self, expression: exp.GenerateSeries) -> str:
            sequence = sequence_sql(self, expression)
            if expression.args.get("is_end_exclusive"):
                return sequence  # sqlglot already guards the exclusive (range) form
            start, end = expression.args.get("start"), expression.args.get("end")
            if not _positive_literal_step(expression.args.get("step")):
                self.unsupported("generate_series with a non-literal or negative step: "
                                 "Spark SEQUENCE fails where DuckDB returns an empty list")
                return sequence
            empty = exp.GT(this=start.copy(), expression=end.copy())
            return f"IF({self.sql(empty)}, ARRAY(), {sequence})"

        def round_sql(self, expression: exp.Round) -> str:
            places = expression.args.get("decimals")
            value = expression.this
            if (not (isinstance(places, exp.Literal) and places.is_int and int(places.name) > 0)
                    or expression.args.get("truncate")
                    or (isinstance(value, exp.Cast)
                        and value.to.is_type(exp.DataType.Type.DECIMAL))):
                return self.function_fallback_sql(expression)  # a DECIMAL: exact on both
            # DuckDB rounds a DOUBLE as std::round(x * 10^n) / 10^n; Spark rounds it through
            # its shortest decimal string (1.005 → 1.01; DuckDB 1.0). ROUND(·, 0) of a
            # double agrees with std::round. A DECIMAL must keep ROUND(x, n): x * 10^n can
            # lose scale in a wide decimal and round twice. The type is known only to
            # Spark, so ask it (typeof folds to a constant).
            factor = str(10 ** int(places.name))
            x = self.sql(expression, "this")
            return (f"CASE WHEN TYPEOF({x}) IN ('double', 'float') "
                    f"THEN ROUND({x} * {factor}, 0) / {factor} ELSE ROUND({x}, {places.name}) END")

        def div_sql(self, expression: exp.Div) -> str:
            if expression.args.get("typed") or expression.args.get("safe"):
                return super().div_sql(expression)
            left = expression.this
            if not (isinstance(left, exp.Cast) and left.to.is_type(exp.DataType.Type.DOUBLE)):
                left = exp.cast(left.copy(), exp.DataType.Type.DOUBLE)
            return self.binary(exp.Div(this=left, expression=expression.expression.copy()),
                               "/")


def _refuse(what: str):
    def generate(self, expression: exp.Expression) -> str:
        self.unsupported(f"{what} does not exist in PostgreSQL")
        return self.function_fallback_sql(expression)

    return generate


class FraudscreenPostgres(Postgres):
    """PostgreSQL, refusing functions sqlglot passes through but PostgreSQL 15 lacks.

    Checked by running the transpiled rules (EXPLAIN) on PostgreSQL 15: sqlglot
    emits ARRAY_SORT, ARG_MIN/ARG_MAX, ENDS_WITH and CONTAINS unchanged, and
    PostgreSQL has none of them, so a rule using them must fail to compile.
    """

    class Generator(PostgresGenerator):
        TRANSFORMS = {
            **PostgresGenerator.TRANSFORMS,
            exp.ArraySort: _refuse("array_sort (DuckDB list_sort)"),
            exp.ArgMin: _refuse("arg_min"),
            exp.ArgMax: _refuse("arg_max"),
            exp.EndsWith: _refuse("ends_with"),
            exp.Contains: _refuse("contains"),
        }


POSTGRES = "fraudscreenpostgres"
_OURS = {"spark": SPARK, "postgres": POSTGRES}


def for_engine(dialect: str) -> str:
    """The sqlglot dialect that gives ``dialect`` DuckDB's meaning ('spark' → ours)."""
    return _OURS.get(dialect, dialect)
