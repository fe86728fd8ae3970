"""Reading a `.gitlab-ci.yml` as GitLab does before it translates anything: the project's root
(the git work tree), and the local `include`s merged under the main file (globs against the
project's files, at most MAX_INCLUDES, no cycles). The importer's only file system access; the
translation (`importer.py`) works on what this returns."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor.gitlab.globs import compile_glob
from conveyor.gitlab.yamlload import LoadError, MarkedDict, load_yaml, read_file

MAX_INCLUDES = 150

Omit = Callable[[str, str, str], None]  # (where, key, what): something not honoured, said
Fail = Callable[[Any, str | None, str], LoadError]  # (where, key, reason): the file is unusable


def project_root(path: Path) -> Path:
    """The git work tree holding `path`, else its folder."""
    folder = path.resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        top = out.stdout.strip()
        if top:
            return Path(top)
    except (OSError, subprocess.SubprocessError):
        pass
    return folder


class IncludeReader:
    def __init__(self, root: Path, omit: Omit, fail: Fail) -> None:
        self.root, self.omit, self.fail = root, omit, fail

    def merged(self, main: MarkedDict, display: str) -> MarkedDict:
        """The main file's mapping with its local includes merged under it."""
        return self._with_includes(main, [display], 0)

    def _with_includes(self, config: MarkedDict, chain: list[str], count: int) -> MarkedDict:
        includes = config.get("include")
        if includes is None:
            return config
        entries = includes if isinstance(includes, list) else [includes]
        merged = MarkedDict()
        for entry in entries:
            local = self._local_include(config, entry)
            for rel in local:
                if rel in chain:
                    raise self.fail(config, "include", f"include cycle: {' -> '.join(chain)}")
                count += 1
                if count > MAX_INCLUDES:
                    raise self.fail(config, "include", f"more than {MAX_INCLUDES} includes")
                file_path = self.root / rel
                try:
                    text = read_file(file_path, rel)
                except LoadError as exc:
                    if exc.reason.startswith("cannot read"):
                        why = exc.reason.removeprefix("cannot read: ")
                        raise self.fail(
                            config, "include", f"local include `{rel}` cannot be read: {why}"
                        ) from exc
                    raise
                loaded = load_yaml(text, rel)
                if loaded is None:
                    continue
                if not isinstance(loaded, MarkedDict):
                    raise LoadError(rel, 1, "an included file must be a mapping")
                loaded = self._with_includes(loaded, [*chain, rel], count)
                merged = deep_merge(merged, loaded)
        body = MarkedDict({k: v for k, v in config.items() if k != "include"}).copy_marks(config)
        return deep_merge(merged, body)

    def _local_include(self, config: MarkedDict, entry: Any) -> list[str]:
        """Paths (relative to the root) of one include entry; other kinds are reported."""
        if isinstance(entry, str):
            if entry.startswith(("http://", "https://")):
                self.omit("include", "remote", f"remote include {entry} not fetched")
                return []
            entry = MarkedDict({"local": entry})
        if not isinstance(entry, dict):
            raise self.fail(config, "include", "include entries must be strings or mappings")
        for kind in ("remote", "template", "project", "component", "artifact"):
            if kind in entry:
                detail = entry[kind]
                if kind == "project":
                    detail = f"{entry[kind]} {entry.get('file')}"
                self.omit("include", kind, f"{kind} include {detail} not resolved")
                return []
        local = entry.get("local")
        if not isinstance(local, str) or not local:
            raise self.fail(config, "include", f"unsupported include entry {dict(entry)!r}")
        for extra in ("rules", "inputs"):
            if extra in entry:
                self.omit("include", extra, f"include:{extra} of {local} ignored; always included")
        rel = local.lstrip("/")
        if any(c in rel for c in "*?[{"):
            glob = compile_glob(rel)
            matches = sorted(p for p in self._repo_files() if glob.match(p))
            return [m for m in matches if m.endswith((".yml", ".yaml"))]
        if not (self.root / rel).is_file():
            raise self.fail(config, "include", f"local include `{local}` does not exist")
        return [rel]

    def _repo_files(self) -> list[str]:
        files = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if d != ".git"]
            for file_name in names:
                files.append(os.path.relpath(os.path.join(folder, file_name), self.root))
        return [f.replace(os.sep, "/") for f in files]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> MarkedDict:
    """GitLab's deep merge: mappings merge key by key, everything else (lists too) is replaced;
    the result keeps `override`'s marks."""
    out = MarkedDict(base)
    if isinstance(base, MarkedDict):
        out.copy_marks(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    if isinstance(override, MarkedDict):
        out.file, out.line = override.file, override.line
        out.key_lines = {**out.key_lines, **override.key_lines}
    return out
