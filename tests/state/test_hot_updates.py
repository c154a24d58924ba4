"""Updates that change no indexed column are HOT (no index entry written, the old version pruned
from its page without a VACUUM): a lease renewal, the commonest update of a long step."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.state.leases import renew_leases
from tests.state.test_state_machine import Harness, ok, s

# The backend's counts of the table's updates not yet published to pg_stat_user_tables (which
# a backend does later): the difference across one statement is that statement's.
_COUNTS = text(
    "SELECT pg_stat_get_xact_tuples_updated('step_runs'::regclass) AS updated, "
    "pg_stat_get_xact_tuples_hot_updated('step_runs'::regclass) AS hot"
)


async def test_a_lease_renewal_is_a_hot_update(db: async_sessionmaker, schema: str) -> None:
    harness = Harness(db, schema)
    await harness.start({"name": "hot", "steps": [s("a")]})
    [a] = await harness.claim(lease_s=30)
    async with db() as session, session.begin():
        before = (await session.execute(_COUNTS)).one()
        renewed = await renew_leases(session, owner="w1", step_ids=[a.id], lease_s=60)
        after = (await session.execute(_COUNTS)).one()
    assert renewed == {a.id}
    assert (after.updated - before.updated, after.hot - before.hot) == (1, 1)
    await harness.record(ok(a))
