"""Labelled probes of everything that is not a REST JSON API: XML APIs, GraphQL endpoints,
files over HTTP, object-store listings, databases and streams by connection string, HTML pages,
and sources the platform cannot read. Families are split the same way as the REST ones."""

# Response bodies stay one literal per line, so each reads as the bytes a server sends.
# ruff: noqa: E501

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Callable

from ml.source_detection.body import HEAD_BYTES
from ml.source_detection.generate import RESOURCES, WORDS, Sample, base_url, records

Other = Callable[[random.Random], Sample]


def _xml_items(rng: random.Random, tag: str, n: int) -> str:
    return "".join(
        f"<{tag}><id>{i}</id><name>{rng.choice(WORDS)}</name><amount>{rng.randint(1, 99)}</amount></{tag}>"
        for i in range(n)
    )


def xml_api(rng: random.Random) -> Sample:
    res = rng.choice(RESOURCES)
    body = f'<{res} count="{rng.randint(5, 90)}">{_xml_items(rng, res[:-1], rng.randint(1, 12))}</{res}>'
    if rng.random() < 0.7:
        body = '<?xml version="1.0" encoding="UTF-8"?>\n' + body
    ctype = rng.choice(("application/xml", "text/xml", "text/plain", ""))
    return _make("xml_api", base_url(rng, res, rng.choice(("", ".xml"))), ctype, body, "rest_xml")


def rss(rng: random.Random) -> Sample:
    items = "".join(
        f"<item><title>{rng.choice(WORDS)}</title><link>https://news.example.com/{i}</link></item>"
        for i in range(rng.randint(1, 8))
    )
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>{items}</channel></rss>'
    ctype = rng.choice(("application/rss+xml", "text/xml", "application/xml"))
    return _make("rss", "https://news.example.com/feed", ctype, body, "rest_xml")


def atom(rng: random.Random) -> Sample:
    entries = "".join(
        f"<entry><id>urn:uuid:{i}</id><title>{rng.choice(WORDS)}</title></entry>"
        for i in range(rng.randint(1, 6))
    )
    body = f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Log</title>{entries}</feed>'
    return _make(
        "atom",
        "https://blog.example.com/atom",
        rng.choice(("application/atom+xml", "text/xml")),
        body,
        "rest_xml",
    )


def soap(rng: random.Random) -> Sample:
    body = (
        '<?xml version="1.0"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
        f"<soap:Body><GetOrdersResponse>{_xml_items(rng, 'Order', rng.randint(1, 6))}"
        "</GetOrdersResponse></soap:Body></soap:Envelope>"
    )
    return _make(
        "soap", "https://erp.example.com/ws/orders", "application/soap+xml", body, "rest_xml"
    )


def graphql_errors(rng: random.Random) -> Sample:
    status = rng.choice((400, 400, 405, 200))
    msg = rng.choice(("Must provide query string.", "GET query missing.", "POST body missing"))
    body = json.dumps({"errors": [{"message": msg, "extensions": {"code": "BAD_REQUEST"}}]})
    ctype = rng.choice(("application/json", "application/graphql-response+json"))
    url = f"https://{rng.choice(('api.example.com', 'gql.acme.io'))}{rng.choice(('/graphql', '/api/graphql', '/gql'))}"
    return _make("graphql_errors", url, ctype, body, "graphql", status=status)


def graphql_typename(rng: random.Random) -> Sample:
    """The cheapest GraphQL probe: `?query={__typename}` answers with the root type."""
    body = json.dumps({"data": {"__typename": rng.choice(("Query", "query_root", "RootQuery"))}})
    url = f"https://{rng.choice(('api.example.com', 'gql.acme.io'))}{rng.choice(('/graphql', '/api/graphql', '/gql'))}?query=%7B__typename%7D"
    return _make("graphql_typename", url, "application/json", body, "graphql")


def apollo_landing(rng: random.Random) -> Sample:
    body = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Apollo Server</title>'
        '<script src="https://embeddable-sandbox.cdn.apollographql.com/_latest/embeddable-sandbox.umd.production.min.js">'
        '</script></head><body><div id="embeddableSandbox"></div></body></html>'
    )
    return _make("apollo_landing", "https://api.example.com/graphql", "text/html", body, "graphql")


def graphiql(rng: random.Random) -> Sample:
    body = (
        '<!doctype html><html><head><title>GraphiQL</title><link href="https://unpkg.com/graphiql/graphiql.min.css" '
        'rel="stylesheet" /></head><body style="margin: 0;"><div id="graphiql" style="height: 100vh;"></div>'
        '<script crossorigin src="https://unpkg.com/graphiql/graphiql.min.js"></script></body></html>'
    )
    return _make(
        "graphiql",
        f"https://hasura.acme.io/v1/graphql{rng.choice(('', '/'))}",
        "text/html; charset=utf-8",
        body,
        "graphql",
    )


def graphql_data(rng: random.Random) -> Sample:
    res = rng.choice(RESOURCES)
    body = json.dumps(
        {
            "data": {
                res: [
                    {"id": str(r["id"]), "__typename": res.title()[:-1]}
                    for r in records(rng, "camel")
                ]
            }
        }
    )
    url = f"https://api.example.com/graphql?query=%7B{res}%7Bid%7D%7D"
    return _make("graphql_data", url, "application/json", body, "graphql")


def _csv(rng: random.Random, delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(["id", "name", "amount", "created_at"])
    for r in records(rng, "snake", rng.randint(5, 80)):
        writer.writerow([r["id"], rng.choice(WORDS), rng.randint(1, 999), "2026-11-01"])
    return out.getvalue().encode()


FILE_FORMATS: dict[str, tuple[str, Callable[[random.Random], bytes]]] = {
    "csv": ("text/csv", lambda rng: _csv(rng, ",")),
    "tsv": ("text/tab-separated-values", lambda rng: _csv(rng, "\t")),
    "json": ("application/json", lambda rng: json.dumps(records(rng, "snake")).encode()),
    "ndjson": (
        "application/x-ndjson",
        lambda rng: "".join(json.dumps(r) + "\n" for r in records(rng, "snake")).encode(),
    ),
    "parquet": (
        "application/vnd.apache.parquet",
        lambda rng: b"PAR1\x15\x04\x15" + rng.randbytes(600),
    ),
    "avro": (
        "application/avro",
        lambda rng: b"Obj\x01\x04\x14avro.codec\x08null" + rng.randbytes(400),
    ),
    "xlsx": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        lambda rng: b"PK\x03\x04\x14\x00\x06\x00\x08\x00[Content_Types].xml" + rng.randbytes(400),
    ),
    "gzip": ("application/gzip", lambda rng: gzip.compress(_csv(rng, ","), mtime=0)),
    "zip": (
        "application/zip",
        lambda rng: b"PK\x03\x04\x14\x00\x00\x00\x08\x00data.csv" + rng.randbytes(300),
    ),
    "xml": (
        "application/xml",
        lambda rng: b'<?xml version="1.0"?><rows><row><a>1</a></row></rows>',
    ),
}
EXT = {"gzip": "csv.gz", "xml": "xml"}


def _file(family: str, rng: random.Random, object_store: bool) -> Sample:
    fmt = rng.choice(sorted(FILE_FORMATS))
    ctype, make = FILE_FORMATS[fmt]
    name = f"{rng.choice(RESOURCES)}-{rng.randint(2020, 2026)}"
    ext = "." + EXT.get(fmt, fmt)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{rng.getrandbits(48):x}"'}
    headers["Last-Modified"] = "Tue, 01 Dec 2026 10:00:00 GMT"
    if object_store:
        # S3/GCS object GETs: extensionless keys and generic or wrong content types are common.
        url = f"https://{rng.choice(('acme-data.s3.amazonaws.com', 'storage.googleapis.com/acme'))}/exports/{name}"
        url += ext if rng.random() < 0.4 else ""
        ctype = rng.choice((ctype, "binary/octet-stream", "application/octet-stream", "text/plain"))
        headers.update(
            {"x-amz-request-id": "4442587FB7D0A2F9", "x-amz-version-id": "null"}
            if "s3" in url
            else {"x-goog-generation": "1700000000", "x-goog-storage-class": "STANDARD"}
        )
    else:
        url = f"{rng.choice(('https://files.example.com', 'http://downloads.acme.io'))}/data/{name}{ext}"
        headers["Server"] = rng.choice(("nginx", "Apache/2.4", "Caddy"))
        if rng.random() < 0.3:
            headers["Content-Disposition"] = f'attachment; filename="{name}{ext}"'
        if rng.random() < 0.15:
            ctype = "application/octet-stream"
    headers["Content-Type"] = ctype
    return Sample(family, url, 200, headers, make(rng)[:HEAD_BYTES], "file_over_http", fmt)


def s3_listing(rng: random.Random) -> Sample:
    keys = "".join(
        f"<Contents><Key>exports/{rng.choice(RESOURCES)}-{i}.parquet</Key><LastModified>2026-11-01T10:00:00.000Z</LastModified>"
        f'<ETag>"{rng.getrandbits(64):x}"</ETag><Size>{rng.randint(100, 10**7)}</Size><StorageClass>STANDARD</StorageClass></Contents>'
        for i in range(rng.randint(1, 8))
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>acme-data</Name><Prefix>exports/</Prefix><KeyCount>8</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{keys}</ListBucketResult>"
    )
    host = rng.choice(
        (
            "acme-data.s3.amazonaws.com",
            "minio.internal:9000/acme-data",
            "s3.eu-west-1.amazonaws.com/acme-data",
        )
    )
    url = (
        f"https://{host}/?list-type=2&prefix=exports/" if rng.random() < 0.7 else f"https://{host}"
    )
    return _make(
        "s3_listing", url, rng.choice(("application/xml", "")), body, "object_store_listing"
    )


def gcs_listing(rng: random.Random) -> Sample:
    items = [
        {
            "kind": "storage#object",
            "name": f"exports/{rng.choice(RESOURCES)}-{i}.csv",
            "bucket": "acme",
            "size": str(rng.randint(1, 10**6)),
        }
        for i in range(rng.randint(1, 6))
    ]
    body = json.dumps({"kind": "storage#objects", "nextPageToken": "CgRhYmM=", "items": items})
    url = "https://storage.googleapis.com/storage/v1/b/acme/o?prefix=exports/"
    return _make(
        "gcs_listing", url, "application/json; charset=UTF-8", body, "object_store_listing"
    )


def azure_listing(rng: random.Random) -> Sample:
    blobs = "".join(
        f"<Blob><Name>exports/{rng.choice(RESOURCES)}-{i}.json</Name><Properties><Content-Length>{rng.randint(1, 10**6)}</Content-Length></Properties></Blob>"
        for i in range(rng.randint(1, 6))
    )
    body = (
        '\ufeff<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="https://acme.blob.core.windows.net/data">'
        f"<Prefix>exports/</Prefix><Blobs>{blobs}</Blobs><NextMarker /></EnumerationResults>"
    )
    url = "https://acme.blob.core.windows.net/data?restype=container&comp=list&prefix=exports/"
    return _make("azure_listing", url, "application/xml", body, "object_store_listing")


def website(rng: random.Random) -> Sample:
    title = " ".join(rng.choices(WORDS, k=3))
    body = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<link rel="stylesheet" href="/css/site.css"></head><body><header><nav><a href="/">Home</a>'
        f'<a href="/pricing">Pricing</a></nav></header><main><h1>{title}</h1><p>{" ".join(rng.choices(WORDS, k=40))}</p></main></body></html>'
    )
    url = f"https://www.example.com/{rng.choice(('', 'about', 'products', 'docs/api'))}"
    return _make(
        "website", url, rng.choice(("text/html; charset=utf-8", "text/html", "")), body, "html_page"
    )


def login_page(rng: random.Random) -> Sample:
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in</title>'
        f'<script src="/assets/{rng.choice(("app", "vendor", "login"))}.{rng.getrandbits(24):x}.js"></script>'
        '<link rel="stylesheet" href="/assets/app.css"></head><body><div id="app">'
        '<form method="post" action="/login"><input name="email"><input type="password" name="password">'
        "</form></div></body></html>"
    )
    url = base_url(rng, rng.choice(("login", "signin", "account", "console")))
    return _make(
        "login_page",
        url,
        rng.choice(("text/html; charset=utf-8", "text/html", "")),
        body,
        "html_page",
    )


def error_page(rng: random.Random) -> Sample:
    status = rng.choice((404, 502, 503, 403))
    body = f"<html>\r\n<head><title>{status} Error</title></head>\r\n<body>\r\n<center><h1>{status} Error</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
    return _make(
        "error_page",
        base_url(rng, rng.choice(RESOURCES)),
        "text/html",
        body,
        "html_page",
        status=status,
    )


def spa_shell(rng: random.Random) -> Sample:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width,initial-scale=1"/>'
        '<title>Dashboard</title><script defer="defer" src="/static/js/main.8f2c1b.js"></script></head>'
        '<body><noscript>You need to enable JavaScript to run this app.</noscript><div id="root"></div></body></html>'
    )
    url = base_url(rng, rng.choice(("dashboard", "app", "orders", "reports")))
    return _make("spa_shell", url, rng.choice(("text/html", "text/plain", "")), body, "html_page")


def _conn(family: str, url: str, kind: str) -> Sample:
    return Sample(family, url, None, {}, b"", kind)


def pg_url(rng: random.Random) -> Sample:
    scheme = rng.choice(("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg"))
    host = rng.choice(("db.internal", "127.0.0.1", "pg-primary.acme.io", "localhost"))
    query = rng.choice(("", "?sslmode=require", "?application_name=etl"))
    return _conn(
        "pg_url",
        f"{scheme}://{rng.choice(('etl', 'reader', 'app'))}@{host}:{rng.choice((5432, 6432))}/{rng.choice(('app', 'shop', 'warehouse'))}{query}",
        "postgres",
    )


def pg_libpq_query(rng: random.Random) -> Sample:
    return _conn(
        "pg_url",
        f"postgresql:///{rng.choice(('app', 'shop'))}?host=/var/run/postgresql&user=etl&port=5432",
        "postgres",
    )


def pg_dsn(rng: random.Random) -> Sample:
    if rng.random() < 0.5:
        return _conn(
            "pg_dsn",
            f"host=db.internal port=5432 dbname={rng.choice(('app', 'shop'))} user=etl sslmode=prefer",
            "postgres",
        )
    return _conn(
        "pg_dsn",
        f"jdbc:postgresql://db.internal:5432/{rng.choice(('app', 'shop'))}?user=etl",
        "postgres",
    )


def redis_url(rng: random.Random) -> Sample:
    stream = rng.choice(("events", "orders.stream", "ingestion:clicks"))
    form = rng.choice(
        (
            f"redis://127.0.0.1:6379/0?stream={stream}",
            f"redis://cache.internal:6379/2/{stream}",
            f"redis://:@redis:6379?stream={stream}&group=etl",
        )
    )
    return _conn("redis_url", form, "redis_stream")


def redis_tls(rng: random.Random) -> Sample:
    return _conn(
        "redis_tls",
        rng.choice(
            (
                "rediss://default@redis.acme.io:6380/1?stream=events",
                "unix:///var/run/redis/redis.sock?db=0&stream=events",
            )
        ),
        "redis_stream",
    )


def unknown_misc(rng: random.Random) -> Sample:
    pick = rng.randrange(5)
    if pick == 0:
        return _conn(
            "unknown_misc",
            rng.choice(
                ("ftp://files.acme.io/pub/", "mongodb://db:27017/app", "mysql://etl@db:3306/shop")
            ),
            "unknown",
        )
    if pick == 1:
        return _make("unknown_misc", base_url(rng, "health"), "", "", "unknown", status=204)
    if pick == 2:
        return _make(
            "unknown_misc",
            base_url(rng, "ping"),
            "text/plain",
            rng.choice(("OK", "pong", "healthy\n")),
            "unknown",
        )
    if pick == 3:
        return _make(
            "unknown_misc",
            base_url(rng, "x"),
            "text/plain",
            "Internal Server Error",
            "unknown",
            status=500,
        )
    return Sample(
        "unknown_misc",
        base_url(rng, "blob"),
        200,
        {"Content-Type": "application/octet-stream"},
        rng.randbytes(300),
        "unknown",
    )


def unknown_other(rng: random.Random) -> Sample:
    pick = rng.randrange(3)
    if pick == 0:
        return _conn(
            "unknown_other",
            rng.choice(
                (
                    "sqlserver://db:1433;database=shop",
                    "kafka://broker:9092/events",
                    "ws://feed.acme.io/live",
                )
            ),
            "unknown",
        )
    if pick == 1:
        return _make(
            "unknown_other",
            base_url(rng, "status"),
            "text/plain; charset=utf-8",
            "service is up",
            "unknown",
        )
    return _make(
        "unknown_other", base_url(rng, "x"), "", "", "unknown", status=rng.choice((500, 502, 401))
    )


def _make(family: str, url: str, ctype: str, body: str, kind: str, *, status: int = 200) -> Sample:
    headers = {"Content-Type": ctype} if ctype else {}
    return Sample(family, url, status, headers, body.encode()[:HEAD_BYTES], kind)


OTHER_TRAIN: dict[str, Other] = {
    "xml_api": xml_api,
    "rss": rss,
    "graphql_errors": graphql_errors,
    "apollo_landing": apollo_landing,
    "graphql_typename": graphql_typename,
    "web_files": lambda rng: _file("web_files", rng, object_store=False),
    "s3_listing": s3_listing,
    "gcs_listing": gcs_listing,
    "website": website,
    "error_page": error_page,
    "pg_url": pg_url,
    "pg_libpq_query": pg_libpq_query,
    "login_page": login_page,
    "redis_url": redis_url,
    "unknown_misc": unknown_misc,
}
OTHER_HELD_OUT: dict[str, Other] = {
    "atom": atom,
    "soap": soap,
    "graphiql": graphiql,
    "graphql_data": graphql_data,
    "object_files": lambda rng: _file("object_files", rng, object_store=True),
    "azure_listing": azure_listing,
    "spa_shell": spa_shell,
    "pg_dsn": pg_dsn,
    "redis_tls": redis_tls,
    "unknown_other": unknown_other,
}
