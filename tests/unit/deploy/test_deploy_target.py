"""Target kubeconfigs: what is accepted, what is refused, and that no message leaks a secret."""

from __future__ import annotations

import base64
import copy
import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from conveyor.deploy import KubeconfigError, target_client

ROOT = Path(__file__).resolve().parents[3]
LOCAL_KUBECONFIG = ROOT / ".cluster" / "kubeconfig"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.c2lnbmF0dXJlLXNlY3JldA"


def _synthetic() -> dict[str, Any]:
    """Shaped like the local clusters' kubeconfig, for when they were never started."""
    pem = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBsynthetic\n-----END").decode()
    key = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nMIIEsyntheticKEY\n-----END").decode()
    clusters = [
        {
            "name": n,
            "cluster": {"server": f"https://127.0.0.1:{p}", "certificate-authority-data": pem},
        }
        for n, p in (("ci", 16443), ("test", 16444), ("prod", 16445))
    ]
    user = {"client-certificate-data": pem, "client-key-data": key}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ci",
        "clusters": clusters,
        "users": [{"name": "admin", "user": user}],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": "admin"}} for n in ("ci", "test", "prod")
        ],
    }


@pytest.fixture
def kubeconfig() -> dict[str, Any]:
    """The local clusters' kubeconfig (JSON, embedded certificates; contexts ci, test, prod)."""
    if LOCAL_KUBECONFIG.exists():
        return json.loads(LOCAL_KUBECONFIG.read_text())
    return _synthetic()


def secrets_of(doc: dict[str, Any]) -> list[str]:
    """Every credential-ish string of the kubeconfig, raw and base64-decoded (PEM lines)."""
    out: list[str] = []
    for section, body in (("users", "user"), ("clusters", "cluster")):
        for entry in doc.get(section, []):
            for key, value in entry[body].items():
                if not isinstance(value, str) or key == "server":
                    continue
                out.append(value)
                if key.endswith("-data"):
                    try:
                        decoded = base64.b64decode(value).decode(errors="replace")
                    except ValueError:  # deliberately bad data
                        continue
                    out += [ln for ln in decoded.splitlines() if len(ln) > 20]
    return out


def assert_no_secret(message: str, doc: dict[str, Any]) -> None:
    for secret in [*secrets_of(doc), TOKEN]:
        assert secret not in message
        assert secret[:24] not in message


def as_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def with_user(doc: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["users"].append({"name": "other", "user": user})
    doc["contexts"].append({"name": "other", "context": {"cluster": "prod", "user": "other"}})
    return doc


def refused(doc: dict[str, Any] | bytes, context: str | None = "other") -> str:
    data = doc if isinstance(doc, bytes) else as_bytes(doc)
    with pytest.raises(KubeconfigError) as e:
        target_client(data, context)
    # No chained exception: its traceback or message could quote the kubeconfig.
    assert e.value.__cause__ is None
    assert e.value.__context__ is None or e.value.__suppress_context__
    return str(e.value)


# --- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize(("context", "offset"), [("test", 1), ("prod", 2), (None, 0)])
def test_client_for_a_context_of_the_local_kubeconfig(kubeconfig, context, offset):
    default_host = client.Configuration.get_default_copy().host
    api = target_client(as_bytes(kubeconfig), context)
    assert isinstance(api, client.ApiClient)
    # The API servers' ports follow the clusters' port base (CONVEYOR_PORT_BASE + 43, 44, 45).
    ci_port = int(kubeconfig["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
    assert kubeconfig["clusters"][0]["name"] == "ci"
    assert api.configuration.host == f"https://127.0.0.1:{ci_port + offset}"
    # Certificates became files only we can read, in a directory only we can enter.
    for path in (api.configuration.cert_file, api.configuration.key_file):
        assert path and os.path.exists(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    # The process-wide default configuration is untouched.
    assert client.Configuration.get_default_copy().host == default_host


def test_yaml_kubeconfig_with_token_is_accepted(kubeconfig):
    import yaml

    doc = with_user(kubeconfig, {"token": TOKEN})
    api = target_client(yaml.safe_dump(doc).encode(), "other")
    assert api.configuration.api_key["BearerToken"] == f"Bearer {TOKEN}"


def test_a_server_that_never_answers_times_out_instead_of_hanging():
    # A listener that accepts connections and then says nothing, as a frozen API server does.
    # The client must give up after its timeouts even for calls that set none themselves.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        doc = {  # a token user: no certificate material needed to reach the silent handshake
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "x", "cluster": {"server": f"https://127.0.0.1:{server.getsockname()[1]}"}}
            ],
            "users": [{"name": "x", "user": {"token": "t0ken"}}],
            "contexts": [{"name": "prod", "context": {"cluster": "x", "user": "x"}}],
        }
        api = target_client(as_bytes(doc), "prod", connect_timeout=1, read_timeout=1, retries=0)
        assert api.configuration.retries == 0
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                client.VersionApi(api).get_code()
            except BaseException as e:  # the timeout, as the caller would see it
                outcome.append(e)

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(timeout=30)  # a bound on hanging forever, not a measure of speed
        assert not worker.is_alive(), "the request hung: no timeout applied"
        assert outcome and "timed out" in str(outcome[0]).lower()


# --- refused --------------------------------------------------------------------------------


def test_exec_plugins_are_refused(kubeconfig):
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/bin/sh",
            "args": ["-c", f"echo {TOKEN}"],
        }
    }
    doc = with_user(kubeconfig, exec_user)
    message = refused(doc)
    assert message.startswith("exec plugins are not allowed")
    assert "/bin/sh" not in message
    assert_no_secret(message, doc)


def test_auth_provider_plugins_are_refused(kubeconfig):
    provider = {"name": "oidc", "config": {"id-token": TOKEN, "cmd-path": "/usr/bin/gcloud"}}
    doc = with_user(kubeconfig, {"auth-provider": provider})
    message = refused(doc)
    assert message.startswith("auth-provider plugins are not allowed")
    assert_no_secret(message, doc)


@pytest.mark.parametrize("field", ["tokenFile", "client-key", "client-certificate"])
def test_user_file_references_are_refused(kubeconfig, field):
    doc = with_user(kubeconfig, {field: "/var/run/secrets/kubernetes.io/serviceaccount/token"})
    message = refused(doc)
    assert "file references are not allowed" in message
    assert field in message


def test_cluster_file_reference_is_refused(kubeconfig):
    doc = copy.deepcopy(kubeconfig)
    cluster = next(c for c in doc["clusters"] if c["name"] == "prod")["cluster"]
    cluster.pop("certificate-authority-data", None)
    cluster["certificate-authority"] = "/etc/kubernetes/pki/ca.crt"
    message = refused(doc, "prod")
    assert "certificate-authority" in message
    assert_no_secret(message, doc)


def test_plain_http_servers_are_refused(kubeconfig):
    doc = copy.deepcopy(kubeconfig)
    next(c for c in doc["clusters"] if c["name"] == "prod")["cluster"]["server"] = "http://x:80"
    assert "https://" in refused(doc, "prod")


def test_missing_context_names_what_exists(kubeconfig):
    message = refused(as_bytes(kubeconfig), "staging")
    assert message.startswith("context 'staging' is not in the kubeconfig (it has: ")
    assert "prod" in message
    assert_no_secret(message, kubeconfig)


def test_no_context_and_no_current_context(kubeconfig):
    doc = copy.deepcopy(kubeconfig)
    doc.pop("current-context", None)
    assert "no current-context" in refused(doc, None)


def test_context_naming_missing_user_or_cluster(kubeconfig):
    doc = copy.deepcopy(kubeconfig)
    doc["contexts"].append({"name": "x", "context": {"cluster": "nope", "user": "admin"}})
    doc["contexts"].append({"name": "y", "context": {"cluster": "prod", "user": "nobody"}})
    assert "names a cluster" in refused(doc, "x")
    assert "names a user" in refused(doc, "y")


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\xff\xfe garbage",
        b"{{{{",
        f"users:\n- name: a\n  user: {{token: {TOKEN}\n  oops: [\n".encode(),
        f"token: {TOKEN}\n\tbad".encode(),
        b"- just\n- a list\n",
        b"",
    ],
)
def test_malformed_kubeconfigs_are_refused_without_quoting_them(data):
    message = refused(data, "prod")
    assert message.startswith(("the kubeconfig is not", "context 'prod' is not"))
    assert TOKEN not in message
    assert TOKEN[:16] not in message


def test_undecodable_embedded_data_is_refused_without_quoting_it(kubeconfig):
    bad_key = "!!not-base64-" + TOKEN
    doc = with_user(kubeconfig, {"client-certificate-data": bad_key, "client-key-data": bad_key})
    message = refused(doc)
    assert "is not valid base64" in message
    assert TOKEN not in message
    assert_no_secret(message, doc)


def test_no_message_from_any_context_leaks_the_local_credentials(kubeconfig):
    """Every refusal above, applied to the real admin credentials."""
    admin = next(u for u in kubeconfig["users"] if u["name"] == "admin")["user"]
    for extra in (
        {"exec": {"command": "x"}},
        {"auth-provider": {"name": "x"}},
        {"tokenFile": "/x"},
    ):
        doc = with_user(kubeconfig, {**admin, **extra})
        assert_no_secret(refused(doc), doc)
