"""Field declarations shared by the model parsers and the CRD schema generator.

Each model is a frozen dataclass whose fields carry a `FieldInfo` in their metadata. The parser
(`codec.py`) and the OpenAPI builder (`openapi.py`) both read these declarations, so a default, an
enum or a limit is written once and the API server and the operator agree on it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# The dataclasses sentinel, re-exported so callers need not import dataclasses.
MISSING: Any = dataclasses.MISSING


class IntOrString:
    """Marker type for Kubernetes int-or-string values (resource quantities)."""


@dataclass(frozen=True)
class Validation:
    """One `x-kubernetes-validations` CEL rule."""

    rule: str
    message: str
    message_expression: str | None = None
    reason: str | None = None
    field_path: str | None = None

    def to_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.reason:
            out["reason"] = self.reason
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


@dataclass(frozen=True)
class FieldInfo:
    """Everything the schema says about one field, beyond its Python type."""

    description: str
    json_name: str | None = None
    # Publish the dataclass default in the CRD schema so the API server stores it.
    publish_default: bool = True
    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    enum: tuple[Any, ...] | None = None
    format: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    max_properties: int | None = None
    # Constraints on list items / map values when they are scalars.
    item_max_length: int | None = None
    item_min_length: int | None = None
    item_pattern: str | None = None
    item_enum: tuple[Any, ...] | None = None
    item_minimum: int | None = None
    item_maximum: int | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] | None = None
    validations: tuple[Validation, ...] = ()
    # Validations placed on list items / map values (the `self` of the rule is one item).
    item_validations: tuple[Validation, ...] = ()


@functools.cache  # every parse of every object asks it for every field
def camel(name: str) -> str:
    """snake_case -> camelCase, the JSON spelling the API server stores."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def spec_field(
    description: str,
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | None = None,
    json_name: str | None = None,
    publish_default: bool = True,
    max_length: int | None = None,
    min_length: int | None = None,
    pattern: str | None = None,
    enum: Sequence[Any] | None = None,
    format: str | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    min_items: int | None = None,
    max_items: int | None = None,
    max_properties: int | None = None,
    item_max_length: int | None = None,
    item_min_length: int | None = None,
    item_pattern: str | None = None,
    item_enum: Sequence[Any] | None = None,
    item_minimum: int | None = None,
    item_maximum: int | None = None,
    list_type: str | None = None,
    list_map_keys: Sequence[str] | None = None,
    validations: Sequence[Validation] = (),
    item_validations: Sequence[Validation] = (),
) -> Any:
    """Declare a model field: a `dataclasses.field` whose metadata holds its `FieldInfo`."""
    info = FieldInfo(
        description=description,
        json_name=json_name,
        publish_default=publish_default,
        max_length=max_length,
        min_length=min_length,
        pattern=pattern,
        enum=tuple(enum) if enum is not None else None,
        format=format,
        minimum=minimum,
        maximum=maximum,
        min_items=min_items,
        max_items=max_items,
        max_properties=max_properties,
        item_max_length=item_max_length,
        item_min_length=item_min_length,
        item_pattern=item_pattern,
        item_enum=tuple(item_enum) if item_enum is not None else None,
        item_minimum=item_minimum,
        item_maximum=item_maximum,
        list_type=list_type,
        list_map_keys=tuple(list_map_keys) if list_map_keys is not None else None,
        validations=tuple(validations),
        item_validations=tuple(item_validations),
    )
    metadata = {"conveyor": info}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ModelInfo:
    """Schema facts about a whole model (object-level CEL rules, description)."""

    description: str
    validations: tuple[Validation, ...] = ()


def model(
    description: str, validations: Sequence[Validation] = ()
) -> Callable[[type[Any]], type[Any]]:
    """Class decorator attaching object-level schema facts to a dataclass model."""

    def attach(cls: type[Any]) -> type[Any]:
        cls.__conveyor_model__ = ModelInfo(description, tuple(validations))
        return cls

    return attach


def field_info(f: dataclasses.Field[Any]) -> FieldInfo:
    info = f.metadata.get("conveyor")
    if not isinstance(info, FieldInfo):
        raise TypeError(f"field {f.name} is not declared with spec_field()")
    return info


def model_info(cls: type[Any]) -> ModelInfo:
    info = getattr(cls, "__conveyor_model__", None)
    if not isinstance(info, ModelInfo):
        raise TypeError(f"{cls.__name__} is not decorated with @model")
    return info


def json_name(f: dataclasses.Field[Any]) -> str:
    return field_info(f).json_name or camel(f.name)
