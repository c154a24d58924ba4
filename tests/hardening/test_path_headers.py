"""Hardening finding 7: an agent trusted X-Run-Id/X-Step-Id as path parts, so a `collect` sent
with `X-Run-Id: ../datasets` and `X-Step-Id: test_orders` replaced a merged dataset's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from tests.conftest import asgi_client, service_auth


@pytest.mark.parametrize(
    ("run_id", "step_id"),
    [("../datasets", "test_orders"), ("ok", "../../x"), ("a/b", "s"), ("..", "s"), ("r", "")],
)
async def test_ids_that_could_climb_out_of_the_run_folder_are_refused(
    common_env: dict, tmp_path: Path, run_id: str, step_id: str
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_text("id\n1\n")
    data_root = Path(common_env["data_root"])
    victim = data_root / "datasets" / "test_orders"
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "part-0.parquet").write_bytes(b"merged data")
    settings = AgentSettings(**common_env, allowed_roots=[str(landing)])
    async with asgi_client(create_app(settings)) as client:
        response = await client.post(
            "/api/v1/collect",
            json={"source": {"kind": "file", "url": str(landing), "glob": "*.csv"}},
            headers={**service_auth(), "X-Run-Id": run_id, "X-Step-Id": step_id},
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_header"
    assert (victim / "part-0.parquet").read_bytes() == b"merged data"
    assert sorted(p.name for p in victim.iterdir()) == ["part-0.parquet"]
