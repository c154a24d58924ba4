"""data-converter over HTTP: classifying personal data and protecting it before a merge."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from agents.base.settings import AgentSettings
from agents.data_converter.app import create_app
from tests.conftest import asgi_client, service_auth

NAMES = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
    "Tim Berners-Lee",
    "Frances Allen",
    "Ken Thompson",
    "Radia Perlman",
]
PRODUCTS = [
    "Wireless Mouse",
    "Standing Desk",
    "Ergonomic Chair",
    "Laptop Stand",
    "Desk Lamp",
    "Monitor Arm",
    "Noise Cancelling Headphones",
    "Mechanical Keyboard",
    "Webcam Cover",
    "Cable Organiser",
    "Footrest Deluxe",
    "Whiteboard Marker",
]
PII_COLUMNS = {"customer_name": "name", "email": "email", "phone": "phone", "card": "card_number"}
SALT_A = "salt-a-0123456789-abcdefghij"
SALT_B = "salt-b-9876543210-zyxwvutsrq"


def luhn_digit(payload: str) -> str:
    """The Luhn check digit completing `payload` (computed here, independently of the agent)."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit // 10 + digit % 10
    return str((10 - total % 10) % 10)


def card(index: int, *, valid: bool) -> str:
    payload = f"4{index:014d}"  # 15 digits, Visa-like
    check = int(luhn_digit(payload))
    digits = payload + str(check if valid else (check + 1) % 10)
    # Half of them written in groups, as people type them.
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4)) if index % 2 else digits


def rows() -> list[dict[str, Any]]:
    phones = ["+1 (555) 201-{:04d}", "555-301-{:04d}", "+44 20 7946 {:04d}"]
    return [
        {
            "order_id": 1000 + i,
            "customer_name": NAMES[i],
            "email": f"{NAMES[i].split()[0].lower()}.{i}@example.com",
            "phone": phones[i % 3].format(4000 + i),
            "card": card(i + 7, valid=True),
            "tracking_code": card(i + 50, valid=False),  # card-shaped, fails Luhn: not a card
            "amount": round(10.5 * (i + 1), 2),
            "name_of_product": PRODUCTS[i],
        }
        for i in range(len(NAMES))
    ]


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, str]:
    frame = pl.DataFrame(rows())
    parquet, csv = tmp_path / "orders.parquet", tmp_path / "orders.csv"
    frame.write_parquet(parquet)
    frame.write_csv(csv)
    return {"parquet": str(parquet), "csv": str(csv)}


def settings(common_env: dict, tmp_path: Path, **overrides: Any) -> AgentSettings:
    return AgentSettings(**{**common_env, **overrides}, allowed_roots=[str(tmp_path)])


@pytest.fixture
async def client(common_env: dict, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(settings(common_env, tmp_path))) as client:
        yield client


async def call(
    client: httpx.AsyncClient, action: str, body: dict[str, Any], step: str = "step"
) -> httpx.Response:
    return await client.post(
        f"/api/v1/{action}",
        json=body,
        headers={**service_auth(), "X-Run-Id": "pii-tests", "X-Step-Id": step},
    )


def originals(columns: list[str]) -> list[str]:
    return [str(row[c]) for row in rows() for c in columns]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_classify_finds_exactly_the_pii_columns(
    client: httpx.AsyncClient, dataset: dict[str, str], fmt: str
) -> None:
    response = await call(client, "classify", {"files": [{"uri": dataset[fmt]}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["pii_columns"]) == set(PII_COLUMNS)
    by_column = {c["column"]: c for c in body["columns"]}
    for column, category in PII_COLUMNS.items():
        assert by_column[column]["category"] == category
        assert by_column[column]["confidence"] == 1.0
    tracking = by_column["tracking_code"]
    assert tracking["pii"] is False and tracking["evidence"]["matches"]["card_number"] == 0
    product = by_column["name_of_product"]
    # Capitalised words, and "name" in the column name, but the name of a thing: not a person.
    assert product["pii"] is False and product["evidence"]["matches"]["name"] == 12
    assert not by_column["order_id"]["pii"] and not by_column["amount"]["pii"]
    # Evidence is counts only: no sampled value is echoed back.
    assert not [v for v in originals(list(PII_COLUMNS)) if v in response.text]


async def test_a_name_hint_alone_does_not_make_a_column_pii(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "hints.parquet"
    pl.DataFrame(
        {
            "customer": ["C-0001", "C-0002", "C-0003"],  # a person's column name, ids inside
            "email": ["none", "n/a", "unknown"],
            "first_name": ["Ada", "Grace", "Alan"],
        }
    ).write_parquet(path)
    body = (await call(client, "classify", {"files": str(path)})).json()
    assert body["pii_columns"] == ["first_name"]
    customer = next(c for c in body["columns"] if c["column"] == "customer")
    assert customer["category"] == "none" and "only 0%" in customer["evidence"]["reason"]


async def test_mask_hashes_every_pii_column_by_default(
    client: httpx.AsyncClient, dataset: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PII_SALT_A", SALT_A)
    monkeypatch.setenv("PII_SALT_B", SALT_B)
    request = {"files": [dataset["parquet"]], "salt_env": "PII_SALT_A"}
    response = await call(client, "mask", {**request, "compression": "uncompressed"}, "mask-a")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["protected"] == dict.fromkeys(PII_COLUMNS, "hash")
    assert result["salt"] == {"source": "env", "name": "PII_SALT_A"}
    (manifest,) = result["files"]
    assert "/runs/pii-tests/mask-a/" in manifest["uri"] and manifest["rows"] == len(NAMES)
    assert manifest["schema"]["card"] == "string" and manifest["schema"]["amount"] == "float64"

    data = Path(manifest["uri"]).read_bytes()  # noqa: ASYNC240
    leaked = [v for v in originals(list(PII_COLUMNS)) if v.encode() in data]
    assert leaked == []
    # The check can fail: unprotected text is stored as written in an uncompressed file.
    assert PRODUCTS[0].encode() in data
    for secret in (SALT_A.encode(), SALT_A.encode().hex().encode()):
        assert secret not in data and secret.decode() not in response.text

    hashed = pl.read_parquet(manifest["uri"])
    source = pl.read_parquet(dataset["parquet"])
    assert hashed["order_id"].to_list() == source["order_id"].to_list()
    assert hashed["name_of_product"].to_list() == PRODUCTS
    expected = hmac.new(SALT_A.encode(), source["email"][0].encode(), "sha256").hexdigest()
    assert hashed["email"][0] == expected
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in hashed["card"].to_list())

    again = (await call(client, "mask", request, "mask-a-again")).json()
    assert pl.read_parquet(again["files"][0]["uri"]).equals(hashed)
    from_csv = (await call(client, "mask", {**request, "files": [dataset["csv"]]}, "csv")).json()
    same = pl.read_parquet(from_csv["files"][0]["uri"])
    assert same.select(list(PII_COLUMNS)).equals(hashed.select(list(PII_COLUMNS)))

    other = (await call(client, "mask", {**request, "salt_env": "PII_SALT_B"}, "mask-b")).json()
    rehashed = pl.read_parquet(other["files"][0]["uri"])
    for column in PII_COLUMNS:
        assert not set(rehashed[column].to_list()) & set(hashed[column].to_list())


async def test_mask_methods_keep_a_recognisable_shape_or_drop(
    client: httpx.AsyncClient, dataset: dict[str, str]
) -> None:
    columns = {
        "email": "mask",
        "card": "mask",
        "phone": "mask",
        "customer_name": "redact",
        "tracking_code": "drop",
    }
    body = {"files": [dataset["parquet"]], "columns": columns, "compression": "uncompressed"}
    response = await call(client, "mask", body, "methods")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["protected"] == columns and result["salt"] is None  # no hashing, no salt
    manifest = result["files"][0]
    masked = pl.read_parquet(manifest["uri"])
    source = pl.DataFrame(rows())
    assert "tracking_code" not in masked.columns and "tracking_code" not in manifest["schema"]
    assert masked.columns == [c for c in source.columns if c != "tracking_code"]
    assert masked["email"][0] == "a***@example.com"
    assert all(re.fullmatch(r"\w\*\*\*@example\.com", v) for v in masked["email"])
    for value, original in zip(masked["card"], source["card"], strict=True):
        assert value == "**** **** **** " + original.replace(" ", "")[-4:]
    for value, original in zip(masked["phone"], source["phone"], strict=True):
        assert value == "***-***-" + original[-4:]
    assert set(masked["customer_name"]) == {"[REDACTED]"}
    data = Path(manifest["uri"]).read_bytes()  # noqa: ASYNC240
    assert [v for v in originals(list(columns)) if v.encode() in data] == []


async def test_production_refuses_to_hash_without_a_salt(
    common_env: dict, tmp_path: Path, dataset: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings(common_env, tmp_path, environment="production"))
    files = [dataset["parquet"]]
    async with asgi_client(app) as client:
        refused = await call(client, "mask", {"files": files}, "prod")
        assert refused.status_code == 422 and refused.json()["error"] == "salt_required"
        assert "salt_env" in refused.json()["message"]
        explicit = await call(client, "mask", {"files": files, "columns": {"email": "hash"}})
        assert explicit.json()["error"] == "salt_required"
        # Masking without hashing needs no salt.
        masked = await call(client, "mask", {"files": files, "columns": {"email": "mask"}})
        assert masked.status_code == 200, masked.text

        unset = await call(client, "mask", {"files": files, "salt_env": "PII_SALT_UNSET"})
        assert unset.json()["error"] == "credential_missing"
        assert "PII_SALT_UNSET" in unset.json()["message"]
        monkeypatch.setenv("PII_SALT_SHORT", "tiny-salt")
        short = await call(client, "mask", {"files": files, "salt_env": "PII_SALT_SHORT"})
        assert short.json()["error"] == "salt_too_short" and "tiny-salt" not in short.text
        monkeypatch.setenv("PII_SALT_PROD", SALT_A)
        done = await call(client, "mask", {"files": files, "salt_env": "PII_SALT_PROD"}, "p")
        assert done.status_code == 200, done.text


async def test_development_hashes_with_the_documented_default_salt(
    client: httpx.AsyncClient, dataset: dict[str, str]
) -> None:
    response = await call(client, "mask", {"files": [dataset["parquet"]]}, "dev")
    assert response.status_code == 200, response.text
    assert response.json()["salt"] == {"source": "development_default"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"columns": {"email": "encrypt"}}, "columns.email"),
        ({"columns": {"nope": "hash"}}, "columns.nope"),
        ({"columns": {}}, "columns"),
        ({"salt_env": "my secret salt"}, "salt_env"),
        ({"sample_rows": 0}, "sample_rows"),
        ({"files": [42]}, "files"),
    ],
)
async def test_bad_mask_bodies_are_refused_naming_the_field(
    client: httpx.AsyncClient, dataset: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = await call(client, "mask", {"files": [dataset["parquet"]], **body}, "bad")
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]
    assert "my secret salt" not in json.dumps(response.json())
