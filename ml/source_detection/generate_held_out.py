"""REST JSON families held out of training: the evaluation's unseen frameworks.

OData, Spring Data REST, HAL, Relay connections, Elasticsearch scroll, Shopify, Laravel,
Contentful and Solr, written with the same helpers as the training families (generate.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ml.source_detection.generate import (
    RESOURCES,
    Made,
    base_url,
    cursor_pagination,
    json_headers,
    next_pagination,
    records,
)


def f_odata(rng: random.Random, style: str) -> Made:
    res = rng.choice(("People", "Products", "Orders", "Customers", "Airports"))
    url = f"https://services.example.com/odata/{res}"
    if rng.random() < 0.7:
        payload: dict[str, Any] = {
            "@odata.context": f"{url}/$metadata#{res}",
            "value": records(rng, "camel"),
        }
        if rng.random() < 0.4:
            payload = {"@odata.context": payload["@odata.context"], "@odata.count": 91, **payload}
        payload["@odata.nextLink"] = f"{url}?$skiptoken=8"
        headers = json_headers(rng, "application/json;odata.metadata=minimal")
        headers["OData-Version"] = "4.0"
        return (
            url,
            headers,
            payload,
            "value",
            next_pagination("@odata.nextLink"),
            {"@odata.nextLink": "next_link"},
        )
    payload = {  # OData v2 verbose JSON
        "d": {"results": records(rng, "camel"), "__count": "91", "__next": f"{url}?$skip=20"}
    }
    headers = json_headers(rng)
    headers["DataServiceVersion"] = "2.0"
    return (
        url,
        headers,
        payload,
        "d.results",
        next_pagination("d.__next"),
        {"d.__next": "next_link"},
    )


def f_spring_rest(rng: random.Random, style: str) -> Made:
    res = rng.choice(RESOURCES)
    url = base_url(rng, res)
    size = rng.choice((20, 50))
    payload = {
        "_embedded": {res: records(rng, "camel")},
        "_links": {
            "first": {"href": f"{url}?page=0&size={size}"},
            "self": {"href": url},
            "next": {"href": f"{url}?page=1&size={size}"},
            "last": {"href": f"{url}?page=9&size={size}"},
            "profile": {"href": f"{url}/profile/{res}"},
        },
        "page": {"size": size, "totalElements": 480, "totalPages": 10, "number": 0},
    }
    headers = json_headers(rng, "application/hal+json")
    path = "_links.next.href"
    roles = {path: "next_link", "page.number": "page", "page.size": "size"}
    return url, headers, payload, f"_embedded.{res}", next_pagination(path), roles


def f_hal(rng: random.Random, style: str) -> Made:
    res = rng.choice(RESOURCES)
    url = base_url(rng, res)
    payload: dict[str, Any] = {
        "_links": {"self": {"href": url}, "next": {"href": f"{url}?page=2"}},
        "count": 25,
        "total": rng.randint(30, 900),
        "_embedded": {rng.choice((res, "items")): records(rng, style)},
    }
    key = next(iter(payload["_embedded"]))
    headers = json_headers(rng, "application/hal+json")
    return (
        url,
        headers,
        payload,
        f"_embedded.{key}",
        next_pagination("_links.next.href"),
        {"_links.next.href": "next_link"},
    )


def f_relay(rng: random.Random, style: str) -> Made:
    res = rng.choice(RESOURCES)
    edges = [{"node": r, "cursor": f"Y3Vyc29y{k}"} for k, r in enumerate(records(rng, "camel"))]
    conn: dict[str, Any] = {
        "edges": edges,
        "pageInfo": {"hasNextPage": True, "endCursor": "Y3Vyc29yOjk=", "startCursor": "Y3Vy"},
    }
    if rng.random() < 0.5:
        conn["totalCount"] = 321
    if rng.random() < 0.5:
        payload: dict[str, Any] = {"data": {res: conn}}
        prefix = f"data.{res}"
    else:
        payload, prefix = conn, ""
    cpath = f"{prefix}.pageInfo.endCursor" if prefix else "pageInfo.endCursor"
    mpath = cpath.replace("endCursor", "hasNextPage")
    pag = cursor_pagination(cpath, cursor_param="after")
    path = f"{prefix}.edges" if prefix else "edges"
    return (
        base_url(rng, res),
        json_headers(rng),
        payload,
        path,
        pag,
        {cpath: "cursor", mpath: "more"},
    )


def f_elastic(rng: random.Random, style: str) -> Made:
    index = rng.choice(RESOURCES)
    hits = [
        {"_index": index, "_id": str(r["id"]), "_score": 1.0, "_source": r}
        for r in records(rng, "snake")
    ]
    payload = {
        "_scroll_id": "DXF1ZXJ5QW5kRmV0Y2gBAAAAAAAAAD4WYm9laVYtZndUQlNsdDcwakFMNjU1QQ==",
        "took": rng.randint(1, 40),
        "timed_out": False,
        "_shards": {"total": 5, "successful": 5, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": 1200, "relation": "eq"}, "max_score": 1.0, "hits": hits},
    }
    url = f"http://es.internal:9200/{index}/_search?scroll=1m"
    return (
        url,
        json_headers(rng),
        payload,
        "hits.hits",
        cursor_pagination("_scroll_id", cursor_param="scroll_id"),
        {"_scroll_id": "cursor"},
    )


def f_shopify(rng: random.Random, style: str) -> Made:
    res = rng.choice(("products", "orders", "customers", "collects"))
    url = f"https://acme.myshopify.com/admin/api/2024-01/{res}.json"
    headers = json_headers(rng)
    headers["Link"] = f'<{url}?limit=50&page_info=eyJsYXN0X2lk>; rel="next"'
    headers["X-Shopify-Shop-Api-Call-Limit"] = "1/40"
    return (
        url + "?limit=50",
        headers,
        {res: records(rng, "snake")},
        res,
        {"type": "link_header"},
        {},
    )


def f_laravel(rng: random.Random, style: str) -> Made:
    url = base_url(rng, rng.choice(RESOURCES))
    payload = {
        "current_page": 1,
        "data": records(rng, "snake"),
        "first_page_url": f"{url}?page=1",
        "from": 1,
        "last_page": 8,
        "last_page_url": f"{url}?page=8",
        "links": [
            {"url": None, "label": "&laquo; Previous", "active": False},
            {"url": f"{url}?page=1", "label": "1", "active": True},
            {"url": f"{url}?page=2", "label": "Next &raquo;", "active": False},
        ],
        "next_page_url": f"{url}?page=2",
        "path": url,
        "per_page": 15,
        "prev_page_url": None,
        "to": 15,
        "total": 120,
    }
    roles = {"next_page_url": "next_link", "current_page": "page", "per_page": "size"}
    return url, json_headers(rng), payload, "data", next_pagination("next_page_url"), roles


def f_contentful(rng: random.Random, style: str) -> Made:
    url = "https://cdn.contentful.com/spaces/abc123/environments/master/entries"
    items = [
        {"sys": {"id": str(r.pop("id")), "type": "Entry"}, "fields": r}
        for r in records(rng, "camel")
    ]
    payload = {"sys": {"type": "Array"}, "total": 340, "skip": 0, "limit": 100, "items": items}
    if rng.random() < 0.5:
        payload["includes"] = {"Asset": [{"sys": {"id": "a1"}, "fields": {"title": "x"}}]}
    pag = {"type": "offset", "offset_param": "skip", "size_param": "limit", "page_size": 100}
    return url, json_headers(rng), payload, "items", pag, {"skip": "offset", "limit": "size"}


def f_solr(rng: random.Random, style: str) -> Made:
    url = f"http://solr.internal:8983/solr/{rng.choice(RESOURCES)}/select?q=*:*&rows=10"
    payload = {
        "responseHeader": {"status": 0, "QTime": 3, "params": {"q": "*:*", "rows": "10"}},
        "response": {
            "numFound": 4211,
            "start": 0,
            "numFoundExact": True,
            "docs": records(rng, "snake"),
        },
    }
    pag = {"type": "offset", "offset_param": "start", "size_param": "rows", "page_size": 10}
    return (
        url,
        json_headers(rng, "text/plain"),
        payload,
        "response.docs",
        pag,
        {"response.start": "offset"},
    )


REST_HELD_OUT: dict[str, Callable[[random.Random, str], Made]] = {
    "odata": f_odata,
    "spring_data_rest": f_spring_rest,
    "hal": f_hal,
    "relay": f_relay,
    "elasticsearch": f_elastic,
    "shopify": f_shopify,
    "laravel": f_laravel,
    "contentful": f_contentful,
    "solr": f_solr,
}
