"""Turn the Python type hints of model fields into a small closed set of shapes.

Both the parser and the schema generator switch on these shapes, so the set of supported field
types is defined in one place: scalars, datetimes, int-or-string, tuples (lists), string-keyed
mappings, nested models, each possibly optional (`X | None`).
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api.fields import IntOrString

SCALARS: dict[type[Any], str] = {str: "string", int: "integer", bool: "boolean"}


@dataclass(frozen=True)
class Shape:
    kind: str  # scalar | datetime | intorstring | list | map | model
    optional: bool = False
    scalar: type[Any] | None = None
    item: Shape | None = None
    model: type[Any] | None = None


def shape_of(hint: Any) -> Shape:
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {hint!r}")
        optional = True
        hint = args[0]
        origin = typing.get_origin(hint)
    if hint in SCALARS:
        return Shape("scalar", optional, scalar=hint)
    if hint is datetime.datetime:
        return Shape("datetime", optional)
    if hint is IntOrString:
        return Shape("intorstring", optional)
    if origin is tuple:
        args = list(typing.get_args(hint))
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"use tuple[X, ...] for lists, not {hint!r}")
        return Shape("list", optional, item=shape_of(args[0]))
    if origin in (Mapping, dict):
        key, value = typing.get_args(hint)
        if key is not str:
            raise TypeError(f"map keys must be str: {hint!r}")
        return Shape("map", optional, item=shape_of(value))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return Shape("model", optional, model=hint)
    raise TypeError(f"unsupported field type {hint!r}")


FieldShapes = tuple[tuple[dataclasses.Field[Any], Shape], ...]
# Computed once per model. (A dict, not functools.cache: mypy does not see classes as Hashable.)
_FIELD_SHAPES: dict[type[Any], FieldShapes] = {}


def field_shapes(cls: type[Any]) -> FieldShapes:
    """The dataclass fields of a model with their shapes, in declaration order."""
    shapes = _FIELD_SHAPES.get(cls)
    if shapes is None:
        hints = typing.get_type_hints(cls)
        shapes = tuple((f, shape_of(hints[f.name])) for f in dataclasses.fields(cls))
        _FIELD_SHAPES[cls] = shapes
    return shapes
