"""A Delta table on `s3://` is reached with the AWS_* variables DATA_ROOT's fsspec uses.

delta-rs does not read every one of them from the environment (an endpoint, plain http), so
the merger hands them over; against a real S3 API this is not tested here (no S3 service, and
moto's server hangs on delta-rs' log listing), so this checks what is handed over."""

from __future__ import annotations

import pytest

from agents.base.storage import DataRoot
from agents.data_merger.actions import _storage_options


def test_the_aws_variables_of_data_root_reach_delta_rs(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_PROFILE": "not-for-delta-rs",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    options = _storage_options(DataRoot.from_setting("s3://lake/platform"))
    assert options == {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
        # Safe: the merger's advisory lock already serialises the writers of a table.
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    assert _storage_options(DataRoot.from_setting("/tmp/local-root")) is None
