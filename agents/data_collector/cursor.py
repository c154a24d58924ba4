"""Incremental state: where the last collection ended, with a lag window and boundary dedup.

A cursor is `{field, value, lag, seen, updated_at}`: `value` is the highest cursor value
collected so far; the next run reads from `value - lag` (late writers land inside the window)
and skips the records whose (key, cursor value) fingerprint is in `seen`, the records of the
window already collected. A record that changed gets a new cursor value, hence a new
fingerprint, and is collected again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.base.actions import AgentError


class CursorState(BaseModel):
    """The cursor a collect returned; the platform hands it back on the next run."""

    # Lenient on purpose: state written by a newer version must not fail an older reader.
    model_config = ConfigDict(extra="ignore")

    field: str | None = Field(None, description="record field, column, 'mtime' or 'name'")
    value: Any = Field(None, description="highest cursor value collected")
    lag: float = Field(0.0, description="width of the re-read window")
    seen: list[str] = Field(default_factory=list, description="fingerprints inside the window")


def comparable(raw: Any) -> Any:
    """A cursor value that orders correctly: numbers, aware datetimes, dates or strings."""
    if isinstance(raw, bool):
        raise AgentError("a boolean cannot be a cursor", code="invalid_cursor")
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if isinstance(raw, int | float | Decimal | date):
        return raw
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return raw
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise AgentError(f"cannot use a {type(raw).__name__} as a cursor", code="invalid_cursor")


def to_json(value: Any) -> Any:
    """A cursor value as JSON (datetimes in ISO 8601 with Z, decimals as strings)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def minus_lag(value: Any, lag: float) -> Any:
    """The start of the window ending at `value`."""
    if not lag:
        return value
    if isinstance(value, datetime):
        return value - timedelta(seconds=lag)
    if isinstance(value, date):
        return value - timedelta(days=int(lag // 86400) + (1 if lag % 86400 else 0))
    if isinstance(value, Decimal):
        return value - Decimal(str(lag))
    if isinstance(value, int | float):
        return value - lag
    raise AgentError("a lag needs a numeric or time cursor", code="invalid_cursor")


def fingerprint(key: str, value: Any) -> str:
    """A short stable id of one version of one record."""
    raw = json.dumps([key, to_json(value)], default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def record_key(record: Any) -> str:
    """A record's identity when no key fields are given: the hash of its content."""
    raw = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


class IncrementalWindow:
    """Decides which records are new and builds the next cursor while a collection runs."""

    def __init__(
        self,
        previous: CursorState | None,
        *,
        field: str,
        lag: float = 0.0,
        initial: Any = None,
        parse: Callable[[Any], Any] = comparable,
    ) -> None:
        self.field = field
        self.lag = lag
        self.parse = parse
        self.old_seen: set[str] = set()
        self.start: Any = None
        self.max: Any = None
        self.old_max: Any = None
        if previous is not None and previous.field == field and previous.value is not None:
            self.max = self.old_max = parse(previous.value)
            self.start = minus_lag(self.max, lag)
            self.old_seen = set(previous.seen)
        elif initial is not None:
            self.start = parse(initial)
        self.window: dict[str, Any] = {}
        self._prune_at = 10_000
        self.duplicates = 0

    @property
    def lower_bound(self) -> Any:
        """The lowest cursor value to ask the source for (None: from the beginning)."""
        return self.start

    def consider(self, key: str, raw: Any) -> bool:
        """Whether the record (identified by `key`, cursor value `raw`) is new to the sink."""
        if raw is None:
            return True
        value = self.parse(raw)
        try:
            if self.start is not None and value < self.start:
                return False
            if self.max is None or value > self.max:
                self.max = value
        except TypeError as exc:
            raise AgentError(
                f"cursor field {self.field!r} mixes value types ({raw!r})", code="invalid_cursor"
            ) from exc
        fp = fingerprint(key, value)
        self.window[fp] = value
        if len(self.window) > self._prune_at:
            self._prune()
        if fp in self.old_seen:
            self.duplicates += 1
            return False
        return True

    def _prune(self) -> None:
        cutoff = minus_lag(self.max, self.lag)
        self.window = {fp: v for fp, v in self.window.items() if v >= cutoff}
        self._prune_at = max(10_000, 2 * len(self.window))

    def state(self) -> dict[str, Any]:
        """The cursor to store for the next run."""
        seen: list[str] = []
        if self.max is not None:
            cutoff = minus_lag(self.max, self.lag)
            kept = {fp for fp, v in self.window.items() if v >= cutoff}
            if self.max == self.old_max:
                # Same window as before: what this run did not see again is still inside it.
                kept |= self.old_seen
            seen = sorted(kept)
        return {
            "field": self.field,
            "value": to_json(self.max),
            "lag": self.lag,
            "seen": seen,
            "updated_at": to_json(datetime.now(UTC)),
        }
