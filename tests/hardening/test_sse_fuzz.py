"""The two SSE feeds (/events, /workflows/{id}/events) under generated query parameters and
Last-Event-ID headers, valid and not: never a 5xx, an invalid parameter answers 422 in ErrorBody
naming it, and a valid request answers 200 text/event-stream whose frames parse as SSE and are
exactly the replay the parameters ask for (a feed that follows is read until a short deadline,
so its frames are that replay's first ones).

Requests go in-process through schemathesis's ASGI client, which keeps the complete events of a
stream cut at its read timeout. No loop or relay runs: the only events are the two submitted
runs' own, so the replay each request should get is known.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from httpx_sse import EventSource
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from services.orchestrator_controller.app import create_app
from services.orchestrator_controller.events.router import MAX_SEQUENCE
from services.orchestrator_controller.events.service import REPLAY_LIMIT
from services.orchestrator_controller.settings import ControllerSettings
from shared.errors import ErrorBody
from tests.schedules.helpers import one_step_spec

KEY = "k-sse-fuzz"
AUTH = {"Authorization": f"Bearer {KEY}"}
# A following feed is read this long; a feed that ends is read to its end.
FOLLOW_READ_S = 0.75
ENDING_READ_S = 15.0
EXAMPLES = 30
BOOL_WORDS = ["true", "false", "1", "0", "yes", "no", "on", "off", "t", "f", "y", "n"]

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Feeds:
    client: asgi.ASGIClient
    runs: list[str]
    events: list[dict[str, Any]]  # every committed event, oldest first


@pytest.fixture(scope="module")
def feeds(module_env: dict[str, Any]) -> Iterator[Feeds]:
    app = create_app(
        ControllerSettings(
            **module_env,
            api_keys=[KEY],
            engine_url="http://127.0.0.1:9",  # nothing listens: runs stay PENDING
            start_loops=False,
            register_builtin_workflows=False,
            seed_schedules=False,
        )
    )
    # More frames than the runs ever have: a feed is cut by its deadline, not by a count.
    # FastAPI.__call__ takes MutableMapping scopes, the client names dict ones: the same.
    client_of = asgi.get_client(app, max_stream_events=1000)  # type: ignore[arg-type]
    with client_of as client:
        runs = []
        for name in ("sse-fuzz-a", "sse-fuzz-b", "sse-fuzz-c", "sse-fuzz-d"):
            answer = client.post("/coordinate", json={"spec": one_step_spec(name)}, headers=AUTH)
            assert answer.status_code == 202, answer.text
            runs.append(str(answer.json()["run_id"]))
        everything = client.get(
            "/events", params={"follow": "false", "last": str(REPLAY_LIMIT)}, headers=AUTH
        )
        events = frames(everything)
        assert {e["run_id"] for e in events} == set(runs)
        yield Feeds(client, runs, events)
    asgi.shutdown_lifespans()  # the app's lifespan ran in schemathesis's own event loop


def frames(response: requests.Response) -> list[dict[str, Any]]:
    """The events of an SSE body, each frame's id and event name checked against its data."""
    source = httpx.Response(
        response.status_code, headers=dict(response.headers), content=response.content
    )
    events = []
    for frame in EventSource(source).iter_sse():  # refuses a body that is not text/event-stream
        event = json.loads(frame.data)
        assert frame.id == str(event["sequence"]), frame
        assert frame.event == event["type"], frame
        events.append(event)
    return events


# ------------------------------------------------------------------------------ what to send


@dataclass
class Param:
    """One query parameter as sent (None: left out), and whether the API must refuse it."""

    value: str | None
    valid: bool


def absent() -> st.SearchStrategy[Param]:
    return st.just(Param(None, True))


def words(min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=min_size)


def mostly_valid(
    valid: st.SearchStrategy[Param], invalid: st.SearchStrategy[Param]
) -> st.SearchStrategy[Param]:
    """Left out, valid, or (one time in five) invalid: most requests reach the stream."""
    return st.integers(0, 9).flatmap(lambda k: absent() if k < 3 else (invalid if k < 5 else valid))


def integers(low: int, high: int) -> st.SearchStrategy[Param]:
    """A bounded integer parameter: in range (often near the runs' sequences), out of range
    either side, or not a number."""
    return mostly_valid(
        st.one_of(st.integers(low, low + 20), st.integers(low, high)).map(
            lambda n: Param(str(n), True)
        ),
        st.one_of(
            st.integers(max_value=low - 1).map(lambda n: Param(str(n), False)),
            st.integers(min_value=high + 1).map(lambda n: Param(str(n), False)),
            st.sampled_from(["1.5", "ten", "0x10", "1e3"]).map(lambda s: Param(s, False)),
        ),
    )


follow_params = mostly_valid(
    st.sampled_from(BOOL_WORDS).map(lambda s: Param(s, True)),
    st.text(st.characters(categories=["Ll"]), min_size=2, max_size=8)
    .filter(lambda s: s not in BOOL_WORDS)
    .map(lambda s: Param(s, False)),
)
# Whatever a client sends: a sequence (in range or not), digits of other scripts, any text.
last_event_ids = st.one_of(
    st.none(),
    st.integers(0, 20).map(str),
    st.integers(0, 2**70).map(str),
    st.sampled_from(["²", "¹²", "1_000", "7 ", "-3", "0"]),
    # Latin-1, as headers are; no leading space or control character (clients send none).
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_categories=["Cc", "Zs"]),
        max_size=24,
    ),
)


@dataclass
class Request:
    path: str
    params: dict[str, Param]
    last_event_id: str | None

    def send(self, client: asgi.ASGIClient) -> requests.Response:
        params = {k: p.value for k, p in self.params.items() if p.value is not None}
        headers = dict(AUTH)
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        timeout = FOLLOW_READ_S if self.follows else ENDING_READ_S
        return client.get(self.path, params=params, headers=headers, timeout=timeout)

    def param(self, name: str) -> str | None:
        return self.params[name].value if name in self.params else None

    @property
    def invalid(self) -> set[str]:
        return {name for name, p in self.params.items() if not p.valid}

    @property
    def follows(self) -> bool:
        return self.param("follow") not in ("false", "0", "no", "off", "f", "n")

    def start(self) -> int:
        """Where the replay starts: `after`, or a later Last-Event-ID that is a sequence."""
        after = int(self.param("after") or 0)
        raw = (self.last_event_id or "").strip()
        if raw.isascii() and raw.isdigit() and int(raw) <= MAX_SEQUENCE:
            return max(after, int(raw))
        return after


# ------------------------------------------------------------------------------ the checks


def check_answer(
    response: requests.Response, request: Request, replay: Callable[[], list[dict[str, Any]]]
) -> None:
    """The answer a request must get; `replay` gives the frames a valid one asks for."""
    where = f"{request.path} {request.params} Last-Event-ID={request.last_event_id!r}"
    assert response.status_code < 500, (where, response.text)
    if request.invalid:
        assert response.status_code == 422, (where, response.text)
        body = ErrorBody.model_validate(response.json())
        assert body.error == "validation_error"
        named = {d["field"] for d in body.details}
        assert {f"query.{name}" for name in request.invalid} == named, (where, body)
        return
    assert response.status_code == 200, (where, response.text)
    assert response.headers["content-type"].startswith("text/event-stream"), where
    received, expected = frames(response), replay()
    if request.follows:
        # Cut at the deadline: the replay's first frames, however many arrived in time.
        assert received == expected[: len(received)], where
    else:
        assert received == expected, where


@given(
    follow=follow_params,
    after=integers(0, MAX_SEQUENCE),
    last=integers(1, REPLAY_LIMIT),
    prefix=st.one_of(absent(), words(0).map(lambda s: Param(s, True))),
    last_event_id=last_event_ids,
)
@FUZZ
def test_the_platform_feed_answers_every_query(
    feeds: Feeds,
    follow: Param,
    after: Param,
    last: Param,
    prefix: Param,
    last_event_id: str | None,
) -> None:
    request = Request(
        "/events",
        {"follow": follow, "after": after, "last": last, "type": prefix},
        last_event_id,
    )

    def replay() -> list[dict[str, Any]]:
        start = request.start()
        if request.param("after") is not None or start:
            past = [e for e in feeds.events if e["sequence"] > start]
        elif not request.follows:
            past = feeds.events[-int(request.param("last") or 100) :]
        else:
            past = []
        wanted = request.param("type")
        return [e for e in past if wanted is None or e["type"].startswith(wanted)]

    check_answer(request.send(feeds.client), request, replay)


@given(
    run=st.one_of(
        st.sampled_from([0, 1, 2, 3]),
        st.uuids().map(str),
        # no "/" (another route) and no dot segments (the client would resolve them)
        words().filter(lambda s: "/" not in s and s not in (".", "..")),
    ),
    follow=follow_params,
    after=integers(0, MAX_SEQUENCE),
    last_event_id=last_event_ids,
)
@FUZZ
def test_a_run_feed_answers_every_query(
    feeds: Feeds,
    run: int | str,
    follow: Param,
    after: Param,
    last_event_id: str | None,
) -> None:
    run_id = feeds.runs[run] if isinstance(run, int) else run
    request = Request(
        f"/workflows/{quote(run_id, safe='')}/events",
        {"follow": follow, "after": after},
        last_event_id,
    )
    response = request.send(feeds.client)
    if not request.invalid and run_id not in feeds.runs:
        assert response.status_code == 404, response.text
        ErrorBody.model_validate(response.json())
        return
    check_answer(
        response,
        request,
        lambda: [
            e for e in feeds.events if e["run_id"] == run_id and e["sequence"] > request.start()
        ],
    )
