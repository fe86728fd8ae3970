"""CI variables of a job: predefined ones, the pipeline's, the job's, Secret references and the
run's, merged with GitLab's precedence and expanded the way GitLab expands them.

GitLab first merges every definition into one set (the highest precedence wins a name) and only
then expands each value against that whole set, recursively: a pipeline variable
`URL: https://$HOST/api` sees a `HOST` the job defines, and the order of definition does not
matter (docs.gitlab.com/ci/variables/#use-cicd-variables-in-other-variables). `Variables` keeps
every definition and expands when a value is read.

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

# A definition: a value as written (references unexpanded), or a Secret reference.
Definition = str | SecretVariable


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


def references(text: str) -> list[str]:
    """The variable names `text` refers to (`$$` is no reference)."""
    return [m.group(1) or m.group(2) for m in _REFERENCE.finditer(text) if m.group(0) != "$$"]


def literal_value(text: str) -> str:
    """`text` as a value that expands to itself (GitLab's `expand: false`, predefined values)."""
    return text.replace("$", "$$")


def k8s_escape(text: str) -> str:
    """Protect a literal value from Kubernetes' own `$(VAR)` expansion in env values."""
    return text.replace("$", "$$")


def reference_cycle(values: Mapping[str, str]) -> tuple[str, ...] | None:
    """A cycle of references between two or more variables (`A: $B`, `B: $A`), which GitLab
    refuses ("circular variable reference detected"), or None. A variable that refers to itself
    is no cycle: its reference means the value it overrides."""
    graph = {
        name: sorted({r for r in references(value) if r in values and r != name})
        for name, value in values.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> tuple[str, ...] | None:
        state[name] = 1
        path.append(name)
        for child in graph[name]:
            if state.get(child) == 1:
                return (*path[path.index(child) :], child)
            if child not in state:
                found = visit(child)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


_Key = tuple[str, int, bool]  # (name, index of the definition, env form)


@dataclass
class Variables:
    """Every definition of every variable, lowest precedence first; the last one of a name is
    its value. Values are expanded when read, against the whole set: a reference to another
    variable means that variable's value; a reference of a variable to itself means the value
    its definition overrides (empty when none), so it never loops; a cycle between variables
    expands the reference that closes it to empty and is listed in `cycles`.

    Two forms are read: raw (images and names, where Kubernetes does not expand) and env-ready
    (escaped, with `$(NAME)` for Secret-backed values)."""

    definitions: dict[str, list[Definition]] = field(default_factory=dict)
    cycles: set[tuple[str, ...]] = field(default_factory=set)
    _memo: dict[_Key, str | None] = field(default_factory=dict, repr=False)

    # --- defining -----------------------------------------------------------------------

    def define(self, name: str, value: str, *, under_secrets: bool = False) -> None:
        """Define a plain variable over the definitions so far (below a Secret-backed one with
        `under_secrets`: Secret variables rank above YAML variables, as project variables do)."""
        stack = self.definitions.setdefault(name, [])
        if under_secrets and stack and isinstance(stack[-1], SecretVariable):
            stack.insert(len(stack) - 1, value)
        else:
            stack.append(value)
        self._memo.clear()

    def define_all(self, values: Mapping[str, str], *, under_secrets: bool = False) -> None:
        for name, value in values.items():
            self.define(name, value, under_secrets=under_secrets)

    def define_literal(self, name: str, value: str) -> None:
        """A value that is never expanded (predefined variables)."""
        self.define(name, literal_value(value))

    def define_default(self, name: str, value: str) -> None:
        """A literal value under every other definition of `name` (the job's own wins)."""
        self.definitions.setdefault(name, []).insert(0, literal_value(value))
        self._memo.clear()

    def define_secret(self, variable: SecretVariable) -> None:
        self.definitions.setdefault(variable.name, []).append(variable)
        self._memo.clear()

    # --- reading ------------------------------------------------------------------------

    @property
    def secrets(self) -> dict[str, SecretVariable]:
        """Variables whose value is a Secret's (not overridden by a later plain definition)."""
        return {
            name: stack[-1]
            for name, stack in self.definitions.items()
            if isinstance(stack[-1], SecretVariable)
        }

    @property
    def raw(self) -> dict[str, str]:
        """Expanded values; Secret values are unknown here and left out (file ones are paths)."""
        out = {}
        for name in self.definitions:
            value = self.value(name)
            if value is not None:
                out[name] = value
        return out

    @property
    def env(self) -> dict[str, str]:
        """Env-ready values of every variable."""
        return {name: self.value(name, env=True) or "" for name in self.definitions}

    def value(self, name: str, *, env: bool = False) -> str | None:
        stack = self.definitions.get(name)
        if not stack:
            return None
        return self._resolve(name, len(stack) - 1, env, set())

    def expand_raw(self, text: str) -> str:
        return expand(text, self.value)

    def expand_env(self, text: str) -> str:
        return expand(text, lambda name: self.value(name, env=True), k8s_escape)

    def _resolve(self, name: str, index: int, env: bool, visiting: set[_Key]) -> str | None:
        key = (name, index, env)
        if key in self._memo:
            return self._memo[key]
        definition = self.definitions[name][index]
        if isinstance(definition, SecretVariable):
            if definition.file:
                path = secret_file_path(definition)
                return k8s_escape(path) if env else path
            # The value is unknown here: images expand it to empty, env values to $(NAME).
            return f"$({name})" if env else None
        if key in visiting:
            return None  # closes a cycle: `cycles` names it, the caller expands it to empty
        visiting.add(key)

        def lookup(ref: str) -> str | None:
            if ref == name:  # a variable that refers to itself means the value it overrides
                return self._resolve(name, index - 1, env, visiting) if index > 0 else None
            stack = self.definitions.get(ref)
            if not stack:
                return None
            target = (ref, len(stack) - 1, env)
            if target in visiting:
                self.cycles.add(tuple(sorted({n for n, _, _ in visiting} | {ref})))
                return None
            return self._resolve(ref, len(stack) - 1, env, visiting)

        value = expand(definition, lookup, k8s_escape if env else (lambda s: s))
        visiting.discard(key)
        self._memo[key] = value
        return value

    def env_list(self) -> list[dict[str, Any]]:
        """The container env: Secret-backed variables first, so `$(NAME)` references resolve."""
        out: list[dict[str, Any]] = []
        secrets = self.secrets
        for name, variable in secrets.items():
            if variable.file:
                continue
            ref = {"name": variable.secret_name, "key": variable.key}
            out.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        for name in self.definitions:
            if name in secrets and not secrets[name].file:
                continue
            out.append({"name": name, "value": self.value(name, env=True) or ""})
        return out


def secret_file_path(variable: SecretVariable) -> str:
    return f"{SECRET_VARIABLES_DIR}/{variable.name}/{variable.name}"
