"""Protecting personal data before a merge: keyed hashing, masks, redaction, dropping columns.

- `hash`: HMAC-SHA256 (hex) of the value's text, keyed with a salt. Equal values give equal
  hashes across files and calls with the same salt, so joins and deduplication still work;
  without the salt, hashing a dictionary of likely values (emails, phones) finds nothing.
  Values are hashed exactly as written (no lower-casing or trimming); an integer column hashes
  its decimal text, so a card number read as int64 or as text hashes alike.
- `mask`: a recognisable shape with the identifying part hidden, by the column's category:
  `a***@example.com`, `**** **** **** 1234`, `***-***-1234`, `A*** L***` (names); values that
  do not fit the category, and columns of no category, keep only punctuation (`***-**`).
- `redact`: every non-null value becomes `[REDACTED]`.
- `drop`: the column is left out.

The salt is read from the environment variable named by `salt_env`, never from a body, and
appears in no output or error. Without `salt_env`, production refuses to hash; development
uses DEV_SALT, which is public (it is in this file) and therefore protects nothing.
"""

from __future__ import annotations

import hmac
import os
import posixpath
import re
from typing import Any, Literal

import polars as pl
import pyarrow.parquet as pq

from agents.base.actions import AgentError
from agents.base.quality.pii import (
    Category,
    classify_files,
    digits_of,
    is_email,
    open_input,
    read_error,
)
from agents.base.security import resolve_credential
from agents.base.settings import AgentSettings
from agents.base.storage import DataRoot, sha256_of
from agents.base.tabular.inputs import local_copy, publish, scratch_dir
from agents.base.tabular.readers import CSV_INFER_ROWS
from agents.base.tabular.schema import schema_names
from agents.data_converter.conversion import Compression, detect

Method = Literal["hash", "mask", "drop", "redact"]
DEV_SALT = "ingestion-platform-development-salt (public: not for production data)"
MIN_SALT_CHARS = 16
REDACTED = "[REDACTED]"
_RESCANNABLE = ("csv", "tsv", "ndjson")


class Hasher:
    """HMAC-SHA256 keyed with the salt; holds a keyed state, never the salt as text."""

    __slots__ = ("_keyed",)

    def __init__(self, salt: str) -> None:
        self._keyed = hmac.new(salt.encode(), digestmod="sha256")

    def __repr__(self) -> str:
        return "Hasher(<salt hidden>)"

    def hexdigest(self, value: str) -> str:
        """The keyed hash of one value."""
        mac = self._keyed.copy()
        mac.update(value.encode())
        return mac.hexdigest()

    def series(self, values: pl.Series) -> pl.Series:
        """A batch of text hashed, each distinct value once; nulls stay null."""
        distinct = values.drop_nulls().unique()
        hashed = pl.Series([self.hexdigest(v) for v in distinct.to_list()], dtype=pl.String)
        return values.replace_strict(distinct, hashed, default=None, return_dtype=pl.String)


def resolve_salt(salt_env: str | None, settings: AgentSettings) -> tuple[Hasher, dict[str, Any]]:
    """The hasher for `salt_env` and a description of the salt's source (never its value)."""
    if salt_env is None:
        if settings.environment == "production":
            raise AgentError(
                "salt_env: hashing in production needs a salt; set salt_env to the NAME of an "
                "environment variable holding it",
                code="salt_required",
                details={"field": "salt_env"},
            )
        return Hasher(DEV_SALT), {"source": "development_default"}
    salt = resolve_credential(salt_env, settings)  # names the variable, never the value
    if len(salt) < MIN_SALT_CHARS:
        raise AgentError(
            f"salt_env: the salt in {salt_env!r} is shorter than {MIN_SALT_CHARS} characters",
            code="salt_too_short",
            details={"field": "salt_env"},
        )
    return Hasher(salt), {"source": "env", "name": salt_env}


def mask_expr(column: str, category: Category) -> pl.Expr:
    """The column masked into a recognisable shape for its category."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    generic = text.str.replace_all(r"[\p{L}\p{N}]", "*")
    digits = digits_of(text)
    count = digits.str.len_chars()
    if category == "email":
        shaped = pl.concat_str(
            [text.str.slice(0, 1), pl.lit("***@"), text.str.extract(r"@([^@]+)$", 1)]
        )
        return pl.when(is_email(text)).then(shaped).otherwise(generic)
    if category == "card_number":
        shaped = pl.concat_str([pl.lit("**** **** **** "), digits.str.slice(-4)])
        return pl.when(count.is_between(13, 19)).then(shaped).otherwise(generic)
    if category == "phone":
        shaped = pl.concat_str([pl.lit("***-***-"), digits.str.slice(-4)])
        return pl.when(count >= 7).then(shaped).otherwise(generic)
    if category == "name":
        return text.str.replace_all(r"(\p{L})[\p{L}'’.\-]*", "${1}***").str.replace_all(
            r"\p{N}", "*"
        )
    return generic


def _protect_expr(
    column: str, dtype: pl.DataType, method: Method, category: Category, hasher: Hasher | None
) -> pl.Expr:
    if dtype.is_nested() or isinstance(dtype, pl.Binary | pl.Object):
        raise AgentError(
            f"columns.{column}: cannot {method} a {dtype} column; drop it instead",
            code="unsupported_column_type",
            details={"field": f"columns.{column}"},
        )
    if method == "hash":
        assert hasher is not None, "hashing needs a resolved salt"
        text = pl.col(column).cast(pl.String)
        return text.map_batches(hasher.series, return_dtype=pl.String, is_elementwise=True)
    if method == "redact":
        return pl.when(pl.col(column).is_not_null()).then(pl.lit(REDACTED))
    return mask_expr(column, category)


def protect_file(
    location: str,
    *,
    source_uri: str,
    root: DataRoot,
    target: str,
    methods: dict[str, Method],
    categories: dict[str, Category],
    hasher: Hasher | None,
    compression: Compression,
) -> dict[str, Any]:
    """Write `location` with its protected columns to Parquet at `target`; its manifest."""
    with scratch_dir(root) as work, local_copy(location, work) as local:
        detection = detect(local, "auto")
        out = os.path.join(work, "out.parquet")
        infer_rows: int | None = CSV_INFER_ROWS
        while True:
            try:
                lf = open_input(
                    local, detection, work, text_columns=list(methods), infer_rows=infer_rows
                )
                schema = lf.collect_schema()
                applied = {c: m for c, m in methods.items() if c in schema}
                columns = [
                    _protect_expr(c, dtype, applied[c], categories.get(c, "none"), hasher).alias(c)
                    if c in applied
                    else pl.col(c)
                    for c, dtype in schema.items()
                    if applied.get(c) != "drop"
                ]
                lf.select(columns).sink_parquet(out, compression=compression)
                break
            except pl.exceptions.PolarsError as exc:
                # Types guessed from the head of a text file failed further down: guess again
                # from the whole file (as convert does); a second failure is reported.
                if infer_rows is None or detection.format not in _RESCANNABLE:
                    raise read_error(source_uri, exc) from exc
                infer_rows = None
        metadata = pq.read_metadata(out)
        written = pl.read_parquet_schema(out)
        digest, size = sha256_of(out)
        publish(root, out, target)
    return {
        "uri": root.uri(target),
        "rows": metadata.num_rows,
        "bytes": size,
        "sha256": digest,
        "schema": schema_names(written),
        "source_uri": source_uri,
        "protected": applied,
    }


def output_name(index: int, uri: str) -> str:
    """A deterministic file name for the `index`-th input."""
    stem = posixpath.basename(uri.rstrip("/")).rsplit(".", 1)[0] or "file"
    return f"{index:04d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)[:80]}.parquet"


def protect_files(
    files: list[tuple[str, str]],
    *,
    root: DataRoot,
    out_dir: str,
    columns: dict[str, Method] | None,
    hasher: Hasher | None,
    sample_rows: int,
    compression: Compression,
) -> dict[str, Any]:
    """Classify `(source_uri, location)` files, then write each with its columns protected.

    Without `columns`, every column classified as PII is hashed.
    """
    classification, file_columns = classify_files(files, root=root, sample_rows=sample_rows)
    if columns is None:
        methods: dict[str, Method] = {c["column"]: "hash" for c in classification if c["pii"]}
    else:
        known = {name for names in file_columns for name in names}
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise AgentError(
                f"columns.{unknown[0]}: no input file has a column {unknown[0]!r}",
                code="unknown_column",
                details={"field": f"columns.{unknown[0]}", "unknown": unknown},
            )
        methods = dict(columns)
    if "hash" in methods.values() and hasher is None:
        raise AgentError("salt_env: hashing needs a salt", code="salt_required")
    categories = {c["column"]: c["category"] for c in classification}
    manifests = [
        protect_file(
            location,
            source_uri=uri,
            root=root,
            target=posixpath.join(out_dir, output_name(index, uri)),
            methods=methods,
            categories=categories,
            hasher=hasher,
            compression=compression,
        )
        for index, (uri, location) in enumerate(files)
    ]
    return {
        "files": manifests,
        "rows": sum(m["rows"] for m in manifests),
        "protected": methods,
        "classification": classification,
    }
