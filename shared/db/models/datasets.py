"""SQLAlchemy model of the load records: one row per batch a merge applied to a destination."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Json


class DatasetLoad(Base):
    """What one merge wrote where, written by the merger after the destination committed.

    The destination's own commit (a Delta version, a ledger row in the target database) is
    what makes a load happen once; this row is the platform's queryable record of it, written
    with ON CONFLICT DO NOTHING on (destination, fingerprint) so a replay adds no second row.
    """

    __tablename__ = "dataset_loads"
    __table_args__ = (
        UniqueConstraint("destination", "fingerprint"),
        Index("ix_dataset_loads_dataset_loaded_at", "dataset", "loaded_at"),
        Index("ix_dataset_loads_run_id", "run_id"),  # a run's lineage lists its loads
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(Text)
    step_id: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # delta, parquet, postgres, duckdb
    destination: Mapped[str] = mapped_column(Text)  # the table URI, schema.table or file#table
    write_disposition: Mapped[str] = mapped_column(Text)
    strategy: Mapped[str | None] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(Text)
    rows_inserted: Mapped[int] = mapped_column(BigInteger)
    rows_updated: Mapped[int] = mapped_column(BigInteger)
    rows_deleted: Mapped[int] = mapped_column(BigInteger)
    rows_unchanged: Mapped[int] = mapped_column(BigInteger)
    rows_written: Mapped[int] = mapped_column(BigInteger)
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    bytes_written: Mapped[int | None] = mapped_column(BigInteger)
    destination_version: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[Json]
    loaded_at: Mapped[datetime] = mapped_column(server_default=func.now())
