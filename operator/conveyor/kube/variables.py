"""CI variables of a job: predefined ones, the pipeline's, the job's, Secret references and the
run's, merged with GitLab's precedence and expanded the way GitLab expands them.

Values end up in a container's `env`, where Kubernetes itself expands `$(NAME)`: every literal `$`
is therefore written as `$$` (Kubernetes turns it back into `$`), and references to Secret-backed
variables become `$(NAME)` so the kubelet, not Conveyor, substitutes the secret value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.api.pipeline import SecretVariable

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
SECRET_VARIABLES_DIR = "/conveyor/secret-variables"


def expand(
    text: str,
    lookup: Callable[[str], str | None],
    literal: Callable[[str], str] = lambda s: s,
) -> str:
    """Expand `$NAME` and `${NAME}` with `lookup`; `$$` is a literal `$`; unknown names expand to
    the empty string (GitLab's behaviour). `literal` transforms the text that is not a reference."""
    out: list[str] = []
    pos = 0
    for match in _REFERENCE.finditer(text):
        out.append(literal(text[pos : match.start()]))
        if match.group(0) == "$$":
            out.append(literal("$"))
        else:
            out.append(lookup(match.group(1) or match.group(2)) or "")
        pos = match.end()
    out.append(literal(text[pos:]))
    return "".join(out)


def k8s_escape(text: str) -> str:
    """Protect a literal value from Kubernetes' own `$(VAR)` expansion in env values."""
    return text.replace("$", "$$")


@dataclass
class Variables:
    """Variables defined so far, in two forms: raw (for images and names, where Kubernetes does
    not expand) and env-ready (escaped, with `$(NAME)` for Secret-backed values)."""

    raw: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, SecretVariable] = field(default_factory=dict)

    def expand_raw(self, text: str) -> str:
        return expand(text, self.raw.get)

    def expand_env(self, text: str) -> str:
        return expand(text, self.env.get, k8s_escape)

    def define(self, name: str, value: str) -> None:
        """Define a plain variable: its value is expanded with the variables defined so far."""
        raw, env = self.expand_raw(value), self.expand_env(value)
        self.secrets.pop(name, None)
        self.raw[name], self.env[name] = raw, env

    def define_all(self, values: Mapping[str, str], *, under_secrets: bool = False) -> None:
        for name, value in values.items():
            if under_secrets and name in self.secrets:
                continue  # Secret variables rank above YAML variables, as project variables do
            self.define(name, value)

    def define_secret(self, variable: SecretVariable) -> None:
        self.secrets[variable.name] = variable
        if variable.file:
            path = secret_file_path(variable)
            self.raw[variable.name], self.env[variable.name] = path, k8s_escape(path)
        else:
            # The value is unknown here: images expand it to empty, env values to $(NAME).
            self.raw.pop(variable.name, None)
            self.env[variable.name] = f"$({variable.name})"

    def env_list(self) -> list[dict[str, Any]]:
        """The container env: Secret-backed variables first, so `$(NAME)` references resolve."""
        out: list[dict[str, Any]] = []
        for name, variable in self.secrets.items():
            if variable.file:
                continue
            ref = {"name": variable.secret_name, "key": variable.key}
            out.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        for name, value in self.env.items():
            if name in self.secrets and not self.secrets[name].file:
                continue
            out.append({"name": name, "value": value})
        return out


def secret_file_path(variable: SecretVariable) -> str:
    return f"{SECRET_VARIABLES_DIR}/{variable.name}/{variable.name}"
