"""Tool input schemas every model provider accepts: the one place they are made.

OpenAI (strict mode), Anthropic (strict tool use), Gemini and Ollama accept
different parts of JSON Schema, and one tool outside their common part fails
the whole request. `portable_schema` turns a pydantic input model into that
common part:

- every object has ``additionalProperties: false`` and lists every property as
  required; an optional property is nullable instead (``null`` means "left out");
- unions are ``anyOf``; a literal is an ``enum`` of one value; no ``oneOf``,
  ``allOf``, ``discriminator``, ``$ref`` or ``default``;
- no numeric or length constraints (the description states the limit and
  validation enforces it), no titles;
- every node has a type.

Fields filled by the toolkit (hashes from the ledger) are left out of the schema
with `Hidden`; validation still accepts them. `ToolArguments` is the base of every
tool's input model: its ``model_json_schema`` *is* the portable schema, so
LangChain, every provider's converter and an MCP server all read the same one.
`portability_problems` checks a schema against the rules above.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.json_schema import SkipJsonSchema as Hidden

__all__ = [
    "Hidden",
    "ToolArguments",
    "portability_problems",
    "portable",
    "portable_schema",
]

# `Hidden[...]` (pydantic's SkipJsonSchema) keeps a field out of the schema the model sees.

_DROPPED = frozenset(
    {
        "title",
        "default",
        "examples",
        "discriminator",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
    }
)
_FORBIDDEN = frozenset({"oneOf", "allOf", "discriminator", "default", "$ref", "$defs", "const"})
_CONSTRAINTS = _DROPPED - {"title", "examples", "discriminator", "default"}
_NULL: dict[str, Any] = {"type": "null"}


def portable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema rewritten into the subset every provider accepts."""
    defs = dict(schema.get("$defs") or {})
    return _node(dict(schema), defs)


def portable_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The portable schema of a pydantic model (see the module docstring)."""
    return portable(model.model_json_schema())


def _node(node: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    ref = node.pop("$ref", None)
    if isinstance(ref, str):
        node = {**defs[ref.rsplit("/", 1)[-1]], **node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "$defs":
            continue
        if key in ("anyOf", "oneOf"):
            out["anyOf"] = [_node(dict(v), defs) for v in value]
        elif key == "allOf" and len(value) == 1:
            out.update(_node(dict(value[0]), defs))
        elif key == "const":
            out["enum"] = [value]
            out.setdefault("type", _json_type(value))
        elif key == "items":
            out["items"] = _node(dict(value), defs)
        elif key == "properties":
            out["properties"] = {k: _node(dict(v), defs) for k, v in value.items()}
        else:
            out[key] = value
    if "anyOf" in out:
        # A description next to anyOf stays; a nullable single type stays an anyOf (Gemini
        # reads it as `nullable`, OpenAI strict as a union with null).
        out["anyOf"] = _flatten(out["anyOf"])
    if out.get("type") == "object" or "properties" in out:
        out["type"] = "object"
        properties: dict[str, Any] = out.setdefault("properties", {})
        required = set(out.get("required") or [])
        for name, prop in properties.items():
            if name not in required:
                properties[name] = _nullable(prop)
        out["required"] = list(properties)
        out["additionalProperties"] = False
    return out


def _flatten(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for option in options:
        inner = option.get("anyOf")
        if isinstance(inner, list) and set(option) == {"anyOf"}:
            flat.extend(inner)
        elif option not in flat:
            flat.append(option)
    return flat


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    if prop.get("type") == "null":
        return prop
    options = prop.get("anyOf")
    if isinstance(options, list):
        if _NULL not in options:
            prop = {**prop, "anyOf": [*options, _NULL]}
        return prop
    described = {k: v for k, v in prop.items() if k == "description"}
    typed = {k: v for k, v in prop.items() if k != "description"}
    return {"anyOf": [typed, _NULL], **described}


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return
    yield path, node
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(node.get(key) or []):
            yield from _walk(sub, f"{path}.{key}[{i}]")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")


def portability_problems(schema: Mapping[str, Any]) -> list[str]:
    """Every place where ``schema`` leaves the portable subset (empty: it is portable)."""
    problems = []
    for path, node in _walk(dict(schema), "$"):
        for key in sorted((_FORBIDDEN | _CONSTRAINTS) & set(node)):
            problems.append(f"{path}: uses {key!r}")
        if "type" not in node and "anyOf" not in node and "enum" not in node:
            problems.append(f"{path}: has no type")
        if isinstance(node.get("type"), list):
            problems.append(f"{path}: a list of types (use anyOf)")
        if node.get("type") == "object":
            props = node.get("properties") or {}
            if node.get("additionalProperties") is not False:
                problems.append(f"{path}: object without additionalProperties: false")
            if set(node.get("required") or []) != set(props):
                problems.append(f"{path}: not every property is required")
            if not props and path != "$":
                problems.append(f"{path}: an object with no properties")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{path}: an array without items")
    return problems


# ----------------------------------------------------------------------------- inputs


def _accepts_text(annotation: Any) -> bool:
    """Whether a field's type takes a plain string (then a string is never JSON-decoded)."""
    if annotation is str or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_accepts_text(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _accepts_text(typing.get_args(annotation)[0])
    return origin is typing.Literal


def _decoded(value: Any, field: Any) -> Any:
    """A list or object a model sent as a JSON string, decoded (other values as they are).

    A field that takes text keeps a string as text: only what receives it knows whether
    ``'["APAC"]'`` means a list (a multiselect's value, decoded in the kernel's
    ``set_ui_value``) or the text itself (a text box's).
    """
    if field is None or not isinstance(value, str):
        return value
    start = value.strip()[:1]
    if start not in ("[", "{") or _accepts_text(field.annotation):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # validation says what is wrong with it


class ToolArguments(BaseModel):
    """Base of every tool's arguments: portable schema, lenient where a model is sloppy.

    A ``null`` is the same as leaving the field out (strict providers send every
    field). A list or object sent as a JSON string is decoded. An argument the
    tool does not know (`dry_run`) is refused with the valid ones listed, never
    silently ignored while the change goes ahead.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        out = {}
        for key, value in data.items():
            if value is not None:
                out[key] = _decoded(value, fields.get(key))
        return out

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The portable schema (see `portable`), whatever generator options are given.

        Without the model's own description: the tool's description says it.
        """
        schema = portable(super().model_json_schema(*args, **kwargs))
        schema.pop("description", None)
        return schema

    @classmethod
    def visible_fields(cls) -> list[str]:
        """The argument names the model sees (hidden ones are filled by the toolkit)."""
        return list(cls.model_json_schema().get("properties") or {})
