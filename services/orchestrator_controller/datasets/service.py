"""Reading the load records (`dataset_loads`), which the merger writes after each load."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.datasets.schemas import DatasetOut, LoadOut, VersionOut
from shared.db.models import DatasetLoad
from shared.errors import NotFound


def _load_view(row: DatasetLoad) -> LoadOut:
    return LoadOut.model_validate(
        {
            "id": row.id,
            "dataset": row.dataset,
            "run_id": row.run_id,
            "step_id": row.step_id,
            "kind": row.kind,
            "destination": row.destination,
            "write_disposition": row.write_disposition,
            "strategy": row.strategy,
            "fingerprint": row.fingerprint,
            "inserted": row.rows_inserted,
            "updated": row.rows_updated,
            "deleted": row.rows_deleted,
            "unchanged": row.rows_unchanged,
            "written": row.rows_written,
            "rows": row.rows_total,
            "bytes": row.bytes_written,
            "version": row.destination_version,
            "schema": row.result.get("schema") or {},
            "loaded_at": row.loaded_at,
        }
    )


async def loads(
    session: AsyncSession, *, dataset: str, limit: int, before: int | None
) -> list[LoadOut]:
    """The newest `limit` loads of `dataset` (ids below `before`); 404 when it has none."""
    query = select(DatasetLoad).where(DatasetLoad.dataset == dataset)
    if before is not None:
        query = query.where(DatasetLoad.id < before)
    rows = (await session.scalars(query.order_by(DatasetLoad.id.desc()).limit(limit))).all()
    if not rows and before is None:
        raise NotFound(f"no load of dataset {dataset!r} is recorded", code="unknown_dataset")
    return [_load_view(r) for r in rows]


async def versions(session: AsyncSession, *, dataset: str, limit: int) -> list[VersionOut]:
    """The versions loads of `dataset` made (a load that wrote nothing made none), newest first."""
    query = (
        select(DatasetLoad)
        .where(
            DatasetLoad.dataset == dataset,
            DatasetLoad.destination_version.is_not(None),
            DatasetLoad.rows_written + DatasetLoad.rows_deleted > 0,
        )
        .order_by(DatasetLoad.id.desc())
        .limit(limit)
    )
    rows = (await session.scalars(query)).all()
    if not rows:
        await loads(session, dataset=dataset, limit=1, before=None)  # 404 for an unknown one
    return [
        VersionOut(
            version=int(r.destination_version or 0),
            run_id=r.run_id,
            kind=r.kind,
            destination=r.destination,
            write_disposition=r.write_disposition,
            inserted=r.rows_inserted,
            updated=r.rows_updated,
            deleted=r.rows_deleted,
            rows=r.rows_total,
            loaded_at=r.loaded_at,
        )
        for r in rows
    ]


async def datasets(session: AsyncSession, *, limit: int) -> list[DatasetOut]:
    """Every dataset with a recorded load, the most recently loaded first."""
    latest = (
        select(DatasetLoad.dataset, func.max(DatasetLoad.id).label("last"), func.count())
        .group_by(DatasetLoad.dataset)
        .subquery()
    )
    query = (
        select(DatasetLoad, latest.c.count)
        .join(latest, DatasetLoad.id == latest.c.last)
        .order_by(DatasetLoad.id.desc())
        .limit(limit)
    )
    return [
        DatasetOut(
            dataset=row.dataset,
            loads=count,
            kind=row.kind,
            destination=row.destination,
            rows=row.rows_total,
            version=row.destination_version,
            last_loaded_at=row.loaded_at,
            last_run_id=row.run_id,
        )
        for row, count in (await session.execute(query)).all()
    ]
