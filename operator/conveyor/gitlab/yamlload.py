"""Loading `.gitlab-ci.yml` files: plain YAML (anchors, aliases, `<<` merge keys) plus GitLab's
`!reference [.job, key, ...]` tag, keeping where each mapping and key came from so that semantic
errors can name `FILE:LINE`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.yamllimits import MAX_DEPTH, YAMLTooLarge, check_node, check_size


class LoadError(ValueError):
    """A file that cannot be used; `file` and `line` (1-based) say where."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        super().__init__(f"{file}:{line or 1}: {reason}")
        self.file = file
        self.line = line or 1
        self.reason = reason


class MarkedDict(dict[str, Any]):
    """A mapping that remembers its file, its line and the line of each key."""

    file: str = "?"
    line: int = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def copy_marks(self, other: dict[str, Any]) -> MarkedDict:
        if isinstance(other, MarkedDict):
            self.file, self.line = other.file, other.line
            self.key_lines = {**other.key_lines, **self.key_lines}
        return self


@dataclass(frozen=True)
class Reference:
    """`!reference [.job, key, ...]`, resolved after `extends` (as GitLab does)."""

    path: tuple[str, ...]
    file: str
    line: int


# libyaml's parser when PyYAML has it: parsing is most of an import's time, and ten times faster.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# A base class chosen at run time: mypy cannot check it (it is a SafeLoader either way).
class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    file_name = "?"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[MarkedDict]:
    data = MarkedDict()
    data.file = loader.file_name
    data.line = node.start_mark.line + 1
    yield data
    loader.flatten_mapping(node)  # `<<` merge keys: explicit keys win over merged ones
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark
            )
        # A non-string key (an int, null) is kept as is: the importer refuses it by name.
        name: Any = (
            key if isinstance(key, str) else str(key).lower() if isinstance(key, bool) else key
        )
        data[name] = loader.construct_object(value_node, deep=True)
        if isinstance(name, str):
            data.key_lines[name] = key_node.start_mark.line + 1


def _construct_reference(loader: _Loader, node: yaml.Node) -> Reference:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!reference needs a list like [.job, script]", node.start_mark
        )
    path = loader.construct_sequence(node, deep=True)
    if not path or not all(isinstance(p, str) for p in path):
        raise yaml.constructor.ConstructorError(
            None, None, "!reference needs a list of keys like [.job, script]", node.start_mark
        )
    return Reference(tuple(path), loader.file_name, node.start_mark.line + 1)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("!reference", _construct_reference)


def decode(data: bytes, file_name: str) -> str:
    """A file's text: UTF-8 (a byte-order mark is dropped), at most MAX_INPUT_BYTES long."""
    try:
        check_size(len(data))
    except YAMLTooLarge as exc:
        raise LoadError(file_name, 1, f"refused: {exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LoadError(
            file_name, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def read_file(path: Path, file_name: str) -> str:
    """The text of the file at `path`, refused before it is read when it is too large."""
    try:
        check_size(path.stat().st_size)
        data = path.read_bytes()
    except YAMLTooLarge as exc:
        raise LoadError(file_name, 1, f"refused: {exc}") from None
    except OSError as exc:
        raise LoadError(file_name, None, f"cannot read: {exc.strerror or exc}") from exc
    return decode(data, file_name)


def load_yaml(text: str, file_name: str) -> Any:
    """Parse one file; YAML errors become LoadError with the line of the problem. A file over
    the bounds of conveyor.yamllimits (size, depth, expanded aliases) is refused before it is
    built, so that nothing walks a "billion laughs"."""

    class Loader(_Loader):
        pass

    Loader.file_name = file_name
    try:
        check_size(len(text.encode("utf-8", "surrogatepass")))
        loader = Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            check_node(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except YAMLTooLarge as exc:
        raise LoadError(file_name, exc.line, f"refused: {exc}") from None
    except RecursionError:
        raise LoadError(
            file_name, None, f"refused: nested more than {MAX_DEPTH} levels deep"
        ) from None
    except yaml.composer.ComposerError as exc:
        if "another document" in str(exc.problem) and re.match(
            r"(?s)\s*(#[^\n]*\n\s*)*spec:", text
        ):
            # GitLab's header (docs.gitlab.com/ci/yaml/#spec): `spec: inputs:`, then `---`.
            raise LoadError(
                file_name,
                1,
                "the spec: header (inputs interpolated as $[[ inputs.NAME ]]) is not "
                "supported: Conveyor does not interpolate inputs",
            ) from exc
        raise _yaml_error(exc, file_name) from exc
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file_name) from exc
    except yaml.YAMLError as exc:
        raise LoadError(file_name, None, f"invalid YAML: {exc}") from exc


def _yaml_error(exc: yaml.MarkedYAMLError, file_name: str) -> LoadError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    reason = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
    return LoadError(file_name, line, f"invalid YAML: {reason}")
