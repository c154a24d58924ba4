"""data-converter actions: `detect` a file's format, `convert` files to Parquet, `classify`
columns holding personal data and `mask` them (agents.base.quality.pii and
agents.data_converter.protection)."""

from __future__ import annotations

import asyncio
import codecs
import posixpath
import re
import threading
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agents.base.actions import ActionBody, ActionRegistry
from agents.base.context import ActionContext
from agents.base.quality.actions import ClassifyBody, classify
from agents.base.security import CredentialName
from agents.base.storage import DataRoot
from agents.base.tabular.inputs import FileRef, FileRefs, resolve_input, step_output_dir
from agents.base.tabular.schema import parse_schema, union_schema
from agents.data_converter.contracts import ContractMode
from agents.data_converter.conversion import (
    Compression,
    ConvertOptions,
    Nested,
    convert_file,
    detect_or_refuse,
)
from agents.data_converter.protection import Method, protect_files, resolve_salt

registry = ActionRegistry("data-converter")

# Each conversion streams in bounded memory; bounding how many run at once bounds the process.
CONCURRENT_CONVERSIONS = threading.BoundedSemaphore(2)

InputFormat = Literal[
    "auto", "csv", "tsv", "json", "ndjson", "parquet", "xml", "avro", "excel", "arrow", "orc"
]
MODEL = "format_recognition"  # the registered model that recognises formats


class DetectBody(ActionBody):
    file: FileRef = Field(description="the file: a URI, a manifest {'uri': ...} or a one-item list")


class ConvertBody(ActionBody):
    files: FileRefs = Field(
        description="files to convert: URIs, manifests {'uri': ...}, step outputs {'files': "
        "[...]} or nested lists of these; each must lie under DATA_ROOT or an allowed root. "
        "An empty list (a micro-batch with no new data) converts nothing",
    )
    format: InputFormat = Field("auto", description="input format; 'auto' detects each file's")
    known_schema: dict[str, str] | None = Field(
        None,
        description="the dataset's known schema {column: type}, e.g. {'id': 'int64', "
        "'at': 'timestamp[us, UTC]'}; the schema_contract applies against it",
    )
    schema_contract: ContractMode | None = Field(
        None,
        description="what to do with data that does not fit known_schema: evolve (default when "
        "known_schema is given), freeze, discard_row or discard_value",
    )
    infer_types: bool = Field(
        True,
        description="give text columns whose values all parse as numbers, booleans, dates or "
        "timestamps that type (numbers and booleans only in CSV, TSV and XML; a column with a "
        "leading zero such as '08123', or an integer too long for int64, stays text); false: "
        "every column not in known_schema keeps the type the format gives it (CSV/TSV: text)",
    )
    encoding: str | None = Field(
        None,
        description="text encoding of the input files, e.g. 'cp1252' (default: detected from "
        "the first 64 KiB; a byte further on that is not valid in it is a 422 naming its offset)",
    )
    sheet: str | None = Field(None, description="Excel sheet to read (default: the first)")
    compression: Compression = Field("zstd", description="Parquet compression codec")
    nested: Nested = Field(
        "keep",
        description="keep: JSON objects stay structs and arrays lists, at any depth; unnest "
        "(dlt-style): objects become `<field>__<key>` columns and arrays child tables "
        "`<field>` (`<parent>__<field>` below them) of one row per element (its fields, or "
        "`value` for scalars) with `_parent_id` (the parent row's `_row_id`), `_position` "
        "(index in the array, from 0), `_root_id` and `_row_id`; every root row gets "
        "`_row_id` (md5 of its primary_key values, else of its content and position in the "
        "file); an empty or null array gives no child rows. Each file's manifest names its "
        "child tables' files under `tables`; the merger loads them next to the parent",
    )
    max_nesting: int = Field(
        5,
        ge=0,
        le=50,
        description="unnest only: how many levels of objects and arrays to unnest (a "
        "top-level field's object or array is level 1); a value nested deeper is kept as its "
        "JSON text (0: every object and array field as JSON text)",
    )
    primary_key: list[str] | None = Field(
        None,
        description="the records' key columns (top-level), used by unnest only: `_row_id` is "
        "then derived from them, so a merge by this key replaces a changed record's child "
        "rows (null or []: from each row's content and position)",
    )
    rewrite_parquet: bool = Field(
        False,
        description="re-encode every Parquet input; by default a Parquet file whose columns "
        "already have their final types (as the PostgreSQL collector writes them), which "
        "known_schema, the contract and inference leave unchanged and which uses the requested "
        "compression, is checked (every value decoded once) and published byte for byte; a "
        "Parquet file in another codec is re-encoded in the requested one",
    )

    @field_validator("known_schema")
    @classmethod
    def _known_types(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            parse_schema(value)  # ValueError names the column with an unknown type
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError as exc:
                raise ValueError(f"unknown text encoding {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _contract_needs_schema(self) -> ConvertBody:
        if self.schema_contract not in (None, "evolve") and self.known_schema is None:
            raise ValueError(f"schema_contract {self.schema_contract!r} needs known_schema")
        if self.primary_key is not None and len(set(self.primary_key)) != len(self.primary_key):
            raise ValueError("primary_key lists a column twice")
        return self


class MaskBody(ActionBody):
    files: FileRefs = Field(
        description="files to protect: URIs, manifests, step outputs or nested lists of these; "
        "an empty list protects nothing",
    )
    columns: dict[str, Method] | None = Field(
        None,
        min_length=1,
        description="{column: hash | mask | drop | redact}; default: hash every column that "
        "classify finds to hold personal data",
    )
    salt_env: CredentialName | None = Field(
        None,
        description="NAME of the environment variable holding the hashing salt (required to "
        "hash in production; development falls back to a public salt)",
    )
    sample_rows: int = Field(
        1000, ge=1, le=100_000, description="rows of each file the classification samples"
    )
    compression: Compression = Field("zstd", description="Parquet compression codec")

    def hashes(self) -> bool:
        """Whether this request may hash (explicitly, or by default)."""
        return self.columns is None or "hash" in self.columns.values()


def _bounded(function: Any, /, *args: Any, **kwargs: Any) -> Any:
    with CONCURRENT_CONVERSIONS:
        return function(*args, **kwargs)


def _convert_one(**kwargs: Any) -> dict[str, Any]:
    with CONCURRENT_CONVERSIONS:
        return convert_file(**kwargs)


async def _resolve_all(refs: list[str], ctx: ActionContext) -> list[tuple[str, str]]:
    return [(ref, await asyncio.to_thread(resolve_input, ref, ctx.settings)) for ref in refs]


def _output_name(index: int, uri: str) -> str:
    stem = posixpath.basename(uri.rstrip("/")).rsplit(".", 1)[0] or "file"
    return f"{index:04d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)[:80]}.parquet"


# The examples follow one file through a run: as collect stages it (DATA_ROOT/runs/<run>/<step>/),
# then as convert writes it, so each reads like the step before it handed it on.
_COLLECTED = "/data/runs/adhoc/collect/orders-2026-01-15.csv"
_CONVERTED = "/data/runs/adhoc/convert/0000-orders-2026-01-15.parquet"


@registry.action(
    "detect",
    DetectBody,
    example={"file": _COLLECTED},
    description="recognise a file's format",
    read_only=True,
)
async def detect_action(body: DetectBody, ctx: ActionContext) -> dict[str, Any]:
    """Detect the format of one file.

    Returns `{"uri", "format", "encoding", "dialect": {"delimiter", "quotechar", "header"} | None,
    "evidence", "confidence", "top": [{"format", "confidence"}], "decided_by": {"model",
    "version", "source"}}`; format is one of csv, tsv, json, ndjson, parquet, xml, avro, excel,
    arrow, orc. A file the model is unsure of, or names as something else, is a 422.
    """
    location = await asyncio.to_thread(resolve_input, body.file, ctx.settings)
    decider = ctx.models[MODEL].current
    detection = await asyncio.to_thread(detect_or_refuse, location, body.file, decider)
    return {"uri": body.file, **detection.to_dict()}


@registry.action(
    "convert",
    ConvertBody,
    example={"files": [_COLLECTED], "format": "csv"},
    description="convert files to Parquet",
)
async def convert_action(body: ConvertBody, ctx: ActionContext) -> dict[str, Any]:
    """Convert each file to Parquet in this step's folder under DATA_ROOT.

    Types are the source's: a column named in `known_schema` is read as declared; CSV and TSV
    are read as text and only then typed (by `known_schema`, else by inference under the rules
    of agents.data_converter.contracts: a leading zero or an integer too long for int64 keeps a
    column text), so a quoted "08123" stays "08123". JSON objects become structs and arrays
    lists; a field JSON gives no single type (an empty object, mixed kinds across records, null
    everywhere) is kept as its JSON text (agents.base.tabular.json_reader); a spreadsheet or
    Avro column mixing numbers, dates and text becomes text. A delimited row with more fields
    than the header is a 422 naming its line (a row with fewer reads its missing fields as
    null); bytes that are not valid in the file's encoding are a 422 naming their offset; any
    file that does not parse is a 422 with `retryable: false`.

    Returns `{"files": [{"uri", "rows", "bytes", "sha256", "schema", "source_uri",
    "source_format", "format_decided_by", "rejected_rows", "coercion_failures",
    "schema_changes"}], "rows", "rejected_rows", "schema"}`; rows are never returned, only
    manifests. `format_decided_by` names the model version that recognised the format (None
    when the caller named it). With `nested: "unnest"` each file's manifest adds `"tables":
    {path: {"uri", "rows", "bytes", "sha256", "schema"}}` (its child tables' files, siblings of
    the root file, which names them in its Parquet metadata) and the result `"tables": {path:
    {"files", "rows", "schema"}}`; `files` holds the root tables only.
    """
    if not body.files:
        return {"files": [], "rows": 0, "rejected_rows": 0, "schema": {}}
    root = DataRoot.from_setting(ctx.settings.data_root)
    locations = [await asyncio.to_thread(resolve_input, uri, ctx.settings) for uri in body.files]
    out_dir = step_output_dir(root, ctx, "convert", body.model_dump(mode="json"))
    known = parse_schema(body.known_schema) if body.known_schema is not None else None
    options = ConvertOptions(
        format=body.format,
        known=known,
        mode=body.schema_contract or "evolve",
        infer_types=body.infer_types,
        sheet=body.sheet,
        compression=body.compression,
        decider=ctx.models[MODEL].current,  # one decider for the whole call
        encoding=body.encoding,
        nested=body.nested,
        max_nesting=body.max_nesting,
        primary_key=list(body.primary_key or []),
        rewrite_parquet=body.rewrite_parquet,
    )
    files = []
    # One file at a time: each conversion streams in bounded memory, and so does the whole call.
    for index, (uri, location) in enumerate(zip(body.files, locations, strict=True)):
        target = posixpath.join(out_dir, _output_name(index, uri))
        manifest = await asyncio.to_thread(
            _convert_one,
            location=location,
            source_uri=uri,
            root=root,
            target=target,
            options=options,
        )
        files.append(manifest)
    result: dict[str, Any] = {
        "files": files,
        "rows": sum(f["rows"] for f in files),
        "rejected_rows": sum(f["rejected_rows"] for f in files),
        "schema": union_schema([f["schema"] for f in files]),
    }
    if body.nested == "unnest":
        result["tables"] = _child_tables(files)
    return result


def _child_tables(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each child table's files (in the order of their parents), rows and schema."""
    tables: dict[str, dict[str, Any]] = {}
    for manifest in files:
        for path, child in manifest.get("tables", {}).items():
            table = tables.setdefault(path, {"files": [], "rows": 0, "schema": []})
            table["files"].append(child)
            table["rows"] += child["rows"]
            table["schema"].append(child["schema"])
    for table in tables.values():
        table["schema"] = union_schema(table["schema"])
    return tables


@registry.action(
    "classify",
    ClassifyBody,
    example={"files": [_CONVERTED], "sample_rows": 1000},
    description="find columns holding personal data",
    read_only=True,
)
async def classify_action(body: ClassifyBody, ctx: ActionContext) -> dict[str, Any]:
    """Classify every column of the files by a sample of their content.

    Returns `{"columns": [{"column", "pii", "category", "confidence", "evidence"}],
    "pii_columns", "sample_rows", "thresholds"}`; category is email, phone, card_number, name
    or none. Evidence holds counts, never values. The base-data-quality agent serves the same
    action (agents.base.quality.actions).
    """
    return await classify(body, ctx, slots=CONCURRENT_CONVERSIONS)


@registry.action(
    "mask",
    MaskBody,
    example={
        "files": [_CONVERTED],
        "columns": {"email": "hash", "phone": "mask"},
        "salt_env": "PII_SALT",
    },
    description="hash, mask, redact or drop personal data",
)
async def mask_action(body: MaskBody, ctx: ActionContext) -> dict[str, Any]:
    """Write each file as Parquet in this step's folder with the chosen columns protected.

    Returns `{"files": [{"uri", "rows", "bytes", "sha256", "schema", "source_uri",
    "protected"}], "rows", "protected": {column: method}, "classification", "salt":
    {"source", "name"} | None}`; the salt itself is never returned.
    """
    if not body.files:
        return {"files": [], "rows": 0, "protected": {}, "classification": None, "salt": None}
    hasher, salt = resolve_salt(body.salt_env, ctx.settings) if body.hashes() else (None, None)
    root = DataRoot.from_setting(ctx.settings.data_root)
    files = await _resolve_all(body.files, ctx)
    out_dir = step_output_dir(root, ctx, "mask", body.model_dump(mode="json"))
    result: dict[str, Any] = await asyncio.to_thread(
        _bounded,
        protect_files,
        files,
        root=root,
        out_dir=out_dir,
        columns=body.columns,
        hasher=hasher,
        sample_rows=body.sample_rows,
        compression=body.compression,
    )
    return {**result, "salt": salt}
