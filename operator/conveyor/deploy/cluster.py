"""The dynamic client on a target cluster, and the one place its failures become our errors.

Failure classes, so the caller knows whether to retry (notes §5.7):
- no connection, timeouts, 429 and 5xx -> TargetUnavailable (temporary: retry with backoff);
- TLS verification failures, 4xx -> DeployError (permanent: the same request fails again).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError
from kubernetes.dynamic.resource import Resource

from conveyor.deploy.errors import DeployError, TargetUnavailable

Api: TypeAlias = client.ApiClient | DynamicClient
T = TypeVar("T")
_cache_dir: str | None = None


def dynamic(api: Api) -> DynamicClient:
    """A DynamicClient on `api` (discovery happens here: this is the first request). Pass the
    result to several calls to discover once."""
    if isinstance(api, DynamicClient):
        return api
    with translated("discovering the target's API"):
        return DynamicClient(api, cache_file=_cache_file(api.configuration.host))


def resource(dyn: DynamicClient, api_version: str, kind: str) -> Resource:
    """The API resource serving `kind` at `api_version`; DeployError when the target has none
    (e.g. ServiceMonitor without the Prometheus Operator's CRD)."""
    with translated(f"discovering {kind} ({api_version})"):
        try:
            # LazyDiscoverer re-reads discovery once on a miss, so a CRD installed since the
            # cache was written is found.
            return dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise DeployError(
                f"{kind} ({api_version}) is not served by the target cluster"
            ) from None
        except ResourceNotUniqueError:
            raise DeployError(
                f"{kind} ({api_version}) is ambiguous on the target cluster"
            ) from None


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Turns client and transport errors raised inside into TargetUnavailable / DeployError
    whose message says what we were doing and what the server said."""
    try:
        yield
    except ApiException as e:
        raise _api_error(doing, e) from None
    except urllib3.exceptions.HTTPError as e:
        reason = getattr(e, "reason", None) or e
        if isinstance(reason, urllib3.exceptions.SSLError):
            raise DeployError(f"{doing}: TLS with the target failed: {reason}") from None
        raise TargetUnavailable(
            f"{doing}: the target cluster is unreachable: {_short(reason)}"
        ) from None
    except (ConnectionError, TimeoutError) as e:
        raise TargetUnavailable(
            f"{doing}: the target cluster is unreachable: {_short(e)}"
        ) from None


def call(doing: str, fn: Callable[[], T]) -> T:
    with translated(doing):
        return fn()


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, ApiException) and e.status == 404


def _api_error(doing: str, e: ApiException) -> Exception:
    message = f"{doing}: {e.status} {e.reason}: {status_message(e)}"
    if e.status is None or e.status == 429 or e.status >= 500:
        return TargetUnavailable(message)
    return DeployError(message)


def status_message(e: ApiException) -> str:
    """The `message` of the server's Status body (it names the field or verb at fault)."""
    body = e.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            return _short(body)
        if isinstance(parsed, dict) and parsed.get("message"):
            return _short(str(parsed["message"]))
    return str(e.reason or "")


def _short(value: object, limit: int = 400) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cache_file(host: str) -> str:
    """Discovery cache in a directory of our own: the client's default is a predictable name
    in the shared /tmp, which another local user could plant."""
    global _cache_dir
    if _cache_dir is None or not os.path.isdir(_cache_dir):
        _cache_dir = tempfile.mkdtemp(prefix="conveyor-discovery-")  # mode 0700
        atexit.register(shutil.rmtree, _cache_dir, True)
    digest = hashlib.sha256(host.encode()).hexdigest()[:32]
    return os.path.join(_cache_dir, f"{digest}.json")
