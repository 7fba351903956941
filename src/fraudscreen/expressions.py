"""Rule expressions are data from users: parse, check, bind — never paste.

Every expression in a rule file is parsed with sqlglot (DuckDB dialect) and walked
node by node. Only allow-listed node types and functions pass; every column must
resolve in the scope the rule gives it; every ``:param`` must be a declared
parameter. Parameters are bound by replacing the placeholder with a typed literal
node, so a value can never change the shape of the query. Nothing here can name a
file, a table function, a setting or the environment: those nodes are not on the
list, and tables in subqueries must be rule sources.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.tokens import Token, TokenType

from fraudscreen import sources
from fraudscreen.contract import INPUT_TABLES

DIALECT = "duckdb"
# sqlglot logs "Falling back to parsing as a 'Command'" for CALL, LOAD and the like: such a
# text is refused with a message of ours, and its log line would only puzzle an analyst.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class ExpressionError(ValueError):
    """A rule expression that may not run; the message says why and what to write.
    ``at``: the offset in the expression's text of what is wrong, when known, so that
    the error can name the line and column of a multi-line block in the rule file."""

    def __init__(self, message: str, at: int | None = None):
        super().__init__(message)
        self.at = at
        self.near: str | None = None  # what to look for when sqlglot kept no offset

    def offset(self, text: str) -> int | None:
        """Where in ``text`` the error is: its offset, or the first whole word ``near``."""
        if self.at is not None or not self.near:
            return self.at
        found = re.search(rf"(?<!\w){re.escape(self.near)}(?!\w)", text, re.IGNORECASE)
        return found.start() if found else None


def start(node: exp.Expression) -> int | None:
    """Where a node's text starts: sqlglot keeps offsets on names, literals and calls."""
    starts = [n.meta["start"] for n in node.walk() if n._meta and "start" in n.meta]
    return min(starts, default=None)


@contextlib.contextmanager
def _at(node: exp.Expression) -> Iterator[None]:
    """An error raised about ``node`` points at it."""
    try:
        yield
    except ExpressionError as err:
        if err.at is None:
            err.at = start(node)
        if err.at is None:  # CURRENT_DATE, a type: no offset, but a word to find
            err.near = re.split(r"\W", node.sql(DIALECT).lstrip("("), maxsplit=1)[0] or None
        raise


# Structural nodes: operators, literals, CASE, CAST, subquery scaffolding.
_ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Placeholder,
    exp.Paren, exp.And, exp.Or, exp.Not, exp.Xor,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between,
    exp.Like, exp.ILike, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.IntDiv,
    exp.Case, exp.If, exp.Cast, exp.TryCast, exp.DataType, exp.DataTypeParam, exp.Interval,
    exp.Var, exp.Tuple, exp.Array, exp.Distinct, exp.Filter, exp.Where,
    exp.Exists, exp.Select, exp.From, exp.Table, exp.TableAlias, exp.Subquery, exp.Join,
    exp.Alias, exp.Star, exp.DPipe, exp.Group, exp.Having,
)


class WithName(exp.Expression, exp.Func):
    """``with_name(code, name)``: an item as a message names it, ``code（name）``, or the
    code alone when it has no name, never ``code（）``; one spelling for every rule that
    names an item. No name is NULL, or blank: ingestion quarantines a line with a blank
    name, but a test case or a table Spark reads itself (``--spark-table``) may hold one.
    No engine has the function: ``bind`` spells it out as a CASE, which every dialect
    transpiles as any CASE."""

    arg_types = {"this": True, "expression": True}
    _sql_names = ["WITH_NAME"]
    _SPELLED = "CASE WHEN coalesce(name, '') = '' THEN code ELSE code || '（' || name || '）' END"

    def spelled_out(self) -> exp.Expression:
        """The CASE, holding copies of the code and the name."""
        args = {"code": self.this, "name": self.expression}
        return sqlglot.parse_one(self._SPELLED, read=DIALECT).transform(
            lambda node: args[node.name].copy() if isinstance(node, exp.Column) else node)


@dataclass(frozen=True)
class Takes:
    """How many arguments a function takes on every engine a rule runs on, and a call
    that shows them as a rule writes it. Not sqlglot's ``arg_types``: those are its own
    fields (a ROUND's truncate flag, DATE_DIFF's unit as optional), and its parser drops
    what it has no field for (``floor(amount, 1, 2)`` read as ``floor(amount, 1)``)."""

    fewest: int
    most: int | None  # None: any number from ``fewest``
    call: str

    def refuse(self, written: str, given: int) -> str | None:
        """What is wrong with a call given ``given`` arguments, if anything."""
        if self.fewest <= given <= (given if self.most is None else self.most):
            return None
        if self.most == self.fewest:
            takes = f"{self.fewest} argument{'s' * (self.fewest != 1)}"
        elif self.most is None:
            takes = f"at least {self.fewest} argument{'s' * (self.fewest != 1)}"
        else:
            takes = f"{self.fewest} or {self.most} arguments"
        return f"{written}() takes {takes}, not {given}: write it as {self.call}"


# Functions a rule may call: pure, deterministic, and available on every engine we target
# (with_name as the CASE it stands for), with the arguments both DuckDB and Spark take
# (DuckDB's least(x), min(x, n) and count() are not Spark's).
_FUNCTIONS: dict[type[exp.Expression], Takes] = {
    exp.Sum: Takes(1, 1, "sum(amount)"), exp.Count: Takes(1, 1, "count(*)"),
    exp.Min: Takes(1, 1, "min(charge_date)"), exp.Max: Takes(1, 1, "max(charge_date)"),
    exp.Avg: Takes(1, 1, "avg(amount)"),
    exp.ArgMin: Takes(2, 2, "arg_min(item_code, charge_time)"),
    exp.ArgMax: Takes(2, 2, "arg_max(item_code, amount)"),
    exp.CountIf: Takes(1, 1, "count_if(amount > 0)"), exp.Abs: Takes(1, 1, "abs(amount)"),
    exp.Round: Takes(1, 2, "round(amount, 2)"), exp.Floor: Takes(1, 1, "floor(quantity)"),
    exp.Ceil: Takes(1, 1, "ceil(quantity)"),
    exp.Coalesce: Takes(1, None, "coalesce(price_cap, 0)"),
    exp.Greatest: Takes(2, None, "greatest(amount, 0)"),
    exp.Least: Takes(2, None, "least(amount, price_cap)"),
    exp.Nullif: Takes(2, 2, "nullif(quantity, 0)"),
    exp.Substring: Takes(2, 3, "substr(person_id, 1, 9)"),
    exp.Upper: Takes(1, 1, "upper(item_code)"), exp.Lower: Takes(1, 1, "lower(item_code)"),
    exp.Length: Takes(1, 1, "length(item_code)"), exp.Trim: Takes(1, 2, "trim(item_name)"),
    exp.Concat: Takes(1, None, "concat(item_code, item_name)"),
    exp.StartsWith: Takes(2, 2, "starts_with(item_code, '25')"),
    exp.DateDiff: Takes(3, 3, "date_diff('day', admit_date, discharge_date)"),
    exp.DateTrunc: Takes(2, 2, "date_trunc('month', charge_date)"),
    exp.TimestampTrunc: Takes(2, 2, "date_trunc('month', charge_date)"),
    exp.Extract: Takes(2, 2, "extract(year FROM charge_date)"),
    exp.Year: Takes(1, 1, "year(charge_date)"), exp.Month: Takes(1, 1, "month(charge_date)"),
    exp.Day: Takes(1, 1, "day(charge_date)"), exp.Left: Takes(2, 2, "left(item_code, 2)"),
    exp.Right: Takes(2, 2, "right(item_code, 4)"),
    exp.StrPosition: Takes(2, 2, "strpos(item_name, '注射')"),
    exp.ArraySize: Takes(1, 1, "array_length(related_settlement_ids)"),
    WithName: Takes(2, 2, "with_name(item_code, item_name)"),
}
_ALLOWED_FUNCTIONS = tuple(_FUNCTIONS)

# Types a CAST may name: the engines' own. A type from an extension (INET, GEOMETRY) would
# make DuckDB fetch and load code.
_T = exp.DataType.Type
_ALLOWED_TYPES = frozenset({
    _T.TEXT, _T.VARCHAR, _T.CHAR, _T.NVARCHAR, _T.TINYINT, _T.SMALLINT, _T.INT, _T.BIGINT,
    _T.DECIMAL, _T.DOUBLE, _T.FLOAT, _T.DATE, _T.TIMESTAMP, _T.TIMESTAMPNTZ, _T.BOOLEAN,
    _T.ARRAY,
})

# The words a date or time unit may be (EXTRACT(year FROM …), INTERVAL 3 DAY,
# date_diff('day', …)). sqlglot writes a unit back as it was given, unquoted: any other
# text there (a quoted name, a string with SQL in it) would be pasted into the statement.
_UNITS = frozenset({
    f"{unit}{plural}" for unit in ("YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE",
                                   "SECOND", "MILLISECOND", "MICROSECOND", "DECADE", "CENTURY")
    for plural in ("", "S")} | {"DOW", "DAYOFWEEK", "ISODOW", "WEEKDAY", "DOY", "DAYOFYEAR",
                                  "DAYOFMONTH", "WEEKOFYEAR", "YEARWEEK", "ISOYEAR", "EPOCH",
                                  "MILLENNIUM", "MILLENNIUMS"})

# What only a query kind's statement may hold: named steps (WITH), UNION, and window
# functions whose answer does not depend on how rows that tie are ordered.
_STATEMENT_NODES: tuple[type[exp.Expression], ...] = (
    exp.With, exp.CTE, exp.Union, exp.Window, exp.WindowSpec, exp.Order, exp.Ordered,
)
_WINDOW_ONLY: tuple[type[exp.Expression], ...] = (exp.Rank, exp.DenseRank)
# Functions that pick a row by its place among rows that may tie: a different lead each run.
_BY_PLACE = {exp.Lag: "lag", exp.Lead: "lead", exp.RowNumber: "row_number",
             exp.FirstValue: "first_value", exp.LastValue: "last_value",
             exp.NthValue: "nth_value", exp.Ntile: "ntile"}

_AGGREGATES: tuple[type[exp.Expression], ...] = (
    exp.Sum, exp.Count, exp.Min, exp.Max, exp.Avg, exp.ArgMin, exp.ArgMax, exp.CountIf,
)

ParamValue = int | float | Decimal | str | bool | dt.date | list


@dataclass
class Scope:
    """What an expression may refer to.

    ``columns`` maps a qualifier ('' for unqualified) to the names it offers;
    ``tables`` maps source names a subquery may read to their columns.
    """

    columns: dict[str, set[str]]
    tables: dict[str, set[str]] = field(default_factory=dict)
    params: set[str] = field(default_factory=set)
    aggregates: bool = False
    # Whether the expression reads the detection's rows, to which a lookup adds a column
    # (not a group's or a hit's).
    rows: bool = False
    # Names a query's WITH step may not take (besides ``tables``): the compiler's own.
    reserved: set[str] = field(default_factory=set)
    # Names the rule gives values of its own (lookups, measures, evidence): a lookup
    # ``level`` holding a number is no longer the text column it is named after.
    named: set[str] = field(default_factory=set)


# Full-width punctuation a Chinese input method types, and the ASCII a rule needs.
_FULL_WIDTH = {"，": ",", "；": ";", "（": "(", "）": ")", "：": ":", "＝": "=", "＞": ">",
               "＜": "<", "！": "!", "‘": "'", "’": "'", "“": "'", "”": "'"}


def _full_width(text: str, tokens: list) -> None:
    """Refuse full-width punctuation in the SQL itself, naming it: otherwise
    ``quantity，amount`` reads as one unknown column and ``‘08’`` as a name. Strings,
    quoted identifiers and comments may hold any text: only bare words are looked at."""
    for token in tokens:
        bad = next((ch for ch in token.text if ch in _FULL_WIDTH), None)
        if token.token_type is not TokenType.VAR or bad is None:
            continue
        offset = token.start + token.text.index(bad)
        line = text.count("\n", 0, offset) + 1
        at = f"column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"
        if "\n" in text:
            at = f"line {line}, {at}"
        raise ExpressionError(f"full-width {bad!r} at {at} of {text!r}: write ASCII "
                              f"{_FULL_WIDTH[bad]!r} (switch the input method to "
                              "half-width, 半角)", offset)


def parse(text: str) -> exp.Expression:
    """Parse one expression; a syntax error becomes an ExpressionError."""
    text = str(text)
    try:
        tokens = sqlglot.tokenize(text, read=DIALECT)
    except TokenError:
        tokens = []  # parse_one refuses it below, with its own message
    _full_width(text, tokens)
    _count_arguments(tokens)
    # A one-line expression is shown in the error; a block's line and column say where.
    shown = "" if "\n" in text.strip() else f" {text!r}"
    try:
        readable, parameters = _parameters(text, tokens)
        tree = _placeholders(sqlglot.parse_one(readable, read=DIALECT), parameters)
        tree = _with_names(tree)
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        near = first.get("highlight") or ""
        raise ExpressionError(
            f"cannot parse{shown}{f' near {near!r}' if near else ''}: "
            f"{_described(first.get('description', str(err)))}", _offset(text, first)) from None
    except TokenError:  # an unterminated string or quoted name
        opened = _open_quote(text)
        raise ExpressionError(
            f"cannot parse{shown}: a quote is left open"
            + (f" (the {text[opened]} here is never closed)" if opened is not None else ""),
            opened) from None
    if tree is None:
        raise ExpressionError("empty expression")
    return tree


def _parameters(text: str, tokens: list) -> tuple[str, dict[int, str]]:
    """The text with each ``:name`` written as the name ``_name`` (the same length, so
    every offset holds), and the parameters by offset. sqlglot reads ``SELECT :x AS n`` as
    DuckDB's ``alias: value`` and ``(:x)`` in a SELECT list not at all; a name it reads
    everywhere. A ``:`` right after a word (``AND:b``, ``x[1:b]``) is left as it is."""
    chars, parameters = list(text), {}
    for colon, name in itertools.pairwise(tokens):
        if (colon.token_type is TokenType.COLON and colon.end + 1 == name.start
                and re.match(r"[A-Za-z_]", name.text)
                and not re.match(r"\w", text[colon.start - 1:colon.start])):
            chars[colon.start] = "_"
            parameters[colon.start] = name.text
    return "".join(chars), parameters


def _placeholders(tree: exp.Expression, parameters: dict[int, str]) -> exp.Expression:
    """The names ``_parameters`` wrote back as parameters, found by their offsets (a
    column of the same name elsewhere is a column), each keeping its offset."""
    def back(node: exp.Expression) -> exp.Expression:
        at = start(node) if isinstance(node, exp.Column) and not node.table else None
        if at not in parameters:
            return node
        placeholder = exp.Placeholder(this=parameters[at])
        placeholder.meta["start"] = at
        return placeholder

    return tree.transform(back) if parameters else tree


def _with_names(tree: exp.Expression) -> exp.Expression:
    """Each ``with_name(…)`` call, which sqlglot reads as a function it does not know, as
    ours (``_count_arguments`` has counted its arguments)."""
    def ours(node: exp.Expression) -> exp.Expression:
        if not (isinstance(node, exp.Anonymous) and node.name.upper() == WithName.sql_name()):
            return node
        code, name = node.expressions
        call = WithName(this=_with_names(code), expression=_with_names(name))
        call.meta["start"] = start(node)
        return call

    return tree.transform(ours)


def _count_arguments(tokens: list) -> None:
    """Refuse a call of an allowed function with too few or too many arguments, naming it
    as written, where it is written. Counted in the text, before sqlglot reads it: sqlglot
    refuses such a call in words of its own classes, or drops what it has no field for."""
    for name, given in _calls(tokens):
        takes = _FUNCTIONS.get(_function_of(name.text.upper()))
        refused = takes and takes.refuse(name.text, given)
        if refused:
            raise ExpressionError(refused, name.start)


def _calls(tokens: list) -> Iterator[tuple[Token, int]]:
    """Each ``word(…)`` with the number of arguments written in it: commas at its own
    depth separate them, as do FROM and FOR in SQL's spellings (``EXTRACT(year FROM d)``,
    ``SUBSTRING(s FROM 1 FOR 2)``, ``TRIM(BOTH 'x' FROM s)``), and IN in POSITION's
    (``POSITION('x' IN s)``: elsewhere an IN at a call's depth is the operator,
    ``count_if(x IN ('a', 'b'))``)."""
    opened: list[list] = []  # per open bracket: the word before it, or None; separators
    for before, token in itertools.pairwise([None, *tokens]):
        kind = token.token_type
        if kind in (TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE):
            word = (kind is TokenType.L_PAREN and before is not None
                    and before.token_type not in (TokenType.STRING, TokenType.IDENTIFIER)
                    and re.fullmatch(r"[A-Za-z_]\w*", before.text))
            opened.append([before if word else None, 0])
        elif kind in (TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE) and opened:
            word, separators = opened.pop()
            if word is not None:
                yield word, 0 if before.token_type is TokenType.L_PAREN else separators + 1
        elif opened and (kind in (TokenType.COMMA, TokenType.FROM, TokenType.FOR) or (
                kind is TokenType.IN and opened[-1][0] is not None
                and opened[-1][0].text.upper() == "POSITION")):
            opened[-1][1] += 1


@cache
def _function_of(word: str) -> type[exp.Expression] | None:
    """What sqlglot reads a call of ``word`` as (``ifnull`` is coalesce, ``len`` length)."""
    try:
        tree = sqlglot.parse_one(f"{word}(x, y)", read=DIALECT, error_level=ErrorLevel.IGNORE)
    except SqlglotError:
        return None
    return type(_with_names(tree)) if tree is not None else None


def _described(description: str) -> str:
    """A parse error in sqlglot's words, but an operator missing a side ("Required
    keyword: 'expression' missing for <class '…And'>") as the form it takes, a AND b."""
    found = re.fullmatch(r"Required keyword: '\w+' missing for <class '[\w.]+\.(\w+)'>",
                         description)
    if not found:
        return description
    operator = getattr(exp, found[1], None)
    if not (isinstance(operator, type)
            and issubclass(operator, (exp.Binary, exp.Unary, exp.Between))):
        return f"{found[1].upper()} is incomplete"  # CASE without WHEN
    names = iter("abc")
    form = operator(**{arg: exp.column(next(names)) for arg, required
                       in operator.arg_types.items() if required}).sql(DIALECT)
    called = re.match(r"(\w+)\(", form)  # regexp_matches(x): a function, not an operator
    return _not_allowed(called[1]) if called else f"a value is missing: write it as {form}"


def _open_quote(text: str) -> int | None:
    """Where the quote that is never closed opens (a doubled quote is one character)."""
    opened, i = None, 0
    while i < len(text):
        if opened is None and text[i] in "'\"":
            opened = i
        elif opened is not None and text[i] == text[opened]:
            if text[i + 1:i + 2] == text[opened]:
                i += 1  # '' inside a string
            else:
                opened = None
        i += 1
    return opened


def _offset(text: str, error: dict) -> int | None:
    """The offset of a parse error's token (sqlglot gives the line and the column where
    the token ends)."""
    if not error.get("line") or not error.get("col"):
        return None
    line_start = sum(len(t) + 1 for t in text.split("\n")[:error["line"] - 1])
    return max(0, line_start + error["col"] - len(error.get("highlight") or ""))


def suggest(name: str, options: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check(tree: exp.Expression, scope: Scope, statement: bool = False) -> exp.Expression:
    """Refuse anything outside the allow-list or the scope; returns the tree.
    ``statement``: the tree is a query kind's SELECT, not a value."""
    if statement:
        scope = _named_steps(tree, scope)
    for node in tree.walk():
        with _at(node):
            _check_node(node, scope, statement)
    _check_columns(tree, scope)
    _check_codes(tree, scope)
    _check_with_names(tree, scope)
    return tree


@cache
def _column_kinds() -> dict[str, frozenset[str]]:
    """Each column name with its types across the sources that have it."""
    kinds: dict[str, set[str]] = {}
    for columns in sources.types().values():
        for name, kind in columns.items():
            kinds.setdefault(name, set()).add(kind)
    return {name: frozenset(k) for name, k in kinds.items()}


@cache
def _text_columns() -> frozenset[str]:
    """Names that are text in every source that has them: ids and codes."""
    return frozenset(name for name, k in _column_kinds().items() if k == {"VARCHAR"})


def _own_names(tree: exp.Expression, scope: Scope) -> set[str]:
    """Names the rule or the statement gives a value of its own (a lookup, a measure,
    ``CAST(level AS INTEGER) AS level``, a WITH step's column): not the source's column
    of that name, so of no type known here."""
    return scope.named | {a.alias for a in tree.find_all(exp.Alias)} | {
        c.name for t in tree.find_all(exp.TableAlias) for c in t.columns}


def _check_codes(tree: exp.Expression, scope: Scope) -> None:
    """Refuse a code compared with an unquoted number (``item_code = 250403067``): DuckDB
    then reads every code as a number, fails on the first that is not one (``Y01``) when
    a row reaches it, and takes ``01`` for ``1``. A name the rule gives a value of its
    own is not judged: it need not be text."""
    text = _text_columns() - _own_names(tree, scope)
    for node in tree.find_all(exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In,
                              exp.Between):
        sides = [node.this, *(node.expressions if isinstance(node, exp.In) else
                              (node.args.get("low"), node.args.get("high"))
                              if isinstance(node, exp.Between) else (node.expression,))]
        code = next((s for s in sides if isinstance(s, exp.Column) and s.name in text), None)
        number = next((s for s in sides if isinstance(s, exp.Literal) and not s.is_string),
                      None)
        if code is not None and number is not None:
            with _at(number):
                raise ExpressionError(
                    f"{code.name} is text and {number.this} a number: quote the code, "
                    f"'{number.this}' (unquoted, every {code.name} is read as a number, and "
                    "the rule fails on the first that is not one)")


def _check_with_names(tree: exp.Expression, scope: Scope) -> None:
    """Refuse a ``with_name`` argument known not to be text (``amount``, ``1``, a date):
    as the code it fails on the night's data (the CASE mixes a number with text), as the
    name each engine writes it out its own way (a double's digits differ)."""
    own = _own_names(tree, scope)
    for call in tree.find_all(WithName):
        for arg in (call.this, call.expression):
            kind = _non_text(arg, own)
            if kind:
                with _at(arg):
                    raise ExpressionError(
                        f"with_name() takes text, an item's code and its name, and "
                        f"{arg.sql(DIALECT)} is {kind}: cast it to VARCHAR if its digits "
                        "are meant")


def _non_text(node: exp.Expression, own: set[str]) -> str | None:
    """The type of a value known not to be text (a source's column, a literal, a CAST,
    a count), or None: text, NULL, or not known before the statement runs."""
    if isinstance(node, exp.Column):
        kinds = set() if node.name in own else _column_kinds().get(node.name, set())
        return " or ".join(sorted(kinds)) if kinds and "VARCHAR" not in kinds else None
    kind = annotate_types(node.copy(), dialect=DIALECT).type
    if kind is None or kind.is_type(*exp.DataType.TEXT_TYPES, exp.DataType.Type.UNKNOWN,
                                    exp.DataType.Type.NULL):
        return None
    return kind.sql(DIALECT)


def _named_steps(tree: exp.Expression, scope: Scope) -> Scope:
    """The scope with the statement's WITH steps as tables, each checked over the sources
    and the steps before it (a name used before it is defined would be a database table)."""
    steps = list(tree.find_all(exp.With))
    if not steps:
        return scope
    outer = steps[0]
    if len(steps) > 1 or outer.parent is not tree:
        with _at(steps[-1]):
            raise ExpressionError("WITH goes once, at the start of the query")
    if outer.args.get("recursive"):
        with _at(outer):
            raise ExpressionError("WITH RECURSIVE is not allowed: a rule's steps run once")
    tables = dict(scope.tables)
    for cte in outer.expressions:
        with _at(cte):
            # Engines match names in any case: `Settlements` would hide the source, and
            # Spark lifts the steps beside the compiler's own.
            if cte.alias.lower() in {name.lower() for name in {*tables, *scope.reserved}}:
                raise ExpressionError(f"a step may not be named {cte.alias!r}: a source, a "
                                      "step before it or the compiler has that name; name "
                                      "it after what it holds")
            check(cte.this, Scope({}, dict(tables), scope.params, aggregates=True), True)
        tables[cte.alias] = _output_columns(cte.this, tables)
    return Scope(scope.columns, tables, scope.params, scope.aggregates, scope.reserved)


def _output_columns(query: exp.Expression, tables: dict[str, set[str]]) -> set[str]:
    """The names a SELECT (the first of a UNION) gives its rows."""
    while isinstance(query, (exp.Union, exp.Subquery)):
        query = query.this
    names: set[str] = set()
    for item in query.expressions:
        if not isinstance(item, exp.Star) and not (isinstance(item, exp.Column)
                                                   and isinstance(item.this, exp.Star)):
            names.add(item.alias_or_name)
            continue
        qualifier = item.table if isinstance(item, exp.Column) else ""  # t.* or *
        for alias, cols in _from_sources(query, tables).items():
            if qualifier in ("", alias):
                names |= cols
    return names


def _check_unit(word: str) -> None:
    if word.upper() not in _UNITS:
        raise ExpressionError(f"{word!r} is not a date or time unit (year, month, day, hour, "
                              "minute, second, …; a unit is written out, never a :parameter)")


def _from_sources(select: exp.Expression, tables: dict[str, set[str]]) -> dict[str, set[str]]:
    """What a SELECT's FROM and JOINs name, by alias, with their columns."""
    found: dict[str, set[str]] = {}
    parts = [select.args.get("from_"), *select.args.get("joins", [])]
    for part in filter(None, parts):
        source = part.this
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            found[source.alias_or_name] = tables.get(source.name, set())
        elif isinstance(source, exp.Subquery):
            found[source.alias] = _output_columns(source.this, tables)
    return found


def _check_node(node: exp.Expression, scope: Scope, statement: bool) -> None:
    """One node: on the allow-list, and naming only what the scope offers."""
    if isinstance(node, _ALLOWED_FUNCTIONS):
        if isinstance(node, exp.Extract) and isinstance(node.this, exp.Literal):
            _check_unit(node.this.name)  # EXTRACT('year' FROM x): written unquoted
        in_subquery = _inside_subquery(node)
        if isinstance(node, _AGGREGATES) and not scope.aggregates and not in_subquery:
            raise ExpressionError(
                f"aggregate {node.sql(DIALECT)!r} is not allowed here: aggregates go in "
                "measures, and a having names them (measures: {total: sum(amount)}, "
                "having: total > 0)")
        return
    _refuse_shape(node)
    if statement and isinstance(node, _STATEMENT_NODES):
        if isinstance(node, exp.WindowSpec) and node.args.get("kind", "").upper() == "ROWS":
            raise ExpressionError("a ROWS frame counts rows, and rows that tie come in no "
                                  "fixed order: use RANGE (or the window kind)")
        if isinstance(node, exp.Order) and not isinstance(node.parent, exp.Window):
            raise ExpressionError("ORDER BY: a query's rows are hits, in no order (the "
                                  "leads are ranked by the report)")
        return
    if isinstance(node, _WINDOW_ONLY) and statement and isinstance(node.parent, exp.Window):
        return
    if isinstance(node, exp.Window):
        raise ExpressionError(
            f"{node.sql(DIALECT)!r}: a window function (… OVER …) is allowed only in the "
            "query kind's sql: compare a row with its neighbours with the sequence or window "
            "kind, or write the rule as a query")
    if type(node) in _BY_PLACE:
        raise ExpressionError(
            f"function {_BY_PLACE[type(node)]}() is not allowed: it picks a row by its place, "
            "and rows that tie come in no fixed order, so a run could give other leads "
            "(use the sequence or window kind, or rank())")
    if isinstance(node, exp.Func) and not isinstance(node, _ALLOWED_NODES):
        # As DuckDB spells it (what the analyst wrote, mostly), not sqlglot's class
        # name; an operator (->>) by its class.
        spelled = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?=\()", node.sql(DIALECT))
        name = node.name if isinstance(node, exp.Anonymous) else \
            spelled.group(0) if spelled else node.sql_name()
        raise ExpressionError(_not_allowed(name))
    if not isinstance(node, _ALLOWED_NODES):
        if isinstance(node, (exp.IgnoreNulls, exp.RespectNulls)):  # any_value(x) is one
            _check_node(node.this, scope, statement)  # a refused function, by its name
        raise ExpressionError(
            f"{type(node).__name__} ({node.sql(DIALECT)!r}) is not allowed in rule expressions"
        )
    if isinstance(node, exp.Var):
        _check_unit(node.name)
    if isinstance(node, exp.DataTypeParam) and not (
            isinstance(node.this, exp.Literal) and node.this.name.isdigit()):
        raise ExpressionError(f"a type's parameters are whole numbers (DECIMAL(16, 2)), not "
                              f"{node.this.sql(DIALECT)!r}")
    if isinstance(node, exp.DataType) and node.this not in _ALLOWED_TYPES:
        raise ExpressionError(
            f"type {node.sql(DIALECT)} is not allowed in rule expressions (allowed: "
            "VARCHAR, INTEGER, BIGINT, DECIMAL(p, s), DOUBLE, DATE, TIMESTAMP, BOOLEAN)")
    if isinstance(node, exp.Placeholder) and node.name not in scope.params:
        raise ExpressionError(
            f"unknown parameter :{node.name}{suggest(node.name, scope.params)}"
        )
    if isinstance(node, exp.Literal) and node.is_string:
        # ':categories' is compared as that text: the rule runs and matches nothing.
        quoted = next((name for name in re.findall(r"(?<!\w):([A-Za-z_]\w*)", node.this)
                       if name in scope.params), None)
        if quoted:
            raise ExpressionError(f"{node.sql(DIALECT)} is text, not the parameter "
                                  f":{quoted}: write :{quoted} without quotes")
    if isinstance(node, exp.Table):
        _check_table(node, scope)
    if not statement and (isinstance(node, (exp.Alias, exp.Select)) or (
            isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count))) \
            and node.find_ancestor(exp.Subquery, exp.Exists, exp.In) is None:
        # An expression is a value: `amount AS x`, `SELECT …` or `*` on their own
        # (a stray ；, say, reads as an alias) belong in no rule field.
        raise ExpressionError(f"{node.sql(DIALECT)!r} is not a value; write an expression "
                              "(a SELECT only inside EXISTS (…) or IN (…))")


def _refuse_shape(node: exp.Expression) -> None:
    """Allowed nodes in a form whose answer is not fixed, or that Spark cannot run."""
    if isinstance(node, exp.Distinct) and node.args.get("on"):
        raise ExpressionError("DISTINCT ON keeps one row of each group, and which one is "
                              "not fixed: GROUP BY and pick with min, max or arg_min")
    if isinstance(node, exp.Join) and node.args.get("method"):
        raise ExpressionError(f"{node.args['method'].upper()} JOIN is not allowed: write "
                              "JOIN … ON and name the columns")
    if isinstance(node, exp.Union) and node.args.get("by_name"):
        raise ExpressionError("UNION BY NAME is not allowed: give each SELECT the same "
                              "columns in the same order")


def outside_aggregates(tree: exp.Expression) -> set[str]:
    """Columns an expression reads outside any aggregate (and any subquery)."""
    return {c.name for c in tree.find_all(exp.Column)  # FILTER (WHERE …) is the aggregate's
            if c.find_ancestor(*_AGGREGATES, exp.Filter, exp.Select) is None}


def _inside_subquery(node: exp.Expression) -> bool:
    return node.find_ancestor(exp.Select) is not None


def _not_allowed(function: str) -> str:
    return (f"function {function.lower()}() is not allowed in rule expressions "
            f"(allowed: {', '.join(sorted(_function_names()))})")


def _function_names() -> set[str]:
    """The allowed functions as a rule writes them."""
    return {takes.call.split("(")[0] for takes in _FUNCTIONS.values()}


def _check_table(node: exp.Table, scope: Scope) -> None:
    if isinstance(node.this, exp.Func):
        name = node.this.name if isinstance(node.this, exp.Anonymous) else node.this.sql_name()
        raise ExpressionError(f"table function {name.lower()}() is not allowed: "
                              "a rule reads only rule sources, never files")
    if node.args.get("db") or node.args.get("catalog") or not isinstance(node.this, exp.Identifier):
        raise ExpressionError(f"table reference {node.sql(DIALECT)!r} is not allowed")
    if node.name not in scope.tables:
        raise ExpressionError(
            f"unknown source {node.name!r} in subquery{suggest(node.name, set(scope.tables))}"
            f" (sources: {', '.join(sorted(scope.tables))})"
        )


def _check_columns(tree: exp.Expression, scope: Scope) -> None:
    for column in tree.find_all(exp.Column):
        if not isinstance(column.this, exp.Star):
            with _at(column):
                _check_column(column, scope)


def _check_column(column: exp.Column, scope: Scope) -> None:
    visible = dict(scope.columns)
    select = column.find_ancestor(exp.Select)
    inner: set[str] = set()
    while select is not None:  # subquery aliases shadow nothing but add names
        for alias, cols in _from_sources(select, scope.tables).items():
            visible[alias] = cols
            visible[""] = visible.get("", set()) | cols
            inner |= cols
        # A WITH step or a subquery in FROM sees only its own FROM, not the query around it.
        own = select.parent.parent if isinstance(select.parent, exp.Subquery) else None
        if isinstance(select.parent, exp.CTE) or isinstance(own, (exp.From, exp.Join)):
            break
        select = select.find_ancestor(exp.Select)
    qualifier = column.table
    if not qualifier and column.name in inner and column.name in scope.columns.get("", ()):
        # SQL binds it to the subquery's table, which an analyst comparing with the
        # rule's own row (p.person_id = person_id) does not expect: every row matches.
        table = next((t.name for t in column.find_ancestor(exp.Select).find_all(exp.Table)
                      if column.name in scope.tables.get(t.name, ())), "…")
        raise ExpressionError(
            f"{column.name!r} inside the subquery is its own table's column (SQL reads it "
            f"so), not the rule row's: name the table with an alias and qualify its "
            f"columns, comparing with the row's as {column.name} IN (SELECT t.{column.name} "
            f"FROM {table} AS t WHERE t.…)")
    if qualifier not in visible:
        raise ExpressionError(
            f"unknown qualifier {qualifier!r} in {column.sql(DIALECT)!r}"
            f"{suggest(qualifier, set(visible) - {''})}"
        )
    names = visible[qualifier]
    if column.name not in names:
        quoted = column.this.args.get("quoted") and not suggest(column.name, names)
        hint = (f"; text goes in single quotes: '{column.name}'" if quoted
                else _elsewhere(column.name, names, scope) or suggest(column.name, names))
        raise ExpressionError(f"unknown column {column.sql(DIALECT)!r}{hint}")


def _elsewhere(name: str, names: set[str], scope: Scope) -> str:
    """Which contract tables have a column the row lacks (``gender`` in a settlements
    rule), and how to bring it in from one with a row per key the row holds: a lookup
    where the expression reads the detection's rows, a join in a query."""
    holders = [t for t in INPUT_TABLES.values() if name in {c.name for c in t.columns}]
    if not holders:
        return ""
    keyed = next((t for t in holders if len(t.key) == 1 and t.key[0] in names), None)
    where = f"; {name!r} is a column of {' and '.join(t.name for t in holders)}, not of this row"
    key = keyed and keyed.key[0]
    if key and "" not in scope.columns:  # a query's SELECT
        return (f"{where}: join it, as JOIN {keyed.name} AS t ON t.{key} = s.{key} (s: the "
                f"alias of the table you read), then use t.{name}")
    if key and scope.rows:
        return (f"{where}: bring it in with a lookup, lookups: {{{name}: {{source: "
                f"{keyed.name}, on: [{key}], value: max({name})}}}}, then use {name}")
    return where


def sql_string(text: str) -> str:
    """``text`` as a quoted SQL string literal, for the few statements the engine and the
    store build themselves (file paths, settings) — never for a rule's values."""
    return exp.Literal.string(text).sql("duckdb")


def literal(value: ParamValue) -> exp.Expression:
    """A typed SQL literal node for a parameter value (the binding step)."""
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, (float, Decimal)):
        number = Decimal(str(value))
        scale = max(0, -number.as_tuple().exponent)
        return exp.cast(exp.Literal.string(format(number, "f")),
                        exp.DataType.build(f"DECIMAL({min(38, 18 + scale)},{scale})"))
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise ExpressionError(f"parameter value {value!r} cannot be bound here")


def bind(tree: exp.Expression, values: dict[str, ParamValue]) -> exp.Expression:
    """Replace every ``:name`` with its value; a list fills an ``IN (:name)``. And settle
    ties: ``arg_min(x, y)`` picks among rows that tie on ``y`` in no fixed order, so the
    value breaks the tie (``_settled``) — the same answer wherever there was one. And
    spell out ``with_name``, which no engine has."""

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, WithName):  # its arguments are bound inside the CASE
            return node.spelled_out().transform(replace, copy=False)
        if isinstance(node, exp.Interval) and isinstance(node.this, exp.Paren) and isinstance(
                node.this.this, exp.Placeholder):
            # INTERVAL (:n) YEAR as INTERVAL :n YEAR: Spark reads no parenthesised count
            node.set("this", node.this.this)
            return node
        if isinstance(node, (exp.ArgMin, exp.ArgMax)):
            node.set("expression", _settled(node))
            return node
        if isinstance(node, exp.In):
            items = node.expressions
            if len(items) == 1 and isinstance(items[0], exp.Placeholder):
                value = values[items[0].name]
                seq = value if isinstance(value, list) else [value]
                if not seq:
                    return exp.false() if not node.args.get("not") else exp.true()
                node.set("expressions", [literal(v) for v in seq])
            return node
        if isinstance(node, exp.Placeholder):
            value = values[node.name]
            if isinstance(value, list):
                raise ExpressionError(
                    f"list parameter :{node.name} can only be used as IN (:{node.name})"
                )
            return literal(value)
        return node

    return tree.copy().transform(replace)


def _settled(node: exp.ArgMin | exp.ArgMax) -> exp.Expression:
    """``arg_min(x, y)``'s ordering with the value itself as the last tie-break, and NULL
    (the row takes no part) where ``x`` or ``y`` is NULL: DuckDB's arg_min skips a row
    whose ``x`` is NULL, Spark's min_by answered that NULL."""
    order, value = node.expression, node.this
    keys = order.expressions if isinstance(order, exp.Tuple) else [order]
    settled = order if keys[-1] == value else exp.Tuple(expressions=[*keys, value.copy()])
    known = [value] if isinstance(order, exp.Tuple) else [value, order]  # a tuple is never NULL
    return exp.Case(ifs=[exp.If(this=exp.and_(*(exp.Not(this=exp.Is(
        this=k.copy(), expression=exp.Null())) for k in known)), true=settled)])


def columns_used(tree: exp.Expression, qualifier: str = "") -> set[str]:
    """Names of the columns an expression reads with a given qualifier."""
    return {c.name for c in tree.find_all(exp.Column) if c.table == qualifier}
