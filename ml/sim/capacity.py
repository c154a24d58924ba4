"""Seeded sources with a hidden capacity, in simulated seconds: what pushing a source costs.

A source is a c-server FIFO queue (c = its hidden concurrency capacity) with a bounded wait
queue, an optional per-second token bucket, and a service time that grows with the page size
(`base + per_record * records`, lognormal noise). Pushed past its capacity a request waits in
the queue (latency rises, as a real overloaded API's does); past the queue it is refused at
once with 429 (or 503 for sources that overload that way), with or without `Retry-After`.
Families:
- `small_capacity`, `large_capacity`: one to four servers, or sixteen to sixty-four;
- `strict_rate`: a per-second token bucket (sometimes advertised in `RateLimit-Policy`);
- `noisy`: heavy latency noise and random 5xx not caused by load;
- `capacity_drop`: the capacity falls to a quarter mid-run (held out of training);
- `rate_and_capacity`: a rate limit in front of a small capacity that overloads with 503s
  (held out of training).
Nothing sleeps: `run_episode` is a discrete-event simulation of one client walking all pages.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

FAMILIES = (
    "small_capacity",
    "large_capacity",
    "strict_rate",
    "noisy",
    "capacity_drop",
    "rate_and_capacity",
)
TRAIN_FAMILIES = FAMILIES[:4]
HELD_OUT_FAMILIES = FAMILIES[4:]
REJECT_S = 0.002  # a refusal costs the server almost nothing and answers at once


@dataclass(frozen=True)
class SourceSpec:
    """The hidden truth of one simulated source."""

    family: str
    seed: int
    capacity: int  # concurrent requests served at once
    queue: int  # requests that may wait beyond the capacity before refusals start
    base_s: float  # fixed cost of one request
    per_record_s: float  # cost of each record in a page
    noise: float  # sigma of the lognormal service-time factor
    max_page_size: int  # a larger page is clamped by the source
    rate_per_s: float | None = None  # token bucket refill
    burst: int = 1
    overload_status: int = 429
    retry_after: bool = False  # whether refusals say when to come back
    advertises_rate: bool = False  # RateLimit-Policy header on every answer
    error_rate: float = 0.0  # 5xx not caused by load
    drop_at_s: float | None = None
    drop_to: int | None = None
    records: int = 20_000

    def service_s(self, records: int) -> float:
        """Mean service time of a page of `records`."""
        return (self.base_s + self.per_record_s * records) * math.exp(self.noise**2 / 2)

    def capacity_at(self, t: float) -> int:
        """Capacity at simulated time `t` (after a drop, the lower one)."""
        if self.drop_at_s is not None and self.drop_to is not None and t >= self.drop_at_s:
            return self.drop_to
        return self.capacity

    def ideal_throughput(self, page_sizes: tuple[int, ...] = (100, 250, 500, 1000)) -> float:
        """Records/s a client that knew the truth could sustain (the normaliser of scores)."""
        best = 0.0
        for size in page_sizes:
            page = min(size, self.max_page_size)
            by_capacity = self.capacity * page / self.service_s(page)
            by_rate = self.rate_per_s * page if self.rate_per_s else math.inf
            best = max(best, min(by_capacity, by_rate))
        return best

    def comfortable_latency_s(self) -> float:
        """What the source's latency budget is taken to be: twice an unloaded 100-record page."""
        return 2 * self.service_s(min(100, self.max_page_size))


def make_source(family: str, seed: int, *, records: int = 20_000) -> SourceSpec:
    """One source of `family`, drawn reproducibly from `seed`."""
    rng = np.random.default_rng([FAMILIES.index(family), seed])
    base = float(rng.uniform(0.02, 0.3))
    per_record = float(rng.uniform(0.00005, 0.002))
    max_page = int(rng.choice([100, 200, 500, 1000]))
    common = SourceSpec(
        family=family,
        seed=seed,
        capacity=1,
        queue=0,
        base_s=base,
        per_record_s=per_record,
        max_page_size=max_page,
        records=records,
        noise=float(rng.uniform(0.1, 0.3)),
        retry_after=bool(rng.random() < 0.5),
    )
    if family == "small_capacity":
        return replace(common, capacity=int(rng.integers(1, 5)), queue=int(rng.integers(0, 3)))
    if family == "large_capacity":
        return replace(common, capacity=int(rng.integers(16, 65)), queue=int(rng.integers(2, 16)))
    if family == "strict_rate":
        return replace(
            common,
            capacity=int(rng.integers(16, 65)),
            queue=8,
            rate_per_s=float(rng.uniform(2.0, 20.0)),
            burst=int(rng.integers(1, 4)),
            advertises_rate=bool(rng.random() < 0.5),
        )
    if family == "noisy":
        return replace(
            common,
            noise=float(rng.uniform(0.5, 0.9)),
            capacity=int(rng.integers(4, 17)),
            queue=int(rng.integers(1, 6)),
            error_rate=float(rng.uniform(0.005, 0.03)),
        )
    if family == "capacity_drop":
        cap = int(rng.integers(8, 33))
        spec = replace(common, capacity=cap, queue=int(rng.integers(1, 6)))
        # Half-way through what a good client would take: the drop bites every policy.
        half = 0.5 * records / spec.ideal_throughput()
        return replace(spec, drop_at_s=half, drop_to=max(1, cap // 4))
    if family == "rate_and_capacity":
        return replace(
            common,
            capacity=int(rng.integers(2, 9)),
            queue=int(rng.integers(0, 3)),
            rate_per_s=float(rng.uniform(3.0, 30.0)),
            burst=int(rng.integers(1, 6)),
            overload_status=503,
            advertises_rate=bool(rng.random() < 0.3),
        )
    raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")


@dataclass(frozen=True)
class Answer:
    """One response as the client sees it."""

    status: int
    latency_s: float
    records: int
    retry_after_s: float | None
    rate_hint_per_s: float | None


class Client(Protocol):
    """What drives the requests: chooses page size and pacing, hears every answer."""

    def page_size(self) -> int: ...

    def send_delay(self, now: float, in_flight: int) -> float | None:
        """Seconds to wait before the next send; None: blocked until a request finishes."""
        ...

    def sent(self, now: float) -> None: ...

    def answered(self, now: float, answer: Answer, in_flight: int) -> None: ...


@dataclass
class Outcome:
    """What one episode did, to the client and to the source."""

    records: int
    elapsed_s: float
    requests: int
    rejected: int  # 429s and overload 503s
    errors: int  # other 5xx
    latencies: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Records per simulated second."""
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p99_s(self) -> float:
        """99th percentile latency of every answer, refusals included."""
        return float(np.percentile(self.latencies, 99)) if self.latencies else 0.0


def retry_delay(attempt: int, retry_after_s: float | None, rng: np.random.Generator) -> float:
    """The collector's per-request retry wait (stamina: 0.2 s doubling to 10 s, 1 s jitter)."""
    if retry_after_s is not None:
        return retry_after_s
    return min(10.0, 0.2 * 2 ** (attempt - 1)) + float(rng.uniform(0.0, 1.0))


def run_episode(
    source: SourceSpec, client: Client, *, seed: int, limit_s: float = 3600.0
) -> Outcome:
    """Walk every record of `source` with `client`; the same seed gives the same episode."""
    rng = np.random.default_rng([source.seed, seed, 7])
    events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, request id)
    seq = 0
    now = 0.0
    tokens, token_t = float(source.burst), 0.0
    busy = 0
    waiting: list[int] = []  # queued request ids, FIFO
    req_pages: dict[int, int] = {}
    req_sent: dict[int, float] = {}
    req_attempt: dict[int, int] = {}
    answers: dict[int, tuple[int, float | None]] = {}
    retries: list[tuple[float, int, int]] = []  # (ready at, records, attempt)
    unclaimed, fetched, in_flight = source.records, 0, 0
    out = Outcome(0, 0.0, 0, 0, 0)
    hint = source.rate_per_s if source.advertises_rate else None
    next_id = 0

    def push(t: float, kind: str, rid: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, rid))

    def start(rid: int, t: float) -> None:
        nonlocal busy
        busy += 1
        records = req_pages[rid]
        service = (source.base_s + source.per_record_s * records) * float(
            rng.lognormal(0.0, source.noise)
        )
        failed = source.error_rate > 0 and rng.random() < source.error_rate
        answers[rid] = (500 if failed else 200, None)
        push(t + service, "done", rid)

    while fetched < source.records and now < limit_s:
        # Send whatever the client allows now: retries first, then new pages.
        while True:
            retries.sort()
            has_retry = bool(retries) and retries[0][0] <= now
            if not has_retry and unclaimed <= 0:
                break
            delay = client.send_delay(now, in_flight)
            if delay is None:
                break
            if delay > 1e-9:
                push(now + delay, "wake", -1)
                break
            if has_retry:
                _, records, attempt = retries.pop(0)
            else:
                records = min(client.page_size(), source.max_page_size, unclaimed)
                unclaimed -= records
                attempt = 1
            rid, next_id = next_id, next_id + 1
            req_pages[rid], req_sent[rid], req_attempt[rid] = records, now, attempt
            client.sent(now)
            in_flight += 1
            out.requests += 1
            # The source decides at arrival: token bucket, then servers, then the queue.
            if source.rate_per_s:
                tokens = min(source.burst, tokens + (now - token_t) * source.rate_per_s)
                token_t = now
            if source.rate_per_s and tokens < 1.0:
                wait = (1.0 - tokens) / source.rate_per_s
                answers[rid] = (429, float(math.ceil(wait)) if source.retry_after else None)
                push(now + REJECT_S, "reject", rid)
                continue
            if source.rate_per_s:
                tokens -= 1.0
            if busy < source.capacity_at(now):
                start(rid, now)
            elif len(waiting) < source.queue:
                waiting.append(rid)
            else:
                answers[rid] = (source.overload_status, 1.0 if source.retry_after else None)
                push(now + REJECT_S, "reject", rid)
        if retries and not events:
            push(min(r[0] for r in retries), "wake", -1)
        if not events:
            break
        now, _, kind, rid = heapq.heappop(events)
        if kind == "wake":
            continue
        if kind == "done":
            busy -= 1
            while waiting and busy < source.capacity_at(now):
                start(waiting.pop(0), now)
        status, retry_after = answers.pop(rid)
        records = req_pages.pop(rid)
        latency = now - req_sent.pop(rid)
        attempt = req_attempt.pop(rid)
        in_flight -= 1
        out.latencies.append(latency)
        got = records if status == 200 else 0
        client.answered(now, Answer(status, latency, got, retry_after, hint), in_flight)
        if status == 200:
            fetched += records
            continue
        if status == 429 or status == source.overload_status:
            out.rejected += 1
        else:
            out.errors += 1
        retries.append((now + retry_delay(attempt, retry_after, rng), records, attempt + 1))
        push(retries[-1][0], "wake", -1)
    out.records, out.elapsed_s = fetched, now
    return out


def scenarios(
    families: tuple[str, ...], seeds: range, *, records: int = 20_000
) -> list[SourceSpec]:
    """Every (family, seed) source, in a stable order."""
    return [make_source(f, s, records=records) for f in families for s in seeds]
