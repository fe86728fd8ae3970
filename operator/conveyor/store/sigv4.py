"""AWS Signature Version 4 for S3, pure: header signing (the operator's own calls) and presigned
URLs (what a job pod gets, one per object it may touch). Standard library only, checked against
AWS's published examples (tests/unit/store/test_store_sigv4.py).

S3's flavour: the path is encoded once (not twice as other services), and the payload hash may be
UNSIGNED-PAYLOAD (presigned URLs always use it: the job's bytes are not known when the URL is made).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # S3's limit for a presigned URL


@dataclass(frozen=True, repr=False)
class Credentials:
    access_key: str
    secret_key: str = ""

    def __repr__(self) -> str:  # never print the secret (logs, tracebacks)
        return f"Credentials(access_key={self.access_key!r}, secret_key=<hidden>)"


def _quote(s: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(s, safe=safe)


def canonical_path(path: str) -> str:
    """The URI path, each segment percent-encoded once (S3 keeps the slashes)."""
    return _quote(path or "/", safe="-_.~/")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    k = _hmac(("AWS4" + secret_key).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _amz_date(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def sign_headers(
    *,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str] | None,
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    now: datetime.datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to send (the given ones plus host, x-amz-date, x-amz-content-sha256 and
    Authorization) for a request signed in its Authorization header."""
    amz_date = _amz_date(now)
    all_headers = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    all_headers["host"] = host
    all_headers["x-amz-date"] = amz_date
    all_headers["x-amz-content-sha256"] = payload_sha256
    names = sorted(all_headers)
    signed = ";".join(names)
    canonical = "\n".join(
        [
            method,
            canonical_path(path),
            canonical_query(query or {}),
            "".join(f"{n}:{all_headers[n]}\n" for n in names),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    key = signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(
        key, _string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256
    ).hexdigest()
    out = {k: v for k, v in headers.items()}
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_sha256
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return out


def presign(
    *,
    method: str,
    scheme: str,
    host: str,
    path: str,
    credentials: Credentials,
    region: str,
    now: datetime.datetime,
    expires_seconds: int,
    service: str = "s3",
) -> str:
    """A presigned URL: `method` on `path` (e.g. /bucket/key) for `expires_seconds` from `now`,
    signing only the host header, so whoever holds it can do that one thing and nothing else."""
    if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"a presigned URL lasts 1 to {MAX_PRESIGN_SECONDS} seconds")
    amz_date = _amz_date(now)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    params = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{credentials.access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires_seconds),
        "X-Amz-SignedHeaders": "host",
    }
    canonical = "\n".join(
        [method, canonical_path(path), canonical_query(params), f"host:{host}\n", "host", UNSIGNED]
    )
    key = signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(
        key, _string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256
    ).hexdigest()
    return (
        f"{scheme}://{host}{canonical_path(path)}?{canonical_query(params)}"
        f"&X-Amz-Signature={signature}"
    )
