"""The DuckDB destination of the data merger, against real database files in tmp_path."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from agents.base.actions import AgentError
from agents.data_merger.contracts import SchemaContract
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.destinations.duckdb import load
from agents.data_merger.merging import MergeSpec, WriteDisposition

T1 = datetime(2024, 1, 1, tzinfo=UTC)
T2 = datetime(2024, 2, 1, tzinfo=UTC)
T3 = datetime(2024, 3, 1, tzinfo=UTC)


def _spec(
    disposition: WriteDisposition, key: tuple[str, ...] = ("id",), **options: Any
) -> MergeSpec:
    return MergeSpec(disposition, list(key), None, False, None, **options)


def _request(
    rows: dict[str, Any] | pl.DataFrame,
    spec: MergeSpec,
    *,
    deletes: dict[str, Any] | None = None,
    fingerprint: str | None = None,
    contract: str | SchemaContract = "evolve",
    loaded_at: datetime = T1,
) -> LoadRequest:
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows)
    return LoadRequest(
        dataset="orders",
        batch=frame.lazy(),
        deletes=None if deletes is None else pl.LazyFrame(deletes),
        spec=spec,
        fingerprint=fingerprint or uuid.uuid4().hex,
        contract=SchemaContract.model_validate(contract),
        loaded_at=loaded_at,
    )


def _read(path: Path, sql: str = "SELECT * FROM main.t ORDER BY ALL") -> pl.DataFrame:
    """What any other reader of the file sees: a plain read-only connection."""
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.sql(sql).pl()


def _ledger(path: Path) -> list[str]:
    rows = _read(path, "SELECT fingerprint FROM main._merger_loads ORDER BY loaded_at")
    return rows["fingerprint"].to_list()


def _counts(result: dict[str, Any]) -> tuple[int, int, int, int, int]:
    keys = ("inserted", "updated", "unchanged", "deleted", "written")
    inserted, updated, unchanged, deleted, written = (result[k] for k in keys)
    return inserted, updated, unchanged, deleted, written


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "folder" / "that" / "is" / "new.duckdb"


def test_append_twice_then_replace(db: Path) -> None:
    first = load(_request({"id": [1, 2], "v": ["a", "b"]}, _spec("append", ())), str(db), "t")
    assert db.exists()
    assert (first["target"], first["table"], first["path"]) == ("duckdb", "main.t", str(db))
    assert (first["rows"], first["version"], _counts(first)) == (2, 1, (2, 0, 0, 0, 2))
    assert first["schema"] == {"id": "int64", "v": "string"}
    assert first["replayed"] is False and first["primary_key"] == []

    second = load(_request({"id": [2, 3], "v": ["b", "c"]}, _spec("append", ())), str(db), "t")
    assert (second["rows"], second["version"], _counts(second)) == (4, 2, (2, 0, 0, 0, 2))
    assert _read(db)["id"].to_list() == [1, 2, 2, 3]

    replaced = load(_request({"id": [9], "v": ["z"]}, _spec("replace", ())), str(db), "t")
    assert (replaced["rows"], replaced["version"], _counts(replaced)) == (1, 3, (1, 0, 0, 4, 5))
    assert _read(db).to_dicts() == [{"id": 9, "v": "z"}]


def test_upsert_counts_exactly_and_rewrites_only_what_changed(db: Path) -> None:
    merge = _spec("merge")
    initial = {"id": [1, 2, 3], "v": ["a", "b", "c"], "n": [1.0, 2.0, None]}
    first = load(_request(initial, merge), str(db), "t")
    assert (_counts(first), first["primary_key"]) == ((3, 0, 0, 0, 3), ["id"])

    # 1 unchanged (a null stays a null), 2 changed, 4 new.
    batch = {"id": [3, 2, 4], "v": ["c", "B", "d"], "n": [None, 2.0, 4.0]}
    second = load(_request(batch, merge), str(db), "t")
    assert (_counts(second), second["rows"], second["version"]) == ((1, 1, 1, 0, 2), 4, 2)
    assert _read(db).to_dict(as_series=False) == {
        "id": [1, 2, 3, 4],
        "v": ["a", "B", "c", "d"],
        "n": [1.0, 2.0, None, 4.0],
    }

    # The same rows under a new fingerprint: nothing to write, the version stays.
    again = load(_request(batch, merge), str(db), "t")
    assert (_counts(again), again["version"]) == ((0, 0, 3, 0, 0), 2)


def test_a_replayed_batch_writes_nothing(db: Path) -> None:
    merge = _spec("merge")
    first = load(_request({"id": [1], "v": ["a"]}, merge, fingerprint="fp-1"), str(db), "t")
    # Same fingerprint, other rows: the ledger answers, the batch is not looked at.
    replay = load(
        _request({"id": [1, 2], "v": ["X", "Y"]}, merge, fingerprint="fp-1"), str(db), "t"
    )
    assert replay == {**first, "replayed": True}
    assert _read(db).to_dicts() == [{"id": 1, "v": "a"}]
    assert _ledger(db) == ["fp-1"]


def test_hard_delete_removes_the_keys(db: Path) -> None:
    merge = _spec("merge")
    load(_request({"id": [1, 2, 3], "v": ["a", "b", "c"]}, merge), str(db), "t")
    result = load(
        _request({"id": [4], "v": ["d"]}, merge, deletes={"id": [1, 3, 99]}), str(db), "t"
    )
    assert (_counts(result), result["rows"]) == ((1, 0, 0, 2, 3), 2)
    assert _read(db)["id"].to_list() == [2, 4]


def _versions(db: Path) -> list[tuple[Any, ...]]:
    rows = _read(
        db, "SELECT id, v, _valid_from, _valid_to, _is_current FROM main.t ORDER BY id, _valid_from"
    )
    return list(rows.iter_rows())


def test_scd2_versions_a_changed_key_and_retires_absent_ones(db: Path) -> None:
    scd2 = _spec("merge", strategy="scd2")
    first = load(_request({"id": [1, 2, 3], "v": ["a", "b", "c"]}, scd2), str(db), "t")
    assert (_counts(first), first["rows"]) == ((3, 0, 0, 0, 3), 3)
    assert first["schema"] == {
        "id": "int64",
        "v": "string",
        "_valid_from": "timestamp[us, UTC]",
        "_valid_to": "timestamp[us, UTC]",
        "_is_current": "bool",
    }

    # 1 changed, 2 unchanged, 3 absent (closed: a full extract), 4 new.
    batch = {"id": [1, 2, 4], "v": ["A", "b", "d"]}
    second = load(_request(batch, scd2, loaded_at=T2), str(db), "t")
    # written: the closed and the new version of 1, the closed 3, the new 4.
    assert (_counts(second), second["rows"]) == ((1, 1, 1, 1, 4), 5)
    assert _versions(db) == [
        (1, "a", T1, T2, False),
        (1, "A", T2, None, True),
        (2, "b", T1, None, True),
        (3, "c", T1, T2, False),
        (4, "d", T2, None, True),
    ]

    unchanged = load(_request(batch, scd2, loaded_at=T3), str(db), "t")
    assert (_counts(unchanged), unchanged["version"]) == ((0, 0, 3, 0, 0), second["version"])


def test_scd2_keeps_absent_keys_without_retire_absent_and_closes_hard_deletes(db: Path) -> None:
    scd2 = _spec("merge", strategy="scd2", retire_absent=False)
    load(_request({"id": [1, 2, 3], "v": ["a", "b", "c"]}, scd2), str(db), "t")
    kept = load(_request({"id": [1], "v": ["a"]}, scd2, loaded_at=T2), str(db), "t")
    assert _counts(kept) == (0, 0, 1, 0, 0)
    assert [row[4] for row in _versions(db)] == [True, True, True]

    deleted = load(
        _request({"id": [1], "v": ["a"]}, scd2, deletes={"id": [2]}, loaded_at=T3), str(db), "t"
    )
    assert (_counts(deleted), deleted["rows"]) == ((0, 0, 1, 1, 1), 3)
    assert _versions(db) == [
        (1, "a", T1, None, True),
        (2, "b", T1, T3, False),
        (3, "c", T1, None, True),
    ]


def test_scd2_refuses_another_key_and_an_upsert_into_its_table(db: Path) -> None:
    load(_request({"id": [1], "v": ["a"]}, _spec("merge", strategy="scd2")), str(db), "t")
    with pytest.raises(AgentError) as other_key:
        load(
            _request({"id": [1], "v": ["a"]}, _spec("merge", ("v",), strategy="scd2")), str(db), "t"
        )
    assert other_key.value.code == "primary_key_mismatch"
    with pytest.raises(AgentError) as upsert:
        load(_request({"id": [1], "v": ["a"]}, _spec("merge")), str(db), "t")
    assert upsert.value.code == "strategy_mismatch"


def test_schema_evolution_adds_a_column(db: Path) -> None:
    merge = _spec("merge")
    load(_request({"id": [1], "v": ["a"]}, merge), str(db), "t")
    result = load(_request({"id": [2], "v": ["b"], "extra": [True]}, merge), str(db), "t")
    assert result["schema"] == {"id": "int64", "v": "string", "extra": "bool"}
    assert _read(db)["extra"].to_list() == [None, True]


def test_contract_freeze_names_the_column_and_writes_nothing(db: Path) -> None:
    merge = _spec("merge")
    load(_request({"id": [1], "v": ["a"]}, merge, fingerprint="first"), str(db), "t")
    with pytest.raises(AgentError) as refused:
        load(
            _request({"id": [2], "v": ["b"], "extra": [1]}, merge, contract="freeze"), str(db), "t"
        )
    assert refused.value.code == "schema_contract_violation"
    assert refused.value.details["entity"] == "columns"
    assert refused.value.details["column"] == "extra"
    assert _read(db).to_dicts() == [{"id": 1, "v": "a"}]
    assert _ledger(db) == ["first"]


def test_contract_discard_value_drops_the_column(db: Path) -> None:
    merge = _spec("merge")
    load(_request({"id": [1], "v": ["a"]}, merge), str(db), "t")
    contract = SchemaContract(columns="discard_value")
    result = load(
        _request({"id": [2], "v": ["b"], "extra": [1]}, merge, contract=contract), str(db), "t"
    )
    assert result["contract"] == {
        "discarded_rows": 0,
        "discarded_columns": ["extra"],
        "discarded_values": 0,
    }
    assert _read(db).columns == ["id", "v"]
    assert result["rows"] == 2


def test_a_type_change_is_refused(db: Path) -> None:
    merge = _spec("merge")
    load(_request({"id": [1], "n": [10]}, merge), str(db), "t")
    # Int32 -> BIGINT converts without loss, so it is cast.
    cast = pl.DataFrame({"id": [2], "n": [20]}, schema={"id": pl.Int64, "n": pl.Int32})
    assert load(_request(cast, merge), str(db), "t")["schema"]["n"] == "int64"
    with pytest.raises(AgentError) as refused:
        load(_request({"id": [3], "n": ["not a number"]}, merge), str(db), "t")
    assert refused.value.code == "schema_contract_violation"
    assert (refused.value.details["entity"], refused.value.details["column"]) == ("data_type", "n")
    assert _read(db)["n"].to_list() == [10, 20]


def test_an_error_mid_load_leaves_the_file_as_it_was(db: Path) -> None:
    load(_request({"id": [1, 2], "v": ["a", "b"]}, _spec("merge"), fingerprint="ok"), str(db), "t")
    before = _read(db)
    # Replace deletes every row and adds a column before the duplicate key fails the insert.
    duplicate = {"id": [5, 5], "v": ["x", "y"], "extra": [1, 2]}
    with pytest.raises(AgentError) as failed:
        load(_request(duplicate, _spec("replace"), fingerprint="bad"), str(db), "t")
    assert failed.value.code == "load_failed"
    with pytest.raises(AgentError) as null_key:
        load(_request({"id": [None], "v": ["n"]}, _spec("merge"), fingerprint="bad2"), str(db), "t")
    assert null_key.value.code == "load_failed"
    # Not a DuckDB error: the deletes fail in polars after the new column was added.
    bad_deletes = _request(
        {"id": [3], "v": ["c"], "extra": [1]}, _spec("merge"), deletes={"no_key": [1]}
    )
    with pytest.raises(AgentError) as polars_error:
        load(bad_deletes, str(db), "t")
    assert polars_error.value.code == "load_failed"
    after = _read(db)
    assert after.schema == before.schema
    assert after.to_dicts() == before.to_dicts()
    assert _ledger(db) == ["ok"]
    # A replace may bring back the keys it deletes, in the same transaction.
    replaced = load(_request({"id": [1, 3], "v": ["A", "c"]}, _spec("replace")), str(db), "t")
    assert (_counts(replaced), replaced["primary_key"]) == ((2, 0, 0, 2, 4), ["id"])


def test_columns_a_batch_lacks_keep_their_values(db: Path) -> None:
    full = {"id": [1], "v": ["a"], "note": ["kept"]}
    load(_request(full, _spec("merge")), str(db), "t")
    load(_request({"id": [1], "v": ["A"]}, _spec("merge")), str(db), "t")
    assert _read(db).to_dicts() == [{"id": 1, "v": "A", "note": "kept"}]

    scd2 = _spec("merge", strategy="scd2")
    load(_request(full, scd2), str(db), "h")
    load(_request({"id": [1], "v": ["A"]}, scd2, loaded_at=T2), str(db), "h")
    versions = _read(db, "SELECT v, note, _is_current FROM main.h ORDER BY _valid_from")
    assert versions.rows() == [("a", "kept", False), ("A", "kept", True)]


def test_nested_and_interval_columns_round_trip(db: Path) -> None:
    merge = _spec("merge")
    rows = pl.DataFrame(
        {
            "id": [1, 2],
            "tags": [["a", "b"], []],
            "address": [{"city": "Oslo", "zip": 150}, {"city": "Rome", "zip": None}],
        }
    )
    first = load(_request(rows, merge), str(db), "t")
    assert first["schema"]["tags"] == "list[string]"
    assert _read(db).equals(rows)

    changed = rows.with_columns(
        pl.when(pl.col("id") == 2).then(pl.lit(["c"])).otherwise(pl.col("tags")).alias("tags")
    )
    second = load(_request(changed, merge), str(db), "t")
    assert _counts(second) == (0, 1, 1, 0, 1)
    assert _read(db)["tags"].to_list() == [["a", "b"], ["c"]]

    # DuckDB's INTERVAL cannot go back to polars as such; the loader reads it as a duration.
    durations = pl.DataFrame({"id": [3], "took": [timedelta(seconds=90)]})
    with_interval = load(_request(durations, merge), str(db), "t")
    assert with_interval["schema"]["took"] == "duration[us]"
    again = load(_request(durations, merge), str(db), "t")
    assert _counts(again) == (0, 0, 1, 0, 0)


def test_bad_targets_and_another_key_are_refused(db: Path) -> None:
    batch = {"id": [1], "v": ["a"]}
    for table, schema in [("_merger_loads", "main"), ("t; DROP", "main"), ("t", "x y")]:
        with pytest.raises(AgentError) as bad:
            load(_request(batch, _spec("merge")), str(db), table, schema)
        assert bad.value.code == "invalid_target"
    load(_request(batch, _spec("merge")), str(db), "t", "sales")
    with pytest.raises(AgentError) as other_key:
        load(_request(batch, _spec("merge", ("v",))), str(db), "t", "sales")
    assert other_key.value.code == "primary_key_mismatch"
    assert _read(db, "SELECT * FROM sales.t").to_dicts() == [{"id": 1, "v": "a"}]


def test_a_file_another_process_writes_is_busy(db: Path) -> None:
    load(_request({"id": [1]}, _spec("append", ())), str(db), "t")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AgentError) as busy:
            load(_request({"id": [2]}, _spec("append", ())), str(db), "t")
        assert (busy.value.code, busy.value.retryable) == ("busy", True)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert _read(db)["id"].to_list() == [1]
