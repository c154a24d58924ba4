"""Recommended concurrency and batch size from what a probe measured.

The plain baseline the connection-optimization model is compared against: Little's law for
concurrency (requests in flight = target rate x latency), capped by a rate limit the source
announces, and batches sized so one request moves a few seconds' worth of data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import median
from typing import Any

import httpx

# Without a rate limit, aim at this many requests per second against one source.
DEFAULT_TARGET_RPS = 20.0
MAX_CONCURRENCY = 16


@dataclass(frozen=True)
class RateLimit:
    """A rate limit a source announces: `limit` requests per `window_s` seconds."""

    limit: int
    window_s: float
    remaining: int | None = None

    @property
    def rps(self) -> float:
        return self.limit / self.window_s

    def as_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "window_s": self.window_s, "remaining": self.remaining}


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    match = re.match(r"\s*(\d+)", value)
    return int(match.group(1)) if match else None


def rate_limit_from_headers(headers: httpx.Headers) -> RateLimit | None:
    """Read X-RateLimit-* or the IETF RateLimit / RateLimit-Policy headers, if present."""
    limit = _int(headers.get("x-ratelimit-limit") or headers.get("ratelimit-limit"))
    if limit is None:
        return None
    window = 60.0  # GitHub-style headers give no window; most APIs count per minute
    policy = headers.get("ratelimit-policy") or headers.get("x-ratelimit-policy") or ""
    if match := re.search(r"w=(\d+)", policy):
        window = float(match.group(1))
    elif (explicit := _int(headers.get("x-ratelimit-window"))) is not None:
        window = float(explicit)
    remaining = _int(headers.get("x-ratelimit-remaining") or headers.get("ratelimit-remaining"))
    return RateLimit(limit=max(limit, 1), window_s=max(window, 1.0), remaining=remaining)


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    """Median, min and max of the probe latencies."""
    return {
        "median_ms": round(median(samples_ms), 3),
        "min_ms": round(min(samples_ms), 3),
        "max_ms": round(max(samples_ms), 3),
    }


def recommend_http(latency_ms: float, rate_limit: RateLimit | None) -> dict[str, Any]:
    """Concurrency by Little's law (capped by the rate limit) and a page size by latency."""
    target_rps = DEFAULT_TARGET_RPS
    basis = f"latency {latency_ms:.1f} ms, target {target_rps:g} req/s"
    if rate_limit is not None:
        # Keep 20% headroom under the announced limit.
        target_rps = min(target_rps, rate_limit.rps * 0.8)
        limit = f"{rate_limit.limit}/{rate_limit.window_s:g}s"
        basis = f"latency {latency_ms:.1f} ms, rate limit {limit}"
    concurrency = _clamp(math.ceil(target_rps * latency_ms / 1000.0), 1, MAX_CONCURRENCY)
    # Slow round trips pay for themselves with bigger pages.
    batch = _clamp(100 * math.ceil(max(latency_ms, 1.0) / 100.0), 100, 1000)
    return {
        "concurrency": concurrency,
        "batch_size": batch,
        "requests_per_s": round(target_rps, 3),
        "basis": basis,
    }


def recommend_files(latency_ms: float, *, remote: bool, mean_file_bytes: float | None) -> dict:
    """Parallel copies by listing latency (object stores gain most); files per batch by size."""
    concurrency = _clamp(math.ceil(latency_ms / 10.0), 4, 32) if remote else 4
    # About 256 MiB per batch, between 1 and 1000 files.
    per_file = mean_file_bytes or 1_000_000
    batch = _clamp(int((256 << 20) / max(per_file, 1.0)), 1, 1000)
    return {
        "concurrency": concurrency,
        "batch_size": batch,
        "basis": f"{'object store' if remote else 'local disk'}, listing {latency_ms:.1f} ms, "
        f"mean file {int(per_file)} bytes",
    }


def recommend_postgres(
    latency_ms: float, *, max_connections: int | None, row_bytes: float | None
) -> dict[str, Any]:
    """Chunks of about 8 MiB of rows; at most a tenth of the server's connections."""
    width = row_bytes or 200.0
    batch = _clamp(int((8 << 20) / max(width, 1.0)), 1000, 100_000)
    cap = max(1, (max_connections or 40) // 10)
    concurrency = _clamp(math.ceil(latency_ms / 5.0), 1, min(cap, 8))
    return {
        "concurrency": concurrency,
        "batch_size": batch,
        "basis": f"round trip {latency_ms:.1f} ms, ~{int(width)} bytes/row, "
        f"max_connections {max_connections}",
    }


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
