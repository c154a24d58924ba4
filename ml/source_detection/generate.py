"""Labelled probes of REST JSON APIs in the conventions of real frameworks and public APIs.

Each family writes responses the way its framework does (DRF's `count/next/results`, JSON:API's
`data/links.next`, OData's `value/@odata.nextLink`, ...), with varied resource names, nesting,
key casing, distractor lists, wrong or missing Content-Type and extensionless URLs. Families
are the unit of the held-out split: whole frameworks the model never saw in training.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ml.source_detection.body import HEAD_BYTES


@dataclass
class Sample:
    family: str
    url: str
    status: int | None
    headers: dict[str, str]
    body: bytes
    kind: str
    file_format: str | None = None
    records_path: str | None = None
    pagination: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    roles: dict[str, str] = field(default_factory=dict)  # leaf path -> pagination role


RESOURCES = [
    "orders",
    "users",
    "products",
    "events",
    "customers",
    "tickets",
    "invoices",
    "members",
    "messages",
    "issues",
    "articles",
    "posts",
    "comments",
    "payments",
    "shipments",
    "devices",
    "readings",
    "jobs",
    "tasks",
    "accounts",
]
HOSTS = ("api.example.com", "shop.example.org", "data.acme.io", "127.0.0.1:8000", "svc.internal")
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "red",
    "blue",
    "green",
    "fast",
    "slow",
    "open",
    "closed",
    "new",
    "old",
    "north",
    "south",
]


def camel(snake: str) -> str:
    """`next_page_url` -> `nextPageUrl`."""
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def styled(rng: random.Random, snake: str, style: str | None = None) -> str:
    return camel(snake) if (style or rng.choice(("snake", "camel"))) == "camel" else snake


def record(rng: random.Random, i: int, style: str) -> dict[str, Any]:
    """One record with a varied set of fields (some nested, some lists of scalars)."""
    rec: dict[str, Any] = {"id": i if rng.random() < 0.7 else f"{rng.choice(WORDS)}_{i:05d}"}
    pool = {
        "name": lambda: f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
        "status": lambda: rng.choice(("active", "pending", "done")),
        "amount": lambda: round(rng.uniform(1, 500), 2),
        "created_at": lambda: f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
        "updated_at": lambda: f"2026-11-{rng.randint(1, 28):02d}T12:30:00Z",
        "email": lambda: f"{rng.choice(WORDS)}{i}@example.com",
        "title": lambda: " ".join(rng.choices(WORDS, k=rng.randint(2, 6))),
        "description": lambda: " ".join(rng.choices(WORDS, k=rng.randint(5, 30))),
        "tags": lambda: rng.sample(WORDS, rng.randint(0, 3)),
        "count": lambda: rng.randint(0, 99),
        "address": lambda: {"city": rng.choice(WORDS), "zip": f"{rng.randint(10000, 99999)}"},
        "is_enabled": lambda: rng.random() < 0.5,
    }
    for key in rng.sample(sorted(pool), rng.randint(2, 7)):
        rec[styled(rng, key, style)] = pool[key]()
    return rec


def records(rng: random.Random, style: str, n: int | None = None) -> list[dict[str, Any]]:
    start = rng.randint(1, 5000)
    return [record(rng, start + k, style) for k in range(rng.randint(1, 25) if n is None else n)]


def base_url(rng: random.Random, resource: str, ext: str = "") -> str:
    scheme = rng.choice(("https", "https", "http"))
    prefix = rng.choice(("", "/api", "/api/v1", "/v2", "/rest"))
    return f"{scheme}://{rng.choice(HOSTS)}{prefix}/{resource}{ext}"


def json_headers(rng: random.Random, ctype: str = "application/json") -> dict[str, str]:
    """JSON response headers; sometimes the Content-Type is wrong or missing."""
    roll = rng.random()
    headers: dict[str, str] = {}
    if roll < 0.75:
        headers["Content-Type"] = ctype + rng.choice(("", "; charset=utf-8"))
    elif roll < 0.88:
        headers["Content-Type"] = rng.choice(
            ("text/plain", "text/html", "application/octet-stream")
        )
    if rng.random() < 0.3:
        headers["ETag"] = f'W/"{rng.getrandbits(32):x}"'
    if rng.random() < 0.3:
        headers["X-RateLimit-Limit"] = "5000"
    headers["Server"] = rng.choice(("nginx", "gunicorn", "uvicorn", "Kestrel", "Apache", "envoy"))
    return headers


def encode(rng: random.Random, payload: Any) -> bytes:
    indent = rng.choice((None, None, 2, 4))
    return json.dumps(payload, indent=indent).encode()


def link_header(url: str, nxt: str, rng: random.Random) -> str:
    parts = [f'<{nxt}>; rel="next"', f'<{url}?page=9>; rel="last"']
    if rng.random() < 0.5:
        parts.insert(0, f'<{url}?page=1>; rel="first"')
    return ", ".join(parts)


Made = tuple[str, dict[str, str], Any, str, dict[str, Any], dict[str, str]]
# (url, headers, payload, records_path, pagination, roles)


def nest(rng: random.Random, payload: dict[str, Any], path: str, roles: dict[str, str]) -> tuple:
    """Sometimes wrap the whole envelope one level down (`{"response": {...}}`)."""
    if rng.random() < 0.25:
        wrapper = rng.choice(("response", "result", "payload", "body"))
        roles = {f"{wrapper}.{k}": v for k, v in roles.items()}
        return {wrapper: payload, "status": "ok"}, f"{wrapper}.{path}" if path else wrapper, roles
    return payload, path, roles


def distract(rng: random.Random, payload: dict[str, Any]) -> None:
    """What is not the records nor the pagination: warnings, facets, request ids, timings."""
    if rng.random() < 0.5:
        extras = {
            "took": rng.randint(0, 90),
            "failed": 0,
            "errors": 0,
            "status": rng.choice((0, 200, "ok")),
            "version": rng.choice((0, 1, 2)),
            "request_id": f"req_{rng.getrandbits(48):x}",
            "trace_id": f"{rng.getrandbits(64):016x}",
            "cached": rng.random() < 0.5,
            "generated_at": "2026-11-30T08:00:00Z",
            "self": "/api/self",
        }
        for key in rng.sample(sorted(extras), rng.randint(1, 3)):
            payload.setdefault(key, extras[key])
    if rng.random() < 0.3:
        name = rng.choice(("warnings", "errors", "facets", "included", "sort", "fields"))
        payload[name] = (
            [{"name": rng.choice(WORDS), "count": rng.randint(1, 9)}]
            if rng.random() < 0.5
            else [rng.choice(WORDS) for _ in range(rng.randint(0, 3))]
        )


def f_json_server(rng: random.Random, style: str) -> Made:
    res = rng.choice(RESOURCES)
    url = base_url(rng, res)
    headers = json_headers(rng)
    headers["X-Total-Count"] = str(rng.randint(30, 900))
    if rng.random() < 0.7:
        headers["Link"] = link_header(url, f"{url}?_page=2&_limit=10", rng)
        return (
            url + "?_page=1&_limit=10",
            headers,
            records(rng, style),
            "",
            {"type": "link_header"},
            {},
        )
    return url, headers, records(rng, style), "", {"type": "none"}, {}


def f_drf(rng: random.Random, style: str) -> Made:
    res = rng.choice(RESOURCES)
    url = base_url(rng, res) + "/"
    cursor = rng.random() < 0.3
    nxt = f"{url}?cursor=cD0yMDI2" if cursor else f"{url}?page=2"
    payload: dict[str, Any] = {} if cursor else {"count": rng.randint(20, 999)}
    payload["next"] = nxt if rng.random() < 0.9 else None
    payload["previous"] = None
    payload["results"] = records(rng, style)
    return (
        url,
        json_headers(rng),
        payload,
        "results",
        next_pagination("next"),
        {"next": "next_link"},
    )


def next_pagination(path: str) -> dict[str, Any]:
    return {"type": "next_link_in_body", "next_path": path}


def cursor_pagination(path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "cursor_in_body", "cursor_path": path, **extra}


def f_jsonapi(rng: random.Random, style: str) -> Made:
    res = rng.choice(RESOURCES)
    url = base_url(rng, res)
    data = [{"type": res, "id": str(r.pop("id")), "attributes": r} for r in records(rng, style)]
    payload: dict[str, Any] = {
        "data": data,
        "links": {"self": f"{url}?page[number]=1", "next": f"{url}?page[number]=2"},
        "meta": {"total": rng.randint(30, 500)},
    }
    roles = {"links.next": "next_link"}
    if rng.random() < 0.3:  # JSON:API 1.1 link objects
        payload["links"] = {k: {"href": v} for k, v in payload["links"].items()}
        roles = {"links.next.href": "next_link"}
    if rng.random() < 0.4:
        payload["included"] = [{"type": "people", "id": "9", "attributes": {"name": "x"}}]
    if rng.random() < 0.3:
        payload["jsonapi"] = {"version": "1.0"}
    headers = json_headers(rng, "application/vnd.api+json")
    return url, headers, payload, "data", next_pagination(next(iter(roles))), roles


def f_github(rng: random.Random, style: str) -> Made:
    res = rng.choice(("issues", "pulls", "commits", "repos", "events", "stargazers"))
    url = f"https://api.github.com/repos/acme/widget/{res}"
    headers = json_headers(rng, "application/json")
    headers["X-GitHub-Media-Type"] = "github.v3"
    if rng.random() < 0.75:
        headers["Link"] = link_header(url, f"{url}?per_page=30&page=2", rng)
        return url, headers, records(rng, style), "", {"type": "link_header"}, {}
    return url, headers, records(rng, style), "", {"type": "none"}, {}


def f_stripe(rng: random.Random, style: str) -> Made:
    res = rng.choice(("charges", "customers", "invoices", "subscriptions", "refunds"))
    url = f"https://api.stripe.com/v1/{res}"
    payload = {"object": "list", "data": records(rng, style), "has_more": True, "url": f"/v1/{res}"}
    pag = cursor_pagination(
        "", cursor_from="last_record", cursor_field="id", cursor_param="starting_after"
    )
    pag["cursor_path"] = None
    return url, json_headers(rng), payload, "data", pag, {"has_more": "more"}


def f_google(rng: random.Random, style: str) -> Made:
    res = rng.choice(("files", "events", "messages", "items", "users"))
    url = f"https://www.googleapis.com/drive/v3/{res}"
    key = rng.choice(("items", res))
    payload = {"kind": f"drive#{res}List", key: records(rng, "camel"), "nextPageToken": "CgwI8"}
    if rng.random() < 0.5:
        payload = {"kind": payload["kind"], "nextPageToken": "CgwI8", key: payload[key]}
    return (
        url,
        json_headers(rng),
        payload,
        key,
        cursor_pagination("nextPageToken"),
        {"nextPageToken": "cursor"},
    )


def f_slack(rng: random.Random, style: str) -> Made:
    key = rng.choice(("members", "channels", "messages", "files"))
    url = f"https://slack.com/api/{rng.choice(('users.list', 'conversations.list'))}"
    payload = {"ok": True, key: records(rng, "snake")}
    payload["response_metadata"] = {"next_cursor": "dXNlcjpVMEc5V0ZYTlo="}
    path = "response_metadata.next_cursor"
    return url, json_headers(rng), payload, key, cursor_pagination(path), {path: "cursor"}


def f_twitter(rng: random.Random, style: str) -> Made:
    url = "https://api.twitter.com/2/users/12/tweets"
    meta = {"result_count": 10, "newest_id": "1460323737035677698", "next_token": "7140dibdnow9c"}
    payload = {"data": records(rng, "snake"), "meta": meta}
    return (
        url,
        json_headers(rng),
        payload,
        "data",
        cursor_pagination("meta.next_token"),
        {"meta.next_token": "cursor"},
    )


def f_zendesk(rng: random.Random, style: str) -> Made:
    res = rng.choice(("tickets", "users", "organizations"))
    url = f"https://acme.zendesk.com/api/v2/{res}.json"
    payload = {
        res: records(rng, "snake"),
        "next_page": f"{url}?page=2",
        "previous_page": None,
        "count": rng.randint(100, 9000),
    }
    return (
        url,
        json_headers(rng),
        payload,
        res,
        next_pagination("next_page"),
        {"next_page": "next_link"},
    )


def f_wordpress(rng: random.Random, style: str) -> Made:
    res = rng.choice(("posts", "pages", "comments", "media"))
    url = f"https://blog.example.com/wp-json/wp/v2/{res}?page=1&per_page=10"
    headers = json_headers(rng)
    headers.update({"X-WP-Total": str(rng.randint(20, 400)), "X-WP-TotalPages": "7"})
    pag = {"type": "page", "page_param": "page", "size_param": "per_page", "page_size": 10}
    return url, headers, records(rng, "snake", 10), "", pag, {}


def f_jira(rng: random.Random, style: str) -> Made:
    url = "https://acme.atlassian.net/rest/api/3/search"
    key = rng.choice(("issues", "values", "worklogs"))
    payload = {"expand": "schema,names", "startAt": 0, "maxResults": 50, "total": 1234}
    payload[key] = records(rng, "camel")
    pag = {"type": "offset", "offset_param": "startAt", "size_param": "maxResults", "page_size": 50}
    return url, json_headers(rng), payload, key, pag, {"startAt": "offset", "maxResults": "size"}


def f_spring_page(rng: random.Random, style: str) -> Made:
    """Spring Data's Page<T> as plain JSON (Spring MVC, not Spring Data REST)."""
    url = base_url(rng, rng.choice(RESOURCES))
    size = rng.choice((10, 20, 50))
    payload = {
        "content": records(rng, "camel"),
        "pageable": {"pageNumber": 0, "pageSize": size, "offset": 0, "paged": True},
        "totalPages": 12,
        "totalElements": 230,
        "last": False,
        "number": 0,
        "size": size,
        "first": True,
        "empty": False,
    }
    pag = {"type": "page", "page_param": "page", "size_param": "size", "page_size": size}
    pag["start_page"] = 0
    roles = {"number": "page", "size": "size", "pageable.pageNumber": "page"}
    return url, json_headers(rng), payload, "content", pag, roles


META = ("meta", "pagination", "paging", "page_info", "_meta", "")


def f_plain_page(rng: random.Random, style: str) -> Made:
    key = rng.choice(("data", "items", "results", "records", "rows", "list", rng.choice(RESOURCES)))
    size = rng.choice((10, 20, 25, 50, 100))
    meta_key = rng.choice(META)
    page_key, size_key = (
        styled(rng, "page", style),
        styled(rng, rng.choice(("per_page", "page_size", "limit")), style),
    )
    meta = {page_key: 1, size_key: size, styled(rng, "total_pages", style): rng.randint(2, 40)}
    if rng.random() < 0.5:
        meta[styled(rng, "total", style)] = rng.randint(50, 5000)
    payload: dict[str, Any] = {key: records(rng, style)}
    prefix = meta_key and styled(rng, meta_key, style)
    payload.update({prefix: meta} if prefix else meta)
    distract(rng, payload)
    roles = {f"{prefix}.{page_key}" if prefix else page_key: "page"}
    roles[f"{prefix}.{size_key}" if prefix else size_key] = "size"
    payload, path, roles = nest(rng, payload, key, roles)
    pag = {"type": "page", "page_param": "page", "size_param": size_key, "page_size": size}
    url = base_url(rng, rng.choice(RESOURCES))
    if rng.random() < 0.4:
        url += f"?page=1&{size_key}={size}"
    return url, json_headers(rng), payload, path, pag, roles


def f_plain_offset(rng: random.Random, style: str) -> Made:
    key = rng.choice(("data", "items", "results", "entries", "objects", rng.choice(RESOURCES)))
    size = rng.choice((10, 20, 50, 100))
    off_key = rng.choice(("offset", "skip", "start"))
    lim_key = rng.choice(("limit", "count", "max", "size"))
    meta = {off_key: 0, lim_key: size, styled(rng, "total_count", style): rng.randint(50, 5000)}
    payload: dict[str, Any] = {key: records(rng, style)}
    prefix = rng.choice(META)
    payload.update({prefix: meta} if prefix else meta)
    distract(rng, payload)
    roles = {(f"{prefix}.{off_key}" if prefix else off_key): "offset"}
    roles[f"{prefix}.{lim_key}" if prefix else lim_key] = "size"
    payload, path, roles = nest(rng, payload, key, roles)
    pag = {"type": "offset", "offset_param": off_key, "size_param": lim_key, "page_size": size}
    url = base_url(rng, rng.choice(RESOURCES))
    if rng.random() < 0.4:
        url += f"?{off_key}=0&{lim_key}={size}"
    return url, json_headers(rng), payload, path, pag, roles


def f_plain_cursor(rng: random.Random, style: str) -> Made:
    key = rng.choice(("data", "items", "results", "events", "entries", rng.choice(RESOURCES)))
    payload: dict[str, Any] = {key: records(rng, style)}
    token = f"eyJpZCI6{rng.getrandbits(40):x}"
    form = rng.randrange(4)
    if form == 0:
        cpath = styled(rng, "next_cursor", style)
        payload[cpath] = token
    elif form == 1:
        outer = styled(rng, rng.choice(("cursor", "cursors")), style)
        cpath = f"{outer}.{rng.choice(('next', 'after'))}"
        outer, inner = cpath.split(".")
        payload[outer] = {inner: token, "before": None}
    elif form == 2:
        cpath = rng.choice(("continuation", "continuationToken", "next_token", "nextToken"))
        payload[cpath] = token
    else:
        prefix = rng.choice(("meta", "pagination", "paging"))
        cpath = f"{prefix}.{styled(rng, rng.choice(('next_cursor', 'cursor')), style)}"
        payload[prefix] = {cpath.split(".")[1]: token, styled(rng, "has_more", style): True}
    distract(rng, payload)
    payload, path, roles = nest(rng, payload, key, {cpath: "cursor"})
    real_cpath = next(iter(roles))
    return (
        base_url(rng, rng.choice(RESOURCES)),
        json_headers(rng),
        payload,
        path,
        cursor_pagination(real_cpath),
        roles,
    )


def f_plain_next(rng: random.Random, style: str) -> Made:
    key = rng.choice(("data", "items", "results", "records", rng.choice(RESOURCES)))
    url = base_url(rng, rng.choice(RESOURCES))
    nxt = rng.choice((f"{url}?page=2", f"/api/{key}?after=abc", f"{url}?offset=50&limit=50"))
    where = rng.choice(
        ("next", "next_url", "nextLink", "paging.next", "meta.next", "links.next_page")
    )
    payload: dict[str, Any] = {key: records(rng, style)}
    if "." in where:
        outer, inner = where.split(".")
        payload[outer] = {inner: nxt, "previous": None}
    else:
        payload[where] = nxt
    roles = {where: "next_link"}
    if rng.random() < 0.5:  # many APIs give page figures beside the link: the link wins
        page_key = styled(rng, rng.choice(("page", "current_page", "page_number")), style)
        payload[page_key] = 1
        payload[styled(rng, "total_pages", style)] = rng.randint(2, 50)
        roles[page_key] = "page"
    distract(rng, payload)
    payload, path, roles = nest(rng, payload, key, roles)
    return url, json_headers(rng), payload, path, next_pagination(next(iter(roles))), roles


def f_notion(rng: random.Random, style: str) -> Made:
    url = f"https://api.notion.com/v1/{rng.choice(('databases/x/query', 'users', 'search'))}"
    payload = {
        "object": "list",
        "results": records(rng, "snake"),
        "next_cursor": f"{rng.getrandbits(64):x}-4a5b",
        "has_more": True,
        "type": rng.choice(("page_or_database", "user")),
    }
    roles = {"next_cursor": "cursor", "has_more": "more"}
    return url, json_headers(rng), payload, "results", cursor_pagination("next_cursor"), roles


def f_facebook(rng: random.Random, style: str) -> Made:
    url = f"https://graph.facebook.com/v19.0/me/{rng.choice(('posts', 'photos', 'events'))}"
    cursors = {"before": "QVFIUmx1", "after": f"QVFIU{rng.getrandbits(40):x}"}
    nxt = f"{url}?limit=25&after={cursors['after']}"
    payload = {"data": records(rng, "snake"), "paging": {"cursors": cursors, "next": nxt}}
    roles = {"paging.next": "next_link", "paging.cursors.after": "cursor"}
    return url, json_headers(rng), payload, "data", next_pagination("paging.next"), roles


def f_plain_array(rng: random.Random, style: str) -> Made:
    url = base_url(rng, rng.choice(RESOURCES), rng.choice(("", "", ".json")))
    if rng.random() < 0.6:
        return url, json_headers(rng), records(rng, style), "", {"type": "none"}, {}
    key = rng.choice(("data", "items", "results", rng.choice(RESOURCES)))
    payload: dict[str, Any] = {key: records(rng, style)}
    if rng.random() < 0.5:
        payload[styled(rng, "total", style)] = len(payload[key])
    distract(rng, payload)
    payload, path, _ = nest(rng, payload, key, {})
    return url, json_headers(rng), payload, path, {"type": "none"}, {}


REST_TRAIN: dict[str, Callable[[random.Random, str], Made]] = {
    "json_server": f_json_server,
    "drf": f_drf,
    "jsonapi": f_jsonapi,
    "github": f_github,
    "stripe": f_stripe,
    "google": f_google,
    "slack": f_slack,
    "twitter": f_twitter,
    "zendesk": f_zendesk,
    "wordpress": f_wordpress,
    "jira": f_jira,
    "spring_page": f_spring_page,
    "plain_page": f_plain_page,
    "plain_offset": f_plain_offset,
    "plain_cursor": f_plain_cursor,
    "plain_next": f_plain_next,
    "plain_array": f_plain_array,
    "notion": f_notion,
    "facebook": f_facebook,
}


def rest_sample(
    family: str, make: Callable[[random.Random, str], Made], rng: random.Random
) -> Sample:
    """One probe of a REST JSON family."""
    style = rng.choice(("snake", "camel"))
    url, headers, payload, path, pag, roles = make(rng, style)
    body = encode(rng, payload)[:HEAD_BYTES]
    return Sample(family, url, 200, headers, body, "rest_json", None, path, pag, roles)
