"""The idempotency ledger: a repeated Idempotency-Key gets the stored result, not a redo.

DBOS-style: the first caller inserts the key (ON CONFLICT DO NOTHING) and does the work; a
repeat finds DONE and replays; a repeat that arrives while the first is still working gets a
retryable 409; a key whose worker vanished (claim expired) is taken over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.errors import Conflict


def request_hash(action: str, body: dict[str, Any]) -> str:
    """A stable fingerprint of a request, to catch a key reused for a different request."""
    canonical = json.dumps([action, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class LedgerEntry:
    status: str
    result: Any
    error: dict[str, Any] | None


class Ledger:
    def __init__(self, agent: str, sessionmaker: async_sessionmaker, claim_s: float) -> None:
        self.agent = agent
        self.sessionmaker = sessionmaker
        self.claim_s = claim_s

    async def begin(self, key: str, action: str, fingerprint: str) -> LedgerEntry | None:
        """Claim `key` for this request; None means: do the work now. Else the stored outcome."""
        params = {
            "agent": self.agent,
            "key": key,
            "action": action,
            "hash": fingerprint,
            "claim_s": self.claim_s,
        }
        async with self.sessionmaker() as session, session.begin():
            inserted = await session.execute(
                text(
                    "INSERT INTO agent_effects (agent, idempotency_key, action, request_hash, "
                    "status, executions, claimed_until) VALUES (:agent, :key, :action, :hash, "
                    "'IN_PROGRESS', 0, now() + make_interval(secs => :claim_s)) "
                    "ON CONFLICT DO NOTHING RETURNING agent"
                ),
                params,
            )
            if inserted.first() is not None:
                return None
            row = (
                await session.execute(
                    text(
                        "SELECT status, request_hash, result, error, "
                        "claimed_until < now() AS stale FROM agent_effects "
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
            await session.execute(
                text(
                    "UPDATE agent_effects SET status = 'IN_PROGRESS', error = NULL, "
                    "claimed_until = now() + make_interval(secs => :claim_s) "
                    "WHERE agent = :agent AND idempotency_key = :key"
                ),
                params,
            )
            return None

    async def finish(self, key: str, result: Any) -> None:
        """Store the result; the effect counts as executed once more."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE agent_effects SET status = 'DONE', result = CAST(:result AS jsonb), "
                    "executions = executions + 1, completed_at = now(), claimed_until = NULL "
                    "WHERE agent = :agent AND idempotency_key = :key"
                ),
                {"agent": self.agent, "key": key, "result": json.dumps(result, default=str)},
            )

    async def fail(self, key: str, error: dict[str, Any]) -> None:
        """Store a failure; a retryable one lets the next attempt run the action again."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE agent_effects SET status = 'FAILED', error = CAST(:error AS jsonb), "
                    "claimed_until = NULL, completed_at = now() "
                    "WHERE agent = :agent AND idempotency_key = :key"
                ),
                {"agent": self.agent, "key": key, "error": json.dumps(error, default=str)},
            )


def _retryable(error: dict[str, Any] | None) -> bool:
    return bool(error and error.get("retryable"))
