"""The web UI in a real browser (Playwright driving Debian's Chromium) against the running
platform: submit the `test` workflow from its form, watch the run page reach SUCCEEDED with
every node of the DAG green, and keep screenshots (docs/screenshots/ and pytest's tmp)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import API_KEY, Platform

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.mark.timeout(180)
def test_submit_from_the_ui_and_watch_the_run_succeed(platform: Platform, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{platform.controller}/")  # redirects to /ui
        assert page.url.endswith("/ui") or "/ui" in page.url
        page.fill("#api-key", API_KEY)
        page.press("#api-key", "Enter")

        # the list reads summaries (no specs): steps and description come from them
        page.goto(f"{platform.controller}/ui#/workflows")
        expect(page.locator("tr[data-name=test] td").nth(3)).to_have_text("8", timeout=15_000)

        page.goto(f"{platform.controller}/ui#/workflows/test")
        remote = page.locator("#run-form [name=remote_url]")
        expect(remote).to_be_visible(timeout=15_000)
        remote.fill(platform.samples_url("remote/orders_api.json"))
        page.screenshot(path=str(tmp_path / "workflow-page.png"), full_page=True)
        page.click("#submit")
        page.wait_for_url("**/ui#/runs/*", timeout=15_000)

        nodes = page.locator("g.node")
        expect(nodes.first).to_be_visible(timeout=15_000)
        page.wait_for_function(
            "() => { const n = [...document.querySelectorAll('g.node')];"
            " return n.length >= 8 && n.every(g => g.dataset.status === 'SUCCEEDED'); }",
            timeout=60_000,
        )
        statuses = nodes.evaluate_all("(ns) => ns.map((n) => n.dataset.status)")
        assert statuses and set(statuses) == {"SUCCEEDED"}, statuses
        expect(page.locator("#page")).to_contain_text("SUCCEEDED")
        shot = tmp_path / "run-page.png"
        page.screenshot(path=str(shot), full_page=True)

        # The agents page: each agent's models and its health history.
        page.goto(f"{platform.controller}/ui#/agents")
        expect(page.locator("#health-history")).to_contain_text("data-merger", timeout=15_000)
        page.screenshot(path=str(tmp_path / "agents-page.png"), full_page=True)

        # The datasets page: the run's load, then the dataset's loads and schema (the run's own
        # dataset, by its whole name: other tests on this platform load `*orders*` ones too).
        page.goto(f"{platform.controller}/ui#/datasets")
        dataset = page.locator("#datasets a", has_text=re.compile(r"^test_orders$")).first
        expect(dataset).to_be_visible(timeout=15_000)
        dataset.click()
        loads = page.locator("#loads tbody tr")
        expect(loads.first).to_contain_text("merge/upsert", timeout=15_000)
        expect(page.locator("#page")).to_contain_text("order_id")
        datasets_shot = tmp_path / "dataset-page.png"
        page.screenshot(path=str(datasets_shot), full_page=True)
        browser.close()
    assert not errors, errors
    (ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ROOT / "docs" / "screenshots" / "run-page.png")
    shutil.copy(datasets_shot, ROOT / "docs" / "screenshots" / "dataset-page.png")


@pytest.mark.timeout(180)
def test_open_a_failed_step_and_retry_the_run_from_the_ui(
    platform: Platform, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.test_retry import flaky_source, spec
    from tests.serving import serve

    app, state = flaky_source()
    with serve(app) as base, platform.api() as api:
        failed_id = api.post("/coordinate", json={"spec": spec(f"{base}/orders")}).json()["run_id"]
        assert platform.wait_for_run(failed_id)["status"] == "FAILED"
        state["up"] = True
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{platform.controller}/ui")
            page.fill("#api-key", API_KEY)
            page.press("#api-key", "Enter")
            page.goto(f"{platform.controller}/ui#/runs/{failed_id}")
            # The failed step opens by itself, with its error.
            expect(page.locator("#step")).to_contain_text("404", timeout=15_000)
            # Its log lines from every service, for the selected (failed) step.
            page.click("#load-logs")
            expect(page.locator("#logs")).to_contain_text("step failed", timeout=15_000)
            page.screenshot(path=str(tmp_path / "failed-run.png"), full_page=True)
            page.click("#retry")
            left = f"() => !location.hash.endsWith('{failed_id}')"  # now on the new run's page
            page.wait_for_function(left, timeout=15_000)
            page.wait_for_function(
                "() => { const n = [...document.querySelectorAll('g.node')];"
                " return n.length === 3 && n.every(g => g.dataset.status === 'SUCCEEDED'); }",
                timeout=60_000,
            )
            expect(page.locator("#summary")).to_contain_text(failed_id)  # "retry of"
            page.screenshot(path=str(tmp_path / "retried-run.png"), full_page=True)
            browser.close()
    assert not errors, errors
