"""Turn pydantic's validation errors into one-line problems that name the line, the field and the fix."""

from __future__ import annotations

import typing
from enum import Enum

from pydantic import BaseModel, ValidationError

from zoo.errors import Problem, did_you_mean
from zoo.yamlio import Document, Loc, dotted

ID_HELP = "use lowercase letters, digits and '-', starting with a letter or digit (it becomes a repo id and a path)"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that holds the last element of ``loc``."""
    current: typing.Any = root
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = _field(current, str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: typing.Any) -> typing.Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp


def _field(model: type[BaseModel], name: str):
    for fname, f in model.model_fields.items():
        if name in (fname, f.alias):
            return f
    return None


def _names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _enum_at(root: type[BaseModel], loc: Loc) -> list[str] | None:
    model = _model_at(root, loc)
    if model is None:
        return None
    f = _field(model, str(loc[-1]))
    tp = _unwrap(f.annotation) if f else None
    if typing.get_origin(tp) is list:
        tp = _unwrap(typing.get_args(tp)[0])
    if isinstance(tp, type) and issubclass(tp, Enum):
        return [e.value for e in tp]
    if typing.get_origin(tp) is typing.Literal:
        return [str(a) for a in typing.get_args(tp)]
    return None


def problems_from(err: ValidationError, doc: Document, root: type[BaseModel]) -> list[Problem]:
    out: list[Problem] = []
    for e in err.errors():
        loc: Loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = e["type"]
        value = e.get("input")
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
            out.append(doc.problem(loc, f"id '{loc[-1]}' is not valid: {ID_HELP}"))
            continue
        if kind == "extra_forbidden":
            model = _model_at(root, loc)
            hint = did_you_mean(str(loc[-1]), _names(model)) if model else ""
            msg = f"unknown key '{loc[-1]}'{hint}"
        elif kind == "missing":
            msg = f"required key '{loc[-1]}' is missing: add it"
            if loc[-1] == "license":
                msg += " (e.g. 'license: apache-2.0'; the Hub card and every derived repo need it)"
        elif value is None:
            msg = "has no value: give one, or remove the key to use the default"
        elif kind in ("enum", "literal_error"):
            known = _enum_at(root, loc) or []
            msg = f"'{value}' is not allowed{did_you_mean(str(value), known)}" if known else e["msg"]
        elif kind == "string_pattern_mismatch" and "a-z0-9" in str(e.get("ctx", {}).get("pattern", "")):
            msg = f"'{value}' is not a valid id: {ID_HELP}"
        elif kind == "string_pattern_mismatch":
            msg = f"'{value}' must be a 64-character lowercase hex sha256"
        elif kind == "too_short":
            msg = "is empty: declare at least one entry"
        elif kind in ("model_type", "dict_type") and not isinstance(value, dict):
            msg = f"expected a mapping of keys, got {_kind(value)}"
        elif kind == "value_error":
            msg = str(e.get("ctx", {}).get("error", e["msg"]))
        else:
            msg = f"{e['msg'][0].lower()}{e['msg'][1:]}"
            if value is not None and not isinstance(value, dict | list):
                msg += f" (got {_short(value)})"
        out.append(doc.problem(loc, msg))
    return out


def _kind(v: object) -> str:
    return {type(None): "nothing", str: "a string", list: "a list", int: "a number", float: "a number",
            bool: "true/false"}.get(type(v), type(v).__name__)


def _short(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


__all__ = ["problems_from", "dotted"]
