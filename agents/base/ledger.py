"""The idempotency ledger: a repeated Idempotency-Key gets the stored result, not a redo.

DBOS-style: the first caller inserts the key (ON CONFLICT DO NOTHING) and does the work; a
repeat finds DONE and replays; a repeat that arrives while the first is still working gets a
retryable 409; a key whose worker vanished is taken over: its claim expired, or the process
named by `claimed_by` stopped beating its heartbeat (agents/base/liveness.py), which after a
SIGKILL takes seconds instead of the whole claim.

Recording the outcome survives a database restart: `finish` and `fail` retry while the database
is away, and each is keyed by the claim (the `claimed_until` its `begin` set, which no other
claim shares), so a retry after a commit whose answer was lost does not count the effect twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.errors import is_unavailable
from shared.errors import Conflict

log = logging.getLogger(__name__)


def request_hash(action: str, body: dict[str, Any]) -> str:
    """A stable fingerprint of a request, to catch a key reused for a different request."""
    canonical = json.dumps([action, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class LedgerEntry:
    status: str
    result: Any
    error: dict[str, Any] | None


@dataclass(frozen=True)
class Claim:
    """This request's hold on a key: the `claimed_until` its `begin` wrote."""

    key: str
    until: datetime


class Ledger:
    def __init__(
        self,
        agent: str,
        sessionmaker: async_sessionmaker,
        claim_s: float,
        *,
        instance_id: str | None = None,
        dead_after_s: float = 15.0,
        record_retry_s: float = 120.0,
    ) -> None:
        self.agent = agent
        self.sessionmaker = sessionmaker
        self.claim_s = claim_s
        # This process, as its heartbeat row names it; None: claims lapse by time only.
        self.instance_id = instance_id
        self.dead_after_s = dead_after_s
        # How long finish/fail keep trying while the database is away (a restart takes seconds).
        self.record_retry_s = record_retry_s

    async def begin(self, key: str, action: str, fingerprint: str) -> LedgerEntry | Claim:
        """Claim `key` for this request: a Claim means do the work now; else the stored outcome."""
        params = {
            "agent": self.agent,
            "key": key,
            "action": action,
            "hash": fingerprint,
            "claim_s": self.claim_s,
            "by": self.instance_id,
            "dead_after_s": self.dead_after_s,
        }
        async with self.sessionmaker() as session, session.begin():
            inserted = await session.execute(
                text(
                    "INSERT INTO agent_effects (agent, idempotency_key, action, request_hash, "
                    "status, executions, claimed_until, claimed_by) VALUES (:agent, :key, "
                    ":action, :hash, 'IN_PROGRESS', 0, "
                    "clock_timestamp() + make_interval(secs => :claim_s), :by) "
                    "ON CONFLICT DO NOTHING RETURNING claimed_until"
                ),
                params,
            )
            until = inserted.scalar()
            if until is not None:
                return Claim(key, until)
            row = (
                await session.execute(
                    text(
                        "SELECT status, request_hash, result, error, "
                        f"claimed_until < now() OR {_HOLDER_GONE} AS stale FROM agent_effects e "
                        "WHERE agent = :agent AND idempotency_key = :key "
                        "FOR UPDATE"
                    ),
                    params,
                )
            ).one()
            if row.request_hash != fingerprint:
                raise Conflict(
                    f"Idempotency-Key {key!r} was already used for a different request",
                    code="idempotency_key_reused",
                )
            if row.status == "DONE" or (row.status == "FAILED" and not _retryable(row.error)):
                return LedgerEntry(row.status, row.result, row.error)
            if row.status == "IN_PROGRESS" and not row.stale:
                raise Conflict(
                    f"a request with Idempotency-Key {key!r} is still in progress",
                    code="in_progress",
                    retryable=True,
                )
            # A retryable failure or an abandoned claim: this request takes the key over.
            # clock_timestamp(), not now(): every claim of a key gets its own instant.
            taken = await session.execute(
                text(
                    "UPDATE agent_effects SET status = 'IN_PROGRESS', error = NULL, "
                    "claimed_until = clock_timestamp() + make_interval(secs => :claim_s), "
                    "claimed_by = :by "
                    "WHERE agent = :agent AND idempotency_key = :key RETURNING claimed_until"
                ),
                params,
            )
            return Claim(key, taken.scalar_one())

    async def finish(self, claim: Claim, result: Any) -> None:
        """Store the result; the effect counts as executed once more (once per claim)."""
        payload = json.dumps(result, default=str)
        await self._retrying(lambda: self._finish_once(claim, payload), claim, "finish")

    async def _finish_once(self, claim: Claim, payload: str) -> None:
        params = {"agent": self.agent, "key": claim.key, "until": claim.until, "result": payload}
        async with self.sessionmaker() as session, session.begin():
            stored = await session.execute(
                text(
                    "UPDATE agent_effects SET status = 'DONE', result = CAST(:result AS jsonb), "
                    "executions = executions + 1, completed_at = now(), claimed_until = NULL "
                    "WHERE agent = :agent AND idempotency_key = :key "
                    "AND status = 'IN_PROGRESS' AND claimed_until = :until RETURNING 1"
                ),
                params,
            )
            if stored.first() is not None:
                return
            # No longer held by this claim: either an earlier try of this very write committed
            # (its answer lost), or another process took the key over. Taking over needs our
            # claim lapsed or this process silent; while neither is so, it was our earlier try.
            held = await session.execute(
                text(
                    "SELECT now() >= :until OR claimed_by IS DISTINCT FROM :by FROM agent_effects "
                    "WHERE agent = :agent AND idempotency_key = :key"
                ),
                {**params, "by": self.instance_id},
            )
            if not held.scalar_one():
                return
            # Taken over after our claim lapsed: our effect ran besides the other one. Count it.
            await session.execute(
                text(
                    "UPDATE agent_effects SET executions = executions + 1 "
                    "WHERE agent = :agent AND idempotency_key = :key"
                ),
                params,
            )

    async def fail(self, claim: Claim, error: dict[str, Any]) -> None:
        """Store a failure; a retryable one lets the next attempt run the action again."""
        params = {
            "agent": self.agent,
            "key": claim.key,
            "until": claim.until,
            "error": json.dumps(error, default=str),
        }

        async def once() -> None:
            # Only while this claim holds the key: a repeat of this write changes nothing.
            async with self.sessionmaker() as session, session.begin():
                await session.execute(
                    text(
                        "UPDATE agent_effects SET status = 'FAILED', "
                        "error = CAST(:error AS jsonb), claimed_until = NULL, "
                        "completed_at = now() WHERE agent = :agent AND idempotency_key = :key "
                        "AND status = 'IN_PROGRESS' AND claimed_until = :until"
                    ),
                    params,
                )

        await self._retrying(once, claim, "fail")

    async def _retrying(
        self, write: Callable[[], Awaitable[None]], claim: Claim, what: str
    ) -> None:
        deadline = time.monotonic() + self.record_retry_s
        delay = 0.1
        while True:
            try:
                await write()
                return
            except Exception as exc:
                if not is_unavailable(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("ledger %s of %r waits for the database: %s", what, claim.key, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


# The process holding a claim has stopped beating (or never had a heartbeat row).
_HOLDER_GONE = (
    "(e.claimed_by IS NOT NULL AND NOT EXISTS (SELECT 1 FROM agent_instances i "
    "WHERE i.instance_id = e.claimed_by "
    "AND i.heartbeat_at > now() - make_interval(secs => :dead_after_s)))"
)


def _retryable(error: dict[str, Any] | None) -> bool:
    return bool(error and error.get("retryable"))
