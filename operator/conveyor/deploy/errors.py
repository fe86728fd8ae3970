"""The errors of deploying. Each says what went wrong in words a pipeline author can act on,
and none ever carries a credential (kubeconfig contents, tokens, certificates)."""

from __future__ import annotations


class RenderError(Exception):
    """A template could not be rendered; the message is `file:line: message`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class KubeconfigError(Exception):
    """A target kubeconfig is unusable or not allowed. Never quotes the kubeconfig."""


class DeployError(Exception):
    """The target refused the deploy, or the deploy cannot work as written (a kind the target
    does not serve, a missing namespace, a forbidden verb). Permanent: retrying the same
    manifests against the same cluster will fail the same way."""


class TargetUnavailable(Exception):
    """The target cluster could not be reached or answered with a temporary failure (timeouts,
    connection refused, 429, 5xx). Temporary: the caller retries with backoff."""
