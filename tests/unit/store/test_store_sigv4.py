"""The SigV4 signer against AWS's published S3 examples (Signature Version 4 documentation:
"Examples: Signature Calculations" for header auth, "Authenticating Requests: Using Query
Parameters" for presigned URLs)."""

from __future__ import annotations

import datetime

import pytest

from conveyor.store import sigv4

CREDS = sigv4.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
NOW = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)
HOST = "examplebucket.s3.amazonaws.com"


def _signature(headers: dict[str, str]) -> str:
    return headers["Authorization"].rsplit("Signature=", 1)[1]


def test_get_object_example():
    headers = sigv4.sign_headers(
        method="GET",
        host=HOST,
        path="/test.txt",
        query=None,
        headers={"Range": "bytes=0-9"},
        payload_sha256=sigv4.EMPTY_SHA256,
        credentials=CREDS,
        region="us-east-1",
        now=NOW,
    )
    assert _signature(headers) == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date" in headers["Authorization"]


def test_put_object_example():
    payload = b"Welcome to Amazon S3."
    import hashlib

    headers = sigv4.sign_headers(
        method="PUT",
        host=HOST,
        path="/test$file.text",
        query=None,
        headers={
            "Date": "Fri, 24 May 2013 00:00:00 GMT",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
        },
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        credentials=CREDS,
        region="us-east-1",
        now=NOW,
    )
    assert _signature(headers) == (
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


def test_list_objects_example():
    headers = sigv4.sign_headers(
        method="GET",
        host=HOST,
        path="/",
        query={"max-keys": "2", "prefix": "J"},
        headers={},
        payload_sha256=sigv4.EMPTY_SHA256,
        credentials=CREDS,
        region="us-east-1",
        now=NOW,
    )
    assert _signature(headers) == (
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_presigned_url_example():
    url = sigv4.presign(
        method="GET",
        scheme="https",
        host=HOST,
        path="/test.txt",
        credentials=CREDS,
        region="us-east-1",
        now=NOW,
        expires_seconds=86400,
    )
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_presign_limits_and_secret_never_printed():
    with pytest.raises(ValueError):
        sigv4.presign(
            method="GET",
            scheme="http",
            host="h",
            path="/b/k",
            credentials=CREDS,
            region="us-east-1",
            now=NOW,
            expires_seconds=sigv4.MAX_PRESIGN_SECONDS + 1,
        )
    assert "wJalr" not in repr(CREDS)
