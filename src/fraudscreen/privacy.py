"""Privacy profiles: what the lead lists and the report may show about people.

=============  ==============================================================
profile        keeps
=============  ==============================================================
full           everything, as screened
investigator   person ids and messages; evidence fields that name a birth date
               or an age are dropped (the shipped rules have none)
public         institution, settlement and item ids, amounts, messages; every
               person id (column, message text, evidence) is replaced by a
               pseudonym ``P`` + 16 hex of HMAC-SHA256(site secret, id), and every
               suspicion id by ``S`` + 20 hex of HMAC-SHA256(site secret, id) (a
               plain id hashes the rule's key, which may hold the person id);
               evidence fields that name a person's name, birth date, age,
               certificate number, phone or address are dropped
=============  ==============================================================

A dropped evidence field's value is also masked (``＊＊``) wherever it appears as
a whole word in that suspicion's message. The pseudonym is keyed: the same id and
the same site secret always give the same pseudonym, so leads stay linkable across
runs of one site, while nobody without the secret can test a guessed id.

Under ``public`` an error's message (a failed rule's reason, a failed night's
``error``) is not shown, only its kind: ``shown_error``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re

import polars as pl

PROFILES = ("full", "investigator", "public")
SECRET_ENV = "FRAUDSCREEN_SITE_SECRET"
MASK = "＊＊"
WITHHELD = ("message withheld under --profile public (it can quote the data); "
            "stderr, the run's log, has it")

# A "word" for id replacement: ids are matched only as whole runs of these
# characters, so P1 is never replaced inside P10 or inside an institution id.
_WORD = r"[0-9A-Za-z_\-]"
_PIECES = rf"{_WORD}+|[^0-9A-Za-z_\-]+"
_WHOLE_WORD = re.compile(rf"^{_WORD}+$")

_BIRTH = r"birth|brdy|(^|_)age($|_)|^ages?$|出生|年龄"
_NAME = r"^name$|^(psn|person|patient|insured|member)_?name$|姓名"
_IDENTITY = (r"certno|cert_no|id_?card|id_?no$|id_?number|身份证|证件号"
             r"|phone|mobile|tel$|addr|住址|电话")
DROPPED_KEYS: dict[str, re.Pattern | None] = {
    "full": None,
    "investigator": re.compile(_BIRTH, re.IGNORECASE),
    "public": re.compile(f"{_BIRTH}|{_NAME}|{_IDENTITY}", re.IGNORECASE),
}


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")


def site_secret(secret: str | None = None) -> str:
    """The pseudonymisation key: the argument, else ``$FRAUDSCREEN_SITE_SECRET``."""
    secret = secret if secret is not None else os.environ.get(SECRET_ENV)
    if not secret:
        raise ValueError(
            f"profile 'public' pseudonymises person ids with a site secret: set {SECRET_ENV} "
            "(a long random string kept by the site; the same secret gives the same "
            "pseudonyms in every run)")
    return secret


def pseudonym(person_id: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), person_id.encode("utf-8"), hashlib.sha256)
    return "P" + digest.hexdigest()[:16]


def public_suspicion_id(suspicion_id: str, secret: str) -> str:
    """A suspicion's id as a public output shows it. The plain id is SHA-256 of the rule's
    key: given the ids beside it (settlement, item), anyone could test a guessed person
    id against it. Keyed, it stays stable per site and tells nothing."""
    digest = hmac.new(secret.encode("utf-8"), suspicion_id.encode("utf-8"), hashlib.sha256)
    return "S" + digest.hexdigest()[:20]


def shown_error(message: str, kind: str, profile: str) -> str:
    """An error's message as an output of ``profile`` shows it. A message is written for
    the operator and quotes what the error met: a header that was a person's record, a
    value a rule could not convert, a file's name. No pattern tells those apart from
    the rest of the text, so a public output shows only the error's ``kind`` (an
    exception's class name, ``stopped``); stderr, the site's own log, has the message."""
    return f"{kind}: {WITHHELD}" if profile == "public" else message


def shown_rule(rule: dict, profile: str) -> dict:
    """A rule's entry in run.json (``runner.outcome_doc``) as ``profile`` shows it: a
    failed rule's reason is an error's message (an engine's, quoting the value it could
    not convert). report.html reads the entries from run.json, which ``fraudscreen
    report --profile public`` may take from a full run, so both apply this."""
    if rule.get("status") != "failed":
        return rule
    return {**rule, "reason": shown_error(rule.get("reason") or "",
                                          rule.get("error_kind") or "error", profile)}


def apply_profile(suspicions: pl.DataFrame, profile: str,
                  secret: str | None = None) -> pl.DataFrame:
    """The suspicions as ``profile`` may show them (same schema, same rows, same order)."""
    check_profile(profile)
    if profile == "full" or suspicions.is_empty():
        if profile == "public":
            site_secret(secret)  # a public run without a secret is an error, data or not
        return suspicions
    frame = _drop_evidence_fields(suspicions, DROPPED_KEYS[profile])
    if profile == "public":
        frame = pseudonymise(frame, site_secret(secret))
    return frame


def pseudonymise(frame: pl.DataFrame, secret: str,
                 texts: tuple[str, ...] = ("message", "evidence")) -> pl.DataFrame:
    """``frame`` (any table with ``suspicion_id`` and ``person_id``, such as a night's
    changes) with its person and suspicion ids replaced, also inside ``texts``."""
    # One HMAC per distinct person, never per suspicion.
    ids = frame.get_column("person_id").drop_nulls().unique().sort().to_list()
    mapping = {pid: pseudonym(pid, secret) for pid in ids}
    words = {k: v for k, v in mapping.items() if _WHOLE_WORD.match(k)}
    others = sorted((k for k in mapping if k not in words), key=len, reverse=True)

    def in_text(col: str) -> pl.Expr:
        expr = (pl.col(col).str.extract_all(_PIECES)
                .list.eval(pl.element().replace(words)).list.join(""))
        if others:  # ids with unusual characters: literal, longest first
            expr = expr.str.replace_many(others, [mapping[k] for k in others])
        return pl.when(pl.col(col).is_null()).then(None).otherwise(expr)

    ids = {s: public_suspicion_id(s, secret) for s in frame.get_column("suspicion_id")}
    return frame.with_columns(
        pl.col("suspicion_id").replace_strict(ids),
        pl.col("person_id").replace(mapping),
        *(in_text(col).alias(col) for col in texts),
    )


def _drop_evidence_fields(frame: pl.DataFrame, pattern: re.Pattern | None) -> pl.DataFrame:
    if pattern is None:
        return frame
    # Only rows whose evidence has a matching key are parsed (usually none).
    keys = frame.get_column("evidence").str.extract_all(r'"((?:[^"\\]|\\.)*)"\s*:')
    hit = keys.list.eval(pl.element().str.contains("(?i)" + pattern.pattern)).list.any()
    if not hit.fill_null(False).any():
        return frame
    scrubbed = frame.filter(hit.fill_null(False)).select(
        "suspicion_id",
        pl.struct("message", "evidence").map_elements(
            lambda row: _scrub(row["message"], row["evidence"], pattern),
            return_dtype=pl.Struct({"message": pl.String, "evidence": pl.String}),
        ).alias("_s"),
    ).unnest("_s")
    return frame.update(scrubbed, on="suspicion_id")


def _scrub(message: str, evidence: str, pattern: re.Pattern) -> dict:
    doc = json.loads(evidence)
    if not isinstance(doc, dict):
        return {"message": message, "evidence": evidence}
    dropped = [v for k, v in doc.items() if pattern.search(k)]
    kept = {k: v for k, v in doc.items() if not pattern.search(k)}
    for value in dropped:
        for text in _texts(value):
            message = re.sub(rf"(?<![0-9A-Za-z_\-]){re.escape(text)}(?![0-9A-Za-z_\-])",
                             MASK, message)
    return {"message": message,
            "evidence": json.dumps(kept, ensure_ascii=False, separators=(",", ":"))}


def _texts(value) -> list[str]:
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    if value is None or isinstance(value, bool):
        return []
    text = str(value)
    return [text] if text else []
