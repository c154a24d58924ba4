"""data-ml over HTTP: what history there is to learn from, and training refused without a
registry (the train_models workflow test drives real training through the platform)."""

from __future__ import annotations

from agents.base.settings import AgentSettings
from agents.data_ml.app import create_app
from tests.conftest import asgi_client, service_auth
from tests.schedules.helpers import AUTH, controller, finish_run, one_step_spec


async def test_history_counts_the_finished_runs_and_their_attempts(module_env: dict) -> None:
    async with controller(module_env) as (app, client):
        for name in ("h1", "h2"):
            accepted = await client.post(
                "/coordinate", json={"spec": one_step_spec(name), "inputs": {}}, headers=AUTH
            )
            await finish_run(
                app.state.sessionmaker, accepted.json()["run_id"], schema=module_env["db_schema"]
            )
    async with asgi_client(create_app(AgentSettings(**module_env))) as agent:
        response = await agent.post("/api/v1/history", json={}, headers=service_auth())
    assert response.status_code == 200, response.text
    history = response.json()
    assert (history["runs"], history["attempts"], history["schema"]) == (
        2,
        2,
        module_env["db_schema"],
    )
    assert history["since"] is not None and history["until"] is not None


async def test_training_needs_a_registry(module_env: dict) -> None:
    async with asgi_client(
        create_app(AgentSettings(**module_env, mlflow_tracking_uri=None))
    ) as agent:
        response = await agent.post(
            "/api/v1/train", json={"model": "retry_strategy"}, headers=service_auth()
        )
        bad_name = await agent.post("/api/v1/train", json={"model": "../x"}, headers=service_auth())
    assert response.status_code == 422 and response.json()["error"] == "registry_missing"
    assert bad_name.status_code == 422 and "model" in bad_name.json()["message"]
