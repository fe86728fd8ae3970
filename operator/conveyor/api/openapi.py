"""OpenAPI v3 structural schemas generated from the model declarations.

Every string must declare a maxLength (or an enum/format that bounds it), every list a maxItems and
every map a maxProperties: the API server estimates the cost of CEL rules from these bounds and
refuses CRDs whose rules could be too expensive, so the builder refuses unbounded fields early.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from conveyor.api.codec import to_dict
from conveyor.api.fields import FieldInfo, field_info, json_name, model_info
from conveyor.api.shapes import Shape, field_shapes

# A timestamp in RFC 3339 is at most this long ("2006-01-02T15:04:05.999999999+07:00").
TIMESTAMP_MAX_LENGTH = 40


class SchemaError(TypeError):
    """A model declaration cannot be turned into a bounded structural schema."""


def schema_for(cls: type[Any]) -> dict[str, Any]:
    """The object schema of a model, with its object-level CEL rules."""
    info = model_info(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f, shape in field_shapes(cls):
        key = json_name(f)
        finfo = field_info(f)
        where = f"{cls.__name__}.{f.name}"
        prop = _value_schema(shape, finfo, where, top=True)
        # The field's own description wins over the nested model's.
        prop = {"description": finfo.description} | {
            k: v for k, v in prop.items() if k != "description"
        }
        default = _default(f)
        if default is not None and finfo.publish_default:
            prop["default"] = default
        if finfo.validations:
            # Keep the nested model's own rules; the field's rules come after them.
            rules = prop.get("x-kubernetes-validations", [])
            prop["x-kubernetes-validations"] = rules + [v.to_schema() for v in finfo.validations]
        properties[key] = prop
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and not shape.optional:
            required.append(key)
    out: dict[str, Any] = {"type": "object", "description": info.description}
    out["properties"] = properties
    if required:
        out["required"] = required
    if info.validations:
        out["x-kubernetes-validations"] = [v.to_schema() for v in info.validations]
    return out


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    if value is None or value == () or value == {}:
        return None  # empty containers are implied by absence; publishing them is noise
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _value_schema(shape: Shape, info: FieldInfo, where: str, *, top: bool) -> dict[str, Any]:
    if shape.kind == "scalar":
        return _scalar_schema(shape, info, where, top=top)
    if shape.kind == "datetime":
        return {"type": "string", "format": "date-time", "maxLength": TIMESTAMP_MAX_LENGTH}
    if shape.kind == "intorstring":
        return {"x-kubernetes-int-or-string": True}
    if shape.kind == "model":
        assert shape.model is not None
        return schema_for(shape.model)
    assert shape.item is not None
    item = _value_schema(shape.item, info, f"{where}[]", top=False)
    if info.item_validations:
        item["x-kubernetes-validations"] = [v.to_schema() for v in info.item_validations]
    if shape.kind == "list":
        if info.max_items is None:
            raise SchemaError(f"{where}: lists need max_items")
        out: dict[str, Any] = {"type": "array", "items": item, "maxItems": info.max_items}
        if info.min_items is not None:
            out["minItems"] = info.min_items
        if info.list_type:
            out["x-kubernetes-list-type"] = info.list_type
        if info.list_map_keys:
            out["x-kubernetes-list-map-keys"] = list(info.list_map_keys)
        return out
    if info.max_properties is None:
        raise SchemaError(f"{where}: maps need max_properties")
    return {"type": "object", "additionalProperties": item, "maxProperties": info.max_properties}


def _scalar_schema(shape: Shape, info: FieldInfo, where: str, *, top: bool) -> dict[str, Any]:
    pick = (
        (info.enum, info.max_length, info.min_length, info.pattern, info.minimum, info.maximum)
        if top
        else (
            info.item_enum,
            info.item_max_length,
            info.item_min_length,
            info.item_pattern,
            info.item_minimum,
            info.item_maximum,
        )
    )
    enum, max_length, min_length, pattern, minimum, maximum = pick
    if shape.scalar is str:
        out: dict[str, Any] = {"type": "string"}
        if enum is None and max_length is None:
            raise SchemaError(f"{where}: strings need max_length or an enum")
        if max_length is None and enum is not None:
            max_length = max(len(str(e)) for e in enum)
        out["maxLength"] = max_length
        if min_length is not None:
            out["minLength"] = min_length
        if pattern is not None:
            out["pattern"] = pattern
        if top and info.format:
            out["format"] = info.format
    elif shape.scalar is int:
        out = {"type": "integer"}
        if minimum is not None:
            out["minimum"] = minimum
        if maximum is not None:
            out["maximum"] = maximum
    else:
        out = {"type": "boolean"}
    if enum is not None:
        out["enum"] = list(enum)
    return out
