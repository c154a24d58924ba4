"""Schema contracts: what a load may change in its destination's schema, as dlt defines them.

Three entities, each with a mode (`evolve`, `freeze`, `discard_row`, `discard_value`):
- `tables`: a destination table that does not exist yet. `freeze` refuses to create it; either
  discard mode loads nothing into it.
- `columns`: a batch column the table lacks. `evolve` adds it; `freeze` refuses the load;
  `discard_row` drops the rows that hold a value in it; `discard_value` drops the column.
- `data_type`: a batch column whose type differs from the table's. No destination here can
  change a column's type in place, so `evolve` and `freeze` both cast the values when every one
  of them converts without loss (it casts back to itself) and refuse the load otherwise;
  `discard_row` drops the rows whose value does not convert, `discard_value` stores null.

A refusal is the non-retryable error `schema_contract_violation` naming the entity, the column
and the first offending row, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.base.actions import AgentError

ContractMode = Literal["evolve", "freeze", "discard_row", "discard_value"]
_ROW_SAMPLE = 20  # columns of an offending row shown in the error


class SchemaContract(BaseModel):
    """The contract of one load; a plain string sets all three entities."""

    model_config = ConfigDict(extra="forbid")

    tables: ContractMode = Field("evolve", description="a table that does not exist yet")
    columns: ContractMode = Field("evolve", description="a column the table does not have")
    data_type: ContractMode = Field(
        "evolve", description="a column whose values have another type than the table's"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"tables": value, "columns": value, "data_type": value}
        return value


@dataclass
class ContractReport:
    """What a contract took out of the batch (all zero under `evolve`)."""

    discarded_rows: int = 0
    discarded_columns: list[str] = field(default_factory=list)
    discarded_values: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "discarded_rows": self.discarded_rows,
            "discarded_columns": self.discarded_columns,
            "discarded_values": self.discarded_values,
        }


def _violation(entity: str, column: str | None, message: str, row: dict[str, Any] | None) -> None:
    details: dict[str, Any] = {"entity": entity, "column": column}
    if row is not None:
        details["row"] = {k: row[k] for k in list(row)[:_ROW_SAMPLE]}
    raise AgentError(message, code="schema_contract_violation", details=details)


def _first(frame: pl.LazyFrame, condition: pl.Expr) -> dict[str, Any] | None:
    found = frame.filter(condition).head(1).collect()
    return found.to_dicts()[0] if found.height else None


def _count(frame: pl.LazyFrame) -> int:
    return int(frame.select(pl.len()).collect().item())


def apply_contract(
    batch: pl.LazyFrame,
    existing: dict[str, pl.DataType] | None,
    contract: SchemaContract,
    *,
    table: str,
    ignore: frozenset[str] = frozenset(),
) -> tuple[pl.LazyFrame, ContractReport]:
    """The batch as the contract lets it into a table of schema `existing` (None: no table).

    `ignore` names columns the destination manages itself (scd2 validity columns, a
    hard_delete flag), which no contract applies to.
    """
    report = ContractReport()
    if existing is None:
        if contract.tables == "freeze":
            _violation(
                "tables",
                None,
                f"schema contract: table {table!r} does not exist and tables are frozen",
                _first(batch, pl.lit(True)),
            )
        if contract.tables in ("discard_row", "discard_value"):
            report.discarded_rows = _count(batch)
            return batch.head(0), report
        return batch, report

    names = batch.collect_schema()
    new = [c for c in names.names() if c not in existing and c not in ignore]
    for column in new:
        holds_value = pl.col(column).is_not_null()
        if contract.columns == "freeze":
            _violation(
                "columns",
                column,
                f"schema contract: column {column!r} is not in table {table!r} and columns "
                "are frozen",
                _first(batch, holds_value) or _first(batch, pl.lit(True)),
            )
        elif contract.columns == "discard_row":
            report.discarded_rows += _count(batch.filter(holds_value))
            batch = batch.filter(~holds_value).drop(column)
        elif contract.columns == "discard_value":
            report.discarded_columns.append(column)
            batch = batch.drop(column)

    for column, dtype in batch.collect_schema().items():
        wanted = existing.get(column)
        if wanted is None or column in ignore or dtype == wanted or dtype == pl.Null:
            continue
        cast = pl.col(column).cast(wanted, strict=False)
        # Lossless means the value comes back unchanged: 1.5 -> 1 and "08123" -> 8123 do not.
        back = cast.cast(dtype, strict=False)
        lost = pl.col(column).is_not_null() & (cast.is_null() | (back != pl.col(column)))
        if contract.data_type in ("evolve", "freeze"):
            offending = _first(batch, lost)
            if offending is not None:
                _violation(
                    "data_type",
                    column,
                    f"schema contract: column {column!r} of table {table!r} is {wanted}; the "
                    f"batch holds {dtype} values that do not convert",
                    offending,
                )
        elif contract.data_type == "discard_row":
            report.discarded_rows += _count(batch.filter(lost))
            batch = batch.filter(~lost)
        else:
            report.discarded_values += _count(batch.filter(lost))
            cast = pl.when(lost).then(None).otherwise(cast)
        batch = batch.with_columns(cast.alias(column))
    return batch, report
