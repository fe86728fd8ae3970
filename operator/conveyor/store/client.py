"""The operator's own S3 calls (head, get, put, list, delete) and the presigned URLs it hands
jobs, all signed by sigv4.py with the store's credentials. Standard library HTTP: the calls are
few and small (manifests, listings, deletes); job bytes never pass through the operator."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ssl
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from conveyor.store import sigv4
from conveyor.store.config import StoreConfig

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
TIMEOUT_SECONDS = 30


class StoreError(Exception):
    """A store call that failed; the message never holds credentials or signed URLs."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime.datetime | None = None


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class StoreClient:
    def __init__(
        self,
        config: StoreConfig,
        credentials: sigv4.Credentials,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self._now = now
        parsed = urllib.parse.urlsplit(config.endpoint)
        self._scheme = parsed.scheme or "http"
        self._endpoint_host = parsed.netloc
        self._context: ssl.SSLContext | None = None
        if self._scheme == "https":
            self._context = ssl.create_default_context(cafile=config.ca_file)
            if config.insecure:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    # -- addressing: path-style (endpoint/bucket/key) or virtual-hosted (bucket.endpoint/key)

    def _host_and_path(self, key: str) -> tuple[str, str]:
        if self.config.path_style:
            return self._endpoint_host, f"/{self.config.bucket}/{key}" if key else (
                f"/{self.config.bucket}"
            )
        return f"{self.config.bucket}.{self._endpoint_host}", f"/{key}"

    def presign(self, method: str, key: str, expires_seconds: int) -> str:
        host, path = self._host_and_path(key)
        return sigv4.presign(
            method=method,
            scheme=self._scheme,
            host=host,
            path=path,
            credentials=self.credentials,
            region=self.config.region,
            now=self._now(),
            expires_seconds=max(1, min(expires_seconds, sigv4.MAX_PRESIGN_SECONDS)),
        )

    def _request(
        self,
        method: str,
        key: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        host, path = self._host_and_path(key)
        signed = sigv4.sign_headers(
            method=method,
            host=host,
            path=path,
            query=query,
            headers=headers or {},
            payload_sha256=hashlib.sha256(body).hexdigest(),
            credentials=self.credentials,
            region=self.config.region,
            now=self._now(),
        )
        url = f"{self._scheme}://{host}{sigv4.canonical_path(path)}"
        if query:
            url += "?" + sigv4.canonical_query(query)
        request = urllib.request.Request(
            url, data=body if method in ("PUT", "POST") else None, method=method, headers=signed
        )
        try:
            with urllib.request.urlopen(
                request, timeout=TIMEOUT_SECONDS, context=self._context
            ) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()
        except (urllib.error.URLError, OSError) as e:
            raise StoreError(
                f"the artifact store {self.config.endpoint} is unreachable: {e}"
            ) from None

    def _fail(self, what: str, status: int, body: bytes) -> StoreError:
        code = ""
        with contextlib.suppress(ET.ParseError):
            code = ET.fromstring(body).findtext("Code") or ""
        return StoreError(f"{what}: HTTP {status}{' ' + code if code else ''}")

    def head(self, key: str) -> ObjectInfo | None:
        status, headers, body = self._request("HEAD", key)
        if status == 404:
            return None
        if status != 200:
            raise self._fail(f"HEAD {key}", status, body)
        lower = {k.lower(): v for k, v in headers.items()}
        return ObjectInfo(key=key, size=int(lower.get("content-length", "0")))

    def get(self, key: str) -> bytes | None:
        status, _, body = self._request("GET", key)
        if status == 404:
            return None
        if status != 200:
            raise self._fail(f"GET {key}", status, body)
        return body

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        status, _, resp = self._request(
            "PUT", key, body=body, headers={"Content-Type": content_type}
        )
        if status not in (200, 201):
            raise self._fail(f"PUT {key}", status, resp)

    def delete(self, key: str) -> None:
        status, _, body = self._request("DELETE", key)
        if status not in (200, 204, 404):
            raise self._fail(f"DELETE {key}", status, body)

    def create_bucket(self) -> None:
        status, _, body = self._request("PUT", "")
        if status not in (200, 409):  # 409: it exists (BucketAlreadyOwnedByYou)
            raise self._fail(f"creating bucket {self.config.bucket}", status, body)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, _, body = self._request("GET", "", query=query)
            if status != 200:
                raise self._fail(f"listing {prefix}", status, body)
            root = ET.fromstring(body)
            for item in root.iter(f"{S3_NS}Contents"):
                modified = item.findtext(f"{S3_NS}LastModified")
                yield ObjectInfo(
                    key=item.findtext(f"{S3_NS}Key") or "",
                    size=int(item.findtext(f"{S3_NS}Size") or 0),
                    last_modified=(
                        datetime.datetime.fromisoformat(modified.replace("Z", "+00:00"))
                        if modified
                        else None
                    ),
                )
            if root.findtext(f"{S3_NS}IsTruncated") != "true":
                return
            token = root.findtext(f"{S3_NS}NextContinuationToken")
            if not token:
                return

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for obj in list(self.list(prefix)):
            self.delete(obj.key)
            n += 1
        return n
