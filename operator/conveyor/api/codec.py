"""Generic parsing (camelCase JSON -> models) and serialisation (models -> JSON) of models.

Parsing applies the declared defaults and checks the declared constraints, so objects that did not
go through the API server (inline specs, tests, importers) are held to the same rules as the CRD
schema. Cross-field rules (stages, needs) are the engine's validation, not the codec's.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from conveyor.api.fields import FieldInfo, field_info, json_name
from conveyor.api.shapes import Shape, field_shapes

T = TypeVar("T")


class ModelError(ValueError):
    """An object does not match its model; the message names the field path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def parse_time(value: str) -> datetime.datetime:
    """Parse an RFC 3339 timestamp as the API server writes it; naive values are taken as UTC."""
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def format_time(value: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, the form Kubernetes uses (metav1.Time)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_dict(cls: type[T], obj: Any, path: str = "") -> T:
    """Build model `cls` from its JSON form, applying defaults and checking constraints."""
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise ModelError(path or "<root>", f"expected an object, got {type(obj).__name__}")
    kwargs: dict[str, Any] = {}
    for name, key, shape, info, defaulted in _parsing(cls):
        raw = obj.get(key)
        if raw is None:
            if defaulted:
                continue  # the dataclass default applies
            if shape.optional:
                kwargs[name] = None
                continue
            raise ModelError(f"{path}.{key}" if path else key, "required field is missing")
        here = f"{path}.{key}" if path else key
        kwargs[name] = _parse_value(shape, info, raw, here, top=True)
    return cls(**kwargs)


# Per model, once: each field's name, JSON key, shape, declaration and whether it has a default
# (a CLI listing parses hundreds of objects; these do not change).
_Parsing = tuple[tuple[str, str, Shape, FieldInfo, bool], ...]
_PARSING: dict[type[Any], _Parsing] = {}


def _parsing(cls: type[Any]) -> _Parsing:
    plan = _PARSING.get(cls)
    if plan is None:
        plan = tuple(
            (
                f.name,
                json_name(f),
                shape,
                field_info(f),
                f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING,
            )
            for f, shape in field_shapes(cls)
        )
        _PARSING[cls] = plan
    return plan


def _parse_value(shape: Shape, info: FieldInfo, raw: Any, path: str, *, top: bool) -> Any:
    if shape.kind == "scalar":
        return _parse_scalar(shape, info, raw, path, top=top)
    if shape.kind == "datetime":
        if isinstance(raw, datetime.datetime):
            return raw
        if not isinstance(raw, str):
            raise ModelError(path, "expected an RFC 3339 timestamp")
        try:
            return parse_time(raw)
        except ValueError as exc:
            raise ModelError(path, f"bad timestamp {raw!r}") from exc
    if shape.kind == "intorstring":
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ModelError(path, "expected an integer or a string")
        return raw
    if shape.kind == "model":
        assert shape.model is not None
        return from_dict(shape.model, raw, path)
    assert shape.item is not None
    if shape.kind == "list":
        if not isinstance(raw, list | tuple):
            raise ModelError(path, "expected a list")
        _check_count(info, len(raw), path)
        items = tuple(
            _parse_value(shape.item, info, item, f"{path}[{i}]", top=False)
            for i, item in enumerate(raw)
        )
        if info.list_type == "set" and len(set(items)) != len(items):
            raise ModelError(path, "duplicate entries are not allowed")
        if info.list_map_keys:
            keys = [tuple(getattr(item, _attr(k)) for k in info.list_map_keys) for item in items]
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ModelError(path, f"duplicate entries with key {dupes[0]!r}")
        return items
    # map
    if not isinstance(raw, Mapping):
        raise ModelError(path, "expected a map")
    if info.max_properties is not None and len(raw) > info.max_properties:
        raise ModelError(path, f"at most {info.max_properties} entries allowed")
    return {
        str(k): _parse_value(shape.item, info, v, f"{path}.{k}", top=False) for k, v in raw.items()
    }


def _attr(json_key: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), json_key)


def _check_count(info: FieldInfo, count: int, path: str) -> None:
    if info.min_items is not None and count < info.min_items:
        raise ModelError(path, f"at least {info.min_items} item(s) required")
    if info.max_items is not None and count > info.max_items:
        raise ModelError(path, f"at most {info.max_items} items allowed")


def _parse_scalar(shape: Shape, info: FieldInfo, raw: Any, path: str, *, top: bool) -> Any:
    expected = shape.scalar
    # bool is an int subclass in Python; JSON keeps them apart, so must we.
    if expected is int and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise ModelError(path, "expected an integer")
    if expected is bool and not isinstance(raw, bool):
        raise ModelError(path, "expected a boolean")
    if expected is str and not isinstance(raw, str):
        raise ModelError(path, "expected a string")
    enum = info.enum if top else info.item_enum
    if enum is not None and raw not in enum:
        raise ModelError(path, f"must be one of {', '.join(map(str, enum))}, not {raw!r}")
    if isinstance(raw, str):
        max_length = info.max_length if top else info.item_max_length
        min_length = info.min_length if top else info.item_min_length
        pattern = info.pattern if top else info.item_pattern
        if max_length is not None and len(raw) > max_length:
            raise ModelError(path, f"longer than {max_length} characters")
        if min_length is not None and len(raw) < min_length:
            raise ModelError(path, f"shorter than {min_length} character(s)")
        if pattern is not None and not re.search(pattern, raw):
            raise ModelError(path, f"{raw!r} does not match {pattern}")
    elif expected is int:
        minimum = info.minimum if top else info.item_minimum
        maximum = info.maximum if top else info.item_maximum
        if minimum is not None and raw < minimum:
            raise ModelError(path, f"must be >= {minimum}")
        if maximum is not None and raw > maximum:
            raise ModelError(path, f"must be <= {maximum}")
    return raw


def to_dict(instance: Any) -> dict[str, Any]:
    """Serialise a model to its camelCase JSON form; `None` fields are omitted."""
    out: dict[str, Any] = {}
    for f, shape in field_shapes(type(instance)):
        value = getattr(instance, f.name)
        if value is None:
            continue
        out[json_name(f)] = _dump_value(shape, value)
    return out


def _dump_value(shape: Shape, value: Any) -> Any:
    if shape.kind == "datetime":
        return format_time(value)
    if shape.kind == "model":
        return to_dict(value)
    if shape.kind == "list":
        assert shape.item is not None
        return [_dump_value(shape.item, v) for v in value]
    if shape.kind == "map":
        assert shape.item is not None
        return {k: _dump_value(shape.item, v) for k, v in value.items()}
    return value
