"""Classifying columns as personal data (PII) by what they hold, on a sample of each file.

Every test is a vectorised polars string expression over the sampled values (no Python loop
over rows). A column's score for a category is the share of its sampled non-null, non-empty
values that match; the column takes the category with the highest score that reaches the
category's threshold (ties: card_number, email, phone, name):

- `email` (>= 0.8): `local@domain.tld`;
- `phone` (>= 0.8): digit groups split by spaces, dots, dashes or a bracketed area code, with
  10-15 digits (8-15 after a leading `+`); IP addresses and decimals are not phones. Runs of
  10-15 bare digits count only when the column name says phone/mobile/tel/cell/fax;
- `card_number` (>= 0.8): 13-19 digits, optionally in space- or dash-separated groups, that pass
  the Luhn check (random digit strings pass it one time in ten, far below the threshold);
- `name` (>= 0.7, names are messier): one to four capitalised words (particles such as `van`
  or `de` allowed), AND a column name that suggests a person (name, first_name, customer, ...)
  without naming a thing (`name_of_product`, `customer_id`, `city_name` are not people).

A column of no category reports as confidence the share of values matching no PII test.
A column name alone never makes a column PII: the content must reach the threshold. Only text
and integer columns are examined (integers as their decimal text); other types, and nested
values, are reported as `none`. Evidence holds counts only, never a sampled value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from agents.base.actions import AgentError
from agents.base.storage import DataRoot
from agents.base.tabular.detection import Detection, detect
from agents.base.tabular.inputs import local_copy, scratch_dir
from agents.base.tabular.readers import CSV_INFER_ROWS, open_lazy
from agents.base.tabular.schema import type_name
from agents.base.tabular.text import eol_of, to_utf8

Category = Literal["email", "phone", "card_number", "name", "none"]
# Order breaks ties between equal scores: the stricter test first.
CATEGORIES: tuple[Category, ...] = ("card_number", "email", "phone", "name")
THRESHOLDS: dict[str, float] = {"card_number": 0.8, "email": 0.8, "phone": 0.8, "name": 0.7}

EMAIL_RE = (
    r"^[A-Za-z0-9._%+'\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}$"
)
_PHONE_GROUPED = r"^(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?\d{1,5}(?:[ .\-]\d{1,5}){1,5}$"
_PHONE_INTERNATIONAL = r"^\+\d{8,15}$"
_PHONE_BARE = r"^\d{10,15}$"
_IP_ADDRESS = r"^\d{1,3}(?:\.\d{1,3}){3}$"
_DECIMAL = r"^[+-]?\d+\.\d+$"
_CARD_SHAPE = r"^\d[\d \-]*\d$"
_NAME_WORD = r"\p{Lu}[\p{Ll}'’\-]*(?:\p{Lu}[\p{Ll}'’\-]*)?\.?"
_PARTICLE = r"(?:van|von|der|den|de|da|di|du|del|della|la|le|bin|ibn|al|el|dos|das|ter|ten|y)"
NAME_RE = rf"^{_NAME_WORD},?(?: (?:{_PARTICLE} )*{_NAME_WORD}){{0,3}}$"


# Column-name tokens that suggest a person, and tokens that say the name is of something else.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PERSON_HINTS = _words(
    "name names fullname firstname lastname surname forename givenname middlename familyname "
    "customer client contact person cardholder holder owner employee patient recipient sender "
    "user author passenger guest member applicant beneficiary payee signatory"
)
_NOT_A_PERSON = _words(
    "product item sku file filename host hostname server company org organisation organization "
    "business brand store shop city town country street region state table column field app "
    "application service dataset event category project team department dept model device bank "
    "merchant vendor supplier domain site page path campaign plan package label tag id ids uuid "
    "key code type kind status segment tier group class level count number num no ref reference "
    "url email mail phone tel mobile address zip postcode"
)
_PHONE_HINTS = _words("phone telephone tel mobile cell cellphone fax msisdn")


def name_tokens(column: str) -> set[str]:
    """The lower-case words of a column name (`firstName`, `first_name`, `First Name`)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", column)
    return {t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t}


def person_hint(column: str) -> bool:
    """Whether the column name suggests a person's name (and not the name of a thing)."""
    tokens = name_tokens(column)
    return bool(tokens & _PERSON_HINTS) and not tokens & _NOT_A_PERSON


def phone_hint(column: str) -> bool:
    """Whether the column name suggests phone numbers."""
    return bool(name_tokens(column) & _PHONE_HINTS)


def text_of(column: str, dtype: pl.DataType) -> pl.Expr | None:
    """The column as stripped text, for text and integer columns; None for other types."""
    if isinstance(dtype, pl.String):
        return pl.col(column).str.strip_chars()
    if isinstance(dtype, pl.Categorical | pl.Enum) or dtype.is_integer():
        return pl.col(column).cast(pl.String).str.strip_chars()
    return None


def digits_of(text: pl.Expr) -> pl.Expr:
    """Only the digits of `text`."""
    return text.str.replace_all(r"\D", "")


def is_email(text: pl.Expr) -> pl.Expr:
    """Values shaped like an email address."""
    return text.str.contains(EMAIL_RE).fill_null(False)


def is_phone(text: pl.Expr, *, hinted: bool) -> pl.Expr:
    """Values shaped like a phone number (bare digit runs only when the column name says so)."""
    digits = text.str.count_matches(r"\d")
    grouped = (
        text.str.contains(_PHONE_GROUPED)
        & ~text.str.contains(_IP_ADDRESS)
        & ~text.str.contains(_DECIMAL)
        & (digits.is_between(10, 15) | (text.str.starts_with("+") & digits.is_between(8, 15)))
    )
    phone = grouped | text.str.contains(_PHONE_INTERNATIONAL)
    if hinted:
        phone = phone | text.str.contains(_PHONE_BARE)
    return phone.fill_null(False)


def is_card_number(text: pl.Expr) -> pl.Expr:
    """13-19 digits (optionally grouped by spaces or dashes) that pass the Luhn check."""
    compact = text.str.replace_all(r"[ \-]", "")
    shaped = (
        text.str.contains(_CARD_SHAPE)
        & compact.str.contains(r"^\d{13,19}$")
        & ~compact.str.contains(r"^0+$")
    )
    # Luhn: from the right, every second digit is doubled (its digits summed); total % 10 == 0.
    reversed_digits = (
        pl.when(shaped)
        .then(compact)
        .str.reverse()
        .str.split("")
        .list.eval(pl.element().cast(pl.Int32))
    )
    kept = reversed_digits.list.gather_every(2, 0).list.sum()
    doubled = (
        reversed_digits.list.gather_every(2, 1)
        .list.eval((pl.element() * 2) // 10 + (pl.element() * 2) % 10)
        .list.sum()
    )
    return (shaped & ((kept + doubled) % 10 == 0)).fill_null(False)


def looks_like_name(text: pl.Expr) -> pl.Expr:
    """Values made of one to four capitalised words."""
    return text.str.contains(NAME_RE).fill_null(False)


@dataclass
class ColumnStats:
    """Match counts of one column over the sampled values of every file."""

    column: str
    dtype: str
    examined: bool
    values: int = 0
    matches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    any_pii: int = 0

    def add(self, other: ColumnStats) -> None:
        """Add another file's counts for the same column."""
        self.examined = self.examined or other.examined
        self.values += other.values
        self.any_pii += other.any_pii
        for category, count in other.matches.items():
            self.matches[category] += count


def column_stats(sample: pl.DataFrame) -> list[ColumnStats]:
    """Match counts for every column of `sample`, computed in one vectorised pass."""
    exprs: list[pl.Expr] = []
    stats: list[ColumnStats] = []
    for index, (column, dtype) in enumerate(sample.schema.items()):
        text = text_of(column, dtype)
        stats.append(ColumnStats(column, type_name(dtype), examined=text is not None))
        if text is None:
            continue
        present = text.is_not_null() & (text.str.len_chars() > 0)
        hinted_name = person_hint(column)
        tests = {
            "card_number": is_card_number(text),
            "email": is_email(text),
            "phone": is_phone(text, hinted=phone_hint(column)),
            "name": looks_like_name(text),
        }
        exprs.append(present.sum().alias(f"{index}|values"))
        for category, test in tests.items():
            exprs.append((present & test).sum().alias(f"{index}|{category}"))
        # A name-shaped value only counts as personal data in a column named for a person.
        counted = [t for c, t in tests.items() if c != "name" or hinted_name]
        exprs.append((present & pl.any_horizontal(counted)).sum().alias(f"{index}|any"))
    if not exprs:
        return stats
    row = sample.select(exprs).row(0, named=True)
    for index, stat in enumerate(stats):
        if not stat.examined:
            continue
        stat.values = int(row[f"{index}|values"])
        stat.any_pii = int(row[f"{index}|any"])
        stat.matches = {c: int(row[f"{index}|{c}"]) for c in CATEGORIES}
    return stats


def merge_stats(per_file: Iterable[list[ColumnStats]]) -> list[ColumnStats]:
    """One ColumnStats per column over all files, in first-seen column order."""
    merged: dict[str, ColumnStats] = {}
    for stats in per_file:
        for stat in stats:
            if stat.column in merged:
                merged[stat.column].add(stat)
            else:
                merged[stat.column] = stat
    return list(merged.values())


def classify_column(stat: ColumnStats) -> dict[str, Any]:
    """`{column, pii, category, confidence, evidence}` for one column's counts."""
    hinted = person_hint(stat.column)
    evidence: dict[str, Any] = {
        "type": stat.dtype,
        "sampled_values": stat.values,
        "matches": dict(stat.matches),
        "name_hint": hinted,
    }
    if not stat.examined or stat.values == 0:
        reason = "no non-empty values in the sample" if stat.examined else "not a text column"
        return _result(stat.column, "none", 0.0, {**evidence, "reason": reason})
    scores = {c: stat.matches[c] / stat.values for c in CATEGORIES}
    reached = [c for c in CATEGORIES if scores[c] >= THRESHOLDS[c] and (c != "name" or hinted)]
    if reached:
        category = max(reached, key=lambda c: scores[c])  # max keeps the first of equal scores
        share = scores[category]
        reason = (
            f"{stat.matches[category]} of {stat.values} sampled values match {category} "
            f"(threshold {THRESHOLDS[category]:.0%})"
        )
        if category == "name":
            reason += " and the column name suggests a person"
        return _result(stat.column, category, share, {**evidence, "reason": reason})
    best = max(CATEGORIES, key=lambda c: scores[c])
    if scores["name"] >= THRESHOLDS["name"] and not hinted:
        reason = "values look like capitalised words but the column name does not name a person"
    elif hinted and scores["name"] < THRESHOLDS["name"]:
        reason = (
            f"the column name suggests a person but only {scores['name']:.0%} of values "
            "look like names"
        )
    elif scores[best] > 0:
        reason = f"at most {scores[best]:.0%} of values match {best}, below the threshold"
    else:
        reason = "no value matches a personal-data pattern"
    confidence = 1 - stat.any_pii / stat.values
    return _result(stat.column, "none", confidence, {**evidence, "reason": reason})


def _result(column: str, category: Category, confidence: float, evidence: dict) -> dict:
    return {
        "column": column,
        "pii": category != "none",
        "category": category,
        "confidence": round(confidence, 4),
        "evidence": evidence,
    }


def open_input(
    local: str,
    detection: Detection,
    work: str,
    *,
    text_columns: Collection[str] | Literal["all"] = (),
    infer_rows: int | None = CSV_INFER_ROWS,
) -> pl.LazyFrame:
    """A lazy frame over `local`; CSV/TSV columns in `text_columns` are read as written.

    Reading delimited text as text keeps a phone's leading zero and makes a value hash the
    same whether it came from CSV or from Parquet.
    """
    if detection.format not in ("csv", "tsv"):
        return open_lazy(local, detection, work)
    dialect = detection.dialect
    assert dialect is not None
    typing: dict[str, Any] = (
        {"infer_schema": False}
        if text_columns == "all"
        else {
            "infer_schema_length": infer_rows,
            "schema_overrides": dict.fromkeys(text_columns, pl.String),
        }
    )
    return pl.scan_csv(
        to_utf8(local, detection.encoding, work),
        separator=dialect.delimiter,
        quote_char=dialect.quotechar or None,
        has_header=dialect.header,
        eol_char=eol_of(detection),
        encoding="utf8",
        **typing,
    )


def read_error(source_uri: str, exc: BaseException) -> AgentError:
    """A parse error that names the file and the failure type but quotes no value from it."""
    return AgentError(
        f"cannot read {source_uri!r} ({type(exc).__name__}); convert it to Parquet first",
        code="parse_error",
    )


def sample_file(
    location: str, *, source_uri: str, root: DataRoot, rows: int
) -> tuple[list[str], list[ColumnStats]]:
    """The columns of one file and the match counts of its first `rows` rows (blocking)."""
    with scratch_dir(root) as work, local_copy(location, work) as local:
        if os.path.getsize(local) == 0:
            raise AgentError(f"{source_uri!r} is empty", code="empty_input")
        detection = detect(local, "auto")
        try:
            lf = open_input(local, detection, work, text_columns="all")
            columns = lf.collect_schema().names()
            sample = lf.head(rows).collect()
        except pl.exceptions.PolarsError as exc:
            raise read_error(source_uri, exc) from exc
        return columns, column_stats(sample)


def classify_files(
    files: list[tuple[str, str]], *, root: DataRoot, sample_rows: int
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Classify the columns of `(source_uri, location)` files; also each file's columns."""
    per_file = []
    columns: list[list[str]] = []
    for source_uri, location in files:
        names, stats = sample_file(location, source_uri=source_uri, root=root, rows=sample_rows)
        columns.append(names)
        per_file.append(stats)
    return [classify_column(s) for s in merge_stats(per_file)], columns


def classify_report(
    files: list[tuple[str, str]], *, root: DataRoot, sample_rows: int
) -> dict[str, Any]:
    """The `classify` action's result: every column's class and the PII columns' names."""
    classification, _ = classify_files(files, root=root, sample_rows=sample_rows)
    return {
        "columns": classification,
        "pii_columns": [c["column"] for c in classification if c["pii"]],
        "sample_rows": sample_rows,
        "thresholds": THRESHOLDS,
    }
