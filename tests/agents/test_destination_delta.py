"""The Delta Lake destination: real delta-rs tables in tmp_path, one commit per load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from agents.base.actions import AgentError
from agents.data_merger.contracts import SchemaContract
from agents.data_merger.destinations import LoadRequest
from agents.data_merger.destinations.delta import (
    _delta_errors,
    history,
    load,
    maintain,
    read_version,
)
from agents.data_merger.destinations.delta_types import delta_compatible
from agents.data_merger.merging import IS_CURRENT, VALID_FROM, VALID_TO, MergeSpec

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _spec(
    disposition: str = "merge", strategy: str = "upsert", retire_absent: bool = True
) -> MergeSpec:
    key = [] if disposition != "merge" else ["id"]
    return MergeSpec(
        disposition=disposition,  # type: ignore[arg-type]
        primary_key=key,
        dedup_column=None,
        dedup_descending=False,
        hard_delete=None,
        strategy=strategy,  # type: ignore[arg-type]
        retire_absent=retire_absent,
    )


def _request(
    rows: dict[str, Any] | pl.DataFrame,
    spec: MergeSpec,
    fingerprint: str,
    *,
    deletes: list[int] | None = None,
    contract: SchemaContract | None = None,
    at: datetime = T0,
) -> LoadRequest:
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows)
    return LoadRequest(
        dataset="orders",
        batch=frame.lazy(),
        deletes=pl.LazyFrame({"id": deletes}) if deletes is not None else None,
        spec=spec,
        fingerprint=fingerprint,
        contract=contract or SchemaContract(),
        run_id=f"run-{fingerprint}",
        step_id="merge",
        loaded_at=at,
    )


def _rows(uri: str, *sort: str) -> list[dict[str, Any]]:
    return pl.read_delta(uri).sort(list(sort) or ["id"]).to_dicts()


def _version(uri: str) -> int:
    return DeltaTable(uri).version()


def test_append_then_append_and_replace(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    first = load(_request({"id": [1, 2], "v": ["a", "b"]}, _spec("append"), "f1"), uri)
    assert first["version"] == 0 and first["inserted"] == 2 and first["written"] == 2
    assert first["target"] == "delta" and first["uri"] == uri and first["rows"] == 2
    assert first["bytes"] > 0 and first["replayed"] is False
    assert first["schema"] == {"id": "int64", "v": "string"}
    second = load(_request({"id": [2], "v": ["b"]}, _spec("append"), "f2"), uri)
    assert second["version"] == 1 and second["rows"] == 3 and second["inserted"] == 1

    replaced = load(_request({"id": [9], "v": ["z"]}, _spec("replace"), "f3"), uri)
    assert replaced["version"] == 2 and replaced["rows"] == 1
    assert replaced["inserted"] == 1 and replaced["deleted"] == 3 and replaced["written"] == 4
    assert _rows(uri) == [{"id": 9, "v": "z"}]

    # An empty append writes nothing: no commit, the same version.
    empty = pl.DataFrame(schema={"id": pl.Int64, "v": pl.String})
    nothing = load(_request(empty, _spec("append"), "f4"), uri)
    assert nothing["version"] == 2 and nothing["written"] == 0 and _version(uri) == 2


def test_upsert_counts_and_replay(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    load(_request({"id": [1, 2, 3], "v": ["a", None, "c"]}, _spec(), "f1"), uri)
    batch = {"id": [1, 2, 3, 4], "v": ["a", None, "C", "d"]}  # unchanged x2 (null too), 1 upd
    result = load(_request(batch, _spec(), "f2"), uri)
    assert (result["inserted"], result["updated"], result["unchanged"], result["deleted"]) == (
        1,
        1,
        2,
        0,
    )
    assert result["written"] == 2 and result["version"] == 1 and result["rows"] == 4
    assert result["primary_key"] == ["id"]
    assert _rows(uri) == [
        {"id": 1, "v": "a"},
        {"id": 2, "v": None},
        {"id": 3, "v": "C"},
        {"id": 4, "v": "d"},
    ]

    again = load(_request(batch, _spec(), "f2"), uri)
    assert again["replayed"] is True and _version(uri) == 1
    assert {k: v for k, v in again.items() if k != "replayed"} == {
        k: v for k, v in result.items() if k != "replayed"
    }

    # The same rows under a new fingerprint: every row unchanged, so no commit at all.
    same = load(_request(batch, _spec(), "f3"), uri)
    assert same["written"] == 0 and same["unchanged"] == 4 and same["version"] == 1
    assert _version(uri) == 1


def test_hard_delete_in_the_same_merge(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    load(_request({"id": [1, 2, 3], "v": ["a", "b", "c"]}, _spec(), "f1"), uri)
    result = load(_request({"id": [4], "v": ["d"]}, _spec(), "f2", deletes=[2, 3, 99]), uri)
    assert result["deleted"] == 2 and result["inserted"] == 1 and result["version"] == 1
    assert [r["id"] for r in _rows(uri)] == [1, 4]
    # The delete flag is the merge source's, never the table's.
    assert DeltaTable(uri).schema().to_arrow().names == ["id", "v"]
    assert history(uri)[0]["operation"] == "MERGE"


def test_primary_key_is_kept_and_a_different_one_refused(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    load(_request({"id": [1], "k2": [1], "v": ["a"]}, _spec(), "f1"), uri)
    # An append (with a new column) keeps the key recorded in the schema.
    load(_request({"id": [2], "k2": [2], "v": ["b"], "w": [1]}, _spec("append"), "f2"), uri)
    # So does a replace, which keeps the table's columns.
    load(_request({"id": [3], "k2": [3], "v": ["c"]}, _spec("replace"), "f2r"), uri)
    assert pl.read_delta(uri).to_dicts() == [{"id": 3, "k2": 3, "v": "c", "w": None}]
    other = MergeSpec("merge", ["id", "k2"], None, False, None)
    with pytest.raises(AgentError) as refused:
        load(_request({"id": [1], "k2": [1], "v": ["x"]}, other, "f3"), uri)
    assert refused.value.code == "primary_key_mismatch"
    with pytest.raises(AgentError) as missing:
        load(_request({"k2": [1], "v": ["x"]}, _spec(), "f4"), uri)
    assert missing.value.code == "missing_column"
    with pytest.raises(AgentError) as scd2:
        load(_request({"id": [1], "v": ["x"]}, _spec(strategy="scd2"), "f5"), uri)
    assert scd2.value.code == "strategy_mismatch"


def test_first_merge_into_an_appended_table_records_its_key(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    load(_request({"id": [1, 2], "v": ["a", "b"]}, _spec("append"), "f1"), uri)
    result = load(_request({"id": [2], "v": ["B"]}, _spec(), "f2"), uri)
    assert result["updated"] == 1 and result["version"] == 1  # one commit, key included
    other = MergeSpec("merge", ["v"], None, False, None)
    with pytest.raises(AgentError) as refused:
        load(_request({"id": [1], "v": ["x"]}, other, "f3"), uri)
    assert refused.value.code == "primary_key_mismatch"


def _current(uri: str) -> dict[int, str]:
    frame = pl.read_delta(uri).filter(pl.col(IS_CURRENT))
    return dict(zip(frame["id"].to_list(), frame["v"].to_list(), strict=True))


def test_scd2_versions(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    t1, t2, t3 = T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)
    scd2 = _spec(strategy="scd2")
    first = load(_request({"id": [1, 2, 3, 4], "v": list("abcd")}, scd2, "f1"), uri)
    assert first["inserted"] == 4 and first["rows"] == 4 and first["version"] == 0
    assert first["schema"][VALID_FROM] == "timestamp[us, UTC]"
    assert all(r[IS_CURRENT] and r[VALID_TO] is None for r in _rows(uri))

    # 1 unchanged, 2 changed, 3 hard-deleted, 4 absent (retired), 5 new: one commit.
    batch = {"id": [1, 2, 5], "v": ["a", "B", "e"]}
    result = load(_request(batch, scd2, "f2", deletes=[3], at=t1), uri)
    assert result["version"] == 1 and _version(uri) == 1
    assert (result["inserted"], result["updated"], result["unchanged"], result["deleted"]) == (
        1,
        1,
        1,
        2,
    )
    assert result["written"] == 5  # 2 new versions + 3 closed ones
    assert result["rows"] == 6
    assert _current(uri) == {1: "a", 2: "B", 5: "e"}
    versions = {(r["id"], r["v"]): r for r in _rows(uri, "id", VALID_FROM)}
    assert versions[(2, "b")][VALID_TO] == t1 and versions[(2, "b")][IS_CURRENT] is False
    assert versions[(2, "B")][VALID_FROM] == t1 and versions[(2, "B")][VALID_TO] is None
    assert versions[(3, "c")][VALID_TO] == t1 and versions[(4, "d")][VALID_TO] == t1
    assert versions[(1, "a")][VALID_FROM] == T0 and versions[(1, "a")][IS_CURRENT]
    assert DeltaTable(uri).schema().to_arrow().names == ["id", "v", *[VALID_FROM, VALID_TO]] + [
        IS_CURRENT
    ]

    # Without retire_absent an absent key stays current; a changed one still gets a version.
    keep = _spec(strategy="scd2", retire_absent=False)
    kept = load(_request({"id": [5], "v": ["E"]}, keep, "f3", at=t2), uri)
    assert kept["updated"] == 1 and kept["deleted"] == 0
    assert _current(uri) == {1: "a", 2: "B", 5: "E"}

    # Nothing changed and nothing retired: no commit.
    same = load(_request({"id": [1], "v": ["a"]}, keep, "f4", at=t3), uri)
    assert same["written"] == 0 and same["unchanged"] == 1 and _version(uri) == 2


def test_schema_evolution_adds_a_nullable_column(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    load(_request({"id": [1, 2], "v": ["a", "b"]}, _spec(), "f1"), uri)
    result = load(_request({"id": [2, 3], "v": ["b", "c"], "w": [20, 30]}, _spec(), "f2"), uri)
    assert result["schema"] == {"id": "int64", "v": "string", "w": "int64"}
    assert result["updated"] == 1 and result["inserted"] == 1  # a value in a new column
    assert _rows(uri) == [
        {"id": 1, "v": "a", "w": None},
        {"id": 2, "v": "b", "w": 20},
        {"id": 3, "v": "c", "w": 30},
    ]
    # A new column whose values are all null still changes the schema (one commit).
    nulls = pl.DataFrame({"id": [1], "v": ["a"], "x": [None]}, schema_overrides={"x": pl.Null})
    added = load(_request(nulls, _spec(), "f3"), uri)
    assert added["version"] == 2 and added["schema"]["x"] == "string" and added["updated"] == 0


def test_scd2_schema_evolution_leaves_closed_versions_alone(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    scd2 = _spec(strategy="scd2")
    load(_request({"id": [1, 2], "v": ["a", "b"]}, scd2, "f1"), uri)
    at = T0 + timedelta(days=1)
    load(_request({"id": [1, 2], "v": ["a", "b"], "w": [None, 7]}, scd2, "f2", at=at), uri)
    rows = _rows(uri, "id", VALID_FROM)
    assert [(r["id"], r["w"], r[IS_CURRENT]) for r in rows] == [
        (1, None, True),
        (2, None, False),  # the closed version never had w
        (2, 7, True),
    ]


def test_contract_freeze_and_type_change(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    load(_request({"id": [1], "v": ["a"]}, _spec(), "f1"), uri)
    frozen = SchemaContract(columns="freeze")
    with pytest.raises(AgentError) as refused:
        load(_request({"id": [2], "v": ["b"], "extra": [1]}, _spec(), "f2", contract=frozen), uri)
    assert refused.value.code == "schema_contract_violation"
    assert refused.value.details["column"] == "extra"
    with pytest.raises(AgentError) as retyped:
        load(_request({"id": ["x"], "v": ["b"]}, _spec(), "f3"), uri)
    assert retyped.value.code == "schema_contract_violation"
    assert retyped.value.details["column"] == "id"
    assert _version(uri) == 0
    dropped = SchemaContract(columns="discard_value")
    result = load(
        _request({"id": [2], "v": ["b"], "extra": [1]}, _spec(), "f4", contract=dropped), uri
    )
    assert result["contract"]["discarded_columns"] == ["extra"] and "extra" not in result["schema"]


def test_time_travel_and_history(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    load(_request({"id": [1], "v": ["a"]}, _spec(), "f1"), uri)
    load(_request({"id": [1], "v": ["b"]}, _spec(), "f2"), uri)
    load(_request({"id": [2], "v": ["c"]}, _spec(), "f3"), uri)
    assert read_version(uri, 0).collect().to_dicts() == [{"id": 1, "v": "a"}]
    assert read_version(uri, 1).collect().to_dicts() == [{"id": 1, "v": "b"}]
    with pytest.raises(AgentError) as gone:
        read_version(uri, 7)
    assert gone.value.code == "version_not_found"
    versions = history(uri)
    assert [v["version"] for v in versions] == [2, 1, 0]
    assert [v["fingerprint"] for v in versions] == ["f3", "f2", "f1"]
    assert versions[0]["run_id"] == "run-f3" and versions[0]["step_id"] == "merge"
    assert (versions[0]["inserted"], versions[1]["updated"], versions[2]["inserted"]) == (1, 1, 1)
    assert isinstance(versions[0]["timestamp"], datetime)


def test_maintain_compacts_and_vacuums(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    for i in range(5):
        load(_request({"id": [i], "v": [str(i)]}, _spec("append"), f"f{i}"), uri)
    assert len(pa.table(DeltaTable(uri).get_add_actions())) == 5
    # The table's own retention rules vacuum; a shorter retention than it allows is refused.
    with pytest.raises(AgentError) as refused:
        maintain(uri, optimize=False, vacuum_retention_hours=0)
    assert refused.value.code == "invalid_retention"
    DeltaTable(uri).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 hours"}
    )
    result = maintain(uri, vacuum_retention_hours=0)
    assert result["optimize"]["files_removed"] == 5 and result["optimize"]["files_added"] == 1
    assert result["vacuum"]["files_deleted"] == 5
    assert len(pa.table(DeltaTable(uri).get_add_actions())) == 1
    assert len(list((tmp_path / "t").glob("*.parquet"))) == 1
    assert pl.read_delta(uri).height == 5


def test_merge_rewrites_only_the_files_holding_matched_keys(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    for i in range(10):
        keys = list(range(i * 100, i * 100 + 100))
        load(_request({"id": keys, "v": ["x"] * 100}, _spec("append"), f"a{i}"), uri)
    before = set(pa.table(DeltaTable(uri).get_add_actions()).column("path").to_pylist())
    assert len(before) == 10
    result = load(_request({"id": [301, 302, 350], "v": ["y"] * 3}, _spec(), "m"), uri)
    assert result["updated"] == 3
    after = set(pa.table(DeltaTable(uri).get_add_actions()).column("path").to_pylist())
    assert len(before - after) == 1  # only the file with keys 300..399 was rewritten
    assert 0 < len(after - before) <= 2
    metrics = DeltaTable(uri).history(1)[0]["operationMetrics"]
    assert metrics["num_target_files_removed"] == 1


def test_types_delta_cannot_store_are_converted(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    frame = pl.DataFrame(
        {
            "id": pl.Series([1], dtype=pl.UInt64),
            "small": pl.Series([200], dtype=pl.UInt8),
            "big": pl.Series([2**64 - 1], dtype=pl.UInt64),
            "cat": pl.Series(["a"], dtype=pl.Categorical),
            "none": pl.Series([None], dtype=pl.Null),
            "took": [timedelta(seconds=1, microseconds=5)],
            "at": pl.Series([datetime(2024, 1, 1, 12)]).dt.replace_time_zone("Europe/Paris"),
            "tags": pl.Series([["x"]], dtype=pl.List(pl.Categorical)),
        }
    )
    result = load(_request(frame, _spec("append"), "f1"), uri)
    assert result["schema"] == {
        "id": "decimal(20,0)",
        "small": "int16",
        "big": "decimal(20,0)",
        "cat": "string",
        "none": "string",
        "took": "int64",
        "at": "timestamp[us, UTC]",
        "tags": "list[string]",
    }
    row = pl.read_delta(uri).to_dicts()[0]
    assert row["small"] == 200 and int(row["big"]) == 2**64 - 1 and row["took"] == 1_000_005
    assert row["at"] == datetime(2024, 1, 1, 11, tzinfo=UTC) and row["tags"] == ["x"]
    # A later all-null column takes the table's type.
    typed = delta_compatible(pl.LazyFrame({"small": [None]}), {"small": pl.Int16()})
    assert typed.collect_schema()["small"] == pl.Int16


def test_a_concurrent_commit_is_busy_and_retryable(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    write_deltalake(uri, pa.table({"id": [1], "v": ["a"]}))
    first, second = DeltaTable(uri), DeltaTable(uri)
    source = pa.table({"id": [1], "v": ["b"]})
    first.merge(
        source, "t.id = s.id", source_alias="s", target_alias="t"
    ).when_matched_update_all().execute()
    with pytest.raises(AgentError) as busy, _delta_errors(uri):
        second.merge(
            source, "t.id = s.id", source_alias="s", target_alias="t"
        ).when_matched_update_all().execute()
    assert busy.value.code == "busy" and busy.value.retryable
