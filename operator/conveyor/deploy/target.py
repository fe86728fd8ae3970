"""A client for a target cluster, built from kubeconfig bytes (the content of a Secret).

What we refuse, and why: the kubeconfig is written by whoever can edit the Environment's Secret,
and the operator process uses it.
- `exec` and `auth-provider` plugins would run a command (or a cloud SDK) inside the operator.
- File references (`client-key: /path`, `tokenFile`, `certificate-authority: /path`) would make
  the operator read its own files, e.g. its service-account token, and send them to whatever
  server the kubeconfig names. Only embedded `*-data` and `token` are allowed.
- `http://` servers would send the credentials in clear.

No message ever quotes the kubeconfig: YAML errors give only a line, loader errors are scrubbed
of every value the chosen user and cluster hold.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

import yaml
from kubernetes import client, config

from conveyor.deploy.errors import KubeconfigError
from conveyor.kube import fence

_FILE_FIELDS_USER = ("client-certificate", "client-key", "tokenFile")
_FILE_FIELDS_CLUSTER = ("certificate-authority",)
_PLUGIN_FIELDS = {"exec": "exec plugins", "auth-provider": "auth-provider plugins"}
_TLS_DATA = ("certificate-authority-data", "client-certificate-data", "client-key-data")
_private: str | None = None


def target_client(
    kubeconfig: bytes,
    context: str | None = None,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    retries: int = 1,
) -> client.ApiClient:
    """An ApiClient for `context` (default: the kubeconfig's current-context). Every request
    gets the timeouts unless it passes its own, so an unreachable target fails in seconds rather
    than hanging a worker. Raises KubeconfigError."""
    doc = _parse(kubeconfig)
    name, ctx, cluster, user = _select(doc, context)
    _check(name, cluster, user)
    # TLS material is ours to write (see _tls_file); the loader gets the rest, and only the
    # chosen context, so it never sees (or writes out) the others.
    cluster_rest = {k: v for k, v in cluster.items() if k not in _TLS_DATA}
    user_rest = {k: v for k, v in user.items() if k not in _TLS_DATA}
    minimal = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "contexts": [{"name": name, "context": ctx}],
        "clusters": [{"name": ctx["cluster"], "cluster": cluster_rest}],
        "users": [{"name": ctx["user"], "user": user_rest}] if "user" in ctx else [],
    }
    configuration = client.Configuration()
    try:
        # persist_config=False: never write refreshed credentials anywhere.
        config.load_kube_config_from_dict(
            minimal, context=name, client_configuration=configuration, persist_config=False
        )
    except Exception as e:  # the loader raises ConfigException, ValueError, ...
        detail = _scrub(str(e), _strings(cluster, user))
        raise KubeconfigError(
            f"the kubeconfig's context {name!r} could not be loaded: {type(e).__name__}: {detail}"
        ) from None
    ca = _tls_file(name, cluster, "certificate-authority-data")
    cert = _tls_file(name, user, "client-certificate-data")
    key = _tls_file(name, user, "client-key-data")
    if ca:
        configuration.ssl_ca_cert = ca
    if bool(cert) != bool(key):
        raise KubeconfigError(
            f"the user of context {name!r} has only one of client-certificate-data and "
            "client-key-data"
        )
    if cert and key:
        configuration.cert_file, configuration.key_file = cert, key
    configuration.retries = retries
    api = client.ApiClient(configuration)
    # The generated client has no default timeout, and it passes `timeout=None` to urllib3 for
    # every call that sets no _request_timeout (the dynamic client's discovery among them),
    # which overrides any pool default and waits forever on a server that stopped answering.
    # So every request gets ours unless it brings its own.
    rest = api.rest_client
    send = rest.request

    def request(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return send(
            *args, _request_timeout=_request_timeout or (connect_timeout, read_timeout), **kwargs
        )

    rest.request = request
    return fence.guard(api)  # a replica that is not the leader never deploys


def _parse(kubeconfig: bytes) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(kubeconfig)
    except yaml.MarkedYAMLError as e:
        # Only the position: str(e) would quote the offending line.
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise KubeconfigError(f"the kubeconfig is not valid YAML{where}") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise KubeconfigError("the kubeconfig is not valid YAML") from None
    if not isinstance(doc, dict):
        raise KubeconfigError("the kubeconfig is not a mapping (kind: Config)")
    return doc


def _named(doc: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise KubeconfigError(f"the kubeconfig's {section} is not a list")
    named: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            body = entry.get(section[:-1])  # contexts -> context, clusters -> cluster, ...
            named[entry["name"]] = body if isinstance(body, dict) else {}
    return named


def _select(
    doc: dict[str, Any], context: str | None
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    contexts = _named(doc, "contexts")
    name = context or doc.get("current-context")
    if not isinstance(name, str) or not name:
        raise KubeconfigError("no context given and the kubeconfig has no current-context")
    if name not in contexts:
        have = ", ".join(sorted(contexts)) or "none"
        raise KubeconfigError(f"context {name!r} is not in the kubeconfig (it has: {have})")
    ctx = contexts[name]
    cluster_name = ctx.get("cluster")
    clusters = _named(doc, "clusters")
    if not isinstance(cluster_name, str) or cluster_name not in clusters:
        raise KubeconfigError(f"context {name!r} names a cluster the kubeconfig does not have")
    user: dict[str, Any] = {}
    if "user" in ctx:
        users = _named(doc, "users")
        if not isinstance(ctx["user"], str) or ctx["user"] not in users:
            raise KubeconfigError(f"context {name!r} names a user the kubeconfig does not have")
        user = users[ctx["user"]]
    return name, ctx, clusters[cluster_name], user


def _check(name: str, cluster: dict[str, Any], user: dict[str, Any]) -> None:
    for key, what in _PLUGIN_FIELDS.items():
        if key in user:
            raise KubeconfigError(
                f"{what} are not allowed in target kubeconfigs (context {name!r}): the operator "
                "would run them; use a service-account token or a client certificate"
            )
    for key in _FILE_FIELDS_USER:
        if user.get(key):
            raise KubeconfigError(
                f"file references are not allowed in target kubeconfigs (user field {key!r} of "
                f"context {name!r}): embed the data instead"
            )
    for key in _FILE_FIELDS_CLUSTER:
        if cluster.get(key):
            raise KubeconfigError(
                f"file references are not allowed in target kubeconfigs (cluster field {key!r} "
                f"of context {name!r}): embed certificate-authority-data instead"
            )
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise KubeconfigError(f"the cluster of context {name!r} has no https:// server")


def _tls_file(context: str, section: dict[str, Any], field: str) -> str | None:
    """The decoded `field` of `section` as a file only we can read, or None when absent.

    OpenSSL loads certificates and keys from files. The client's loader would write them too,
    but into a process-wide cache shared with every other kubeconfig loaded in the process and
    possibly in the shared /tmp; ours go into a directory of our own (mode 0700, memory-backed
    when /dev/shm exists), one file per content, removed at exit."""
    data = section.get(field)
    if not data:
        return None
    try:
        content = base64.b64decode(str(data), validate=True)
    except (ValueError, TypeError):
        raise KubeconfigError(f"{field} of context {context!r} is not valid base64") from None
    path = os.path.join(_private_dir(), hashlib.sha256(content).hexdigest()[:40])
    if not os.path.exists(path):
        # Write aside and rename: another thread loading the same kubeconfig never reads half.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    return path


def _private_dir() -> str:
    global _private
    if _private is None or not os.path.isdir(_private):
        shm = "/dev/shm"
        base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        _private = tempfile.mkdtemp(prefix="conveyor-kubeconfig-", dir=base)  # mode 0700
        atexit.register(shutil.rmtree, _private, True)
    return _private


def _strings(*values: Any) -> Iterable[str]:
    """Every string inside `values`, recursively (candidates for scrubbing)."""
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield from _strings(*value.values())
        elif isinstance(value, list):
            yield from _strings(*value)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    # Short strings (a user name, "v1") are not secrets and would shred the message.
    for secret in sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:300]
