"""Pydantic validation errors as one ``InputError`` naming the dotted config key."""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from nqs.config.sections import UNIONS, kinds_of
from nqs.config.types import SubkeyError, show
from nqs.errors import InputError

_TYPES = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
}


_MEMBER_NAMES = {"bool", "int", "float", "str", "none", "dict", "list", "tuple"}


def _unknown(key: str, candidates: list[str], what: str = "key") -> InputError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean `{close[0]}`?"
    else:
        hint = f"; expected one of: {', '.join(sorted(candidates))}"
    return InputError(key, f"unknown {what}{hint}")


def _member(section: str, tag: str) -> type | None:
    members, _ = UNIONS.get(section, ((), None))
    return next((m for m in members if m.__name__ == tag), None)


def _kinds(section: str) -> list[str]:
    return [k for m in UNIONS[section][0] for k in kinds_of(m)]


def _section_model(annotation: Any) -> type | None:
    """The section model of a top-level field (``X`` or ``X | None``), if one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [a for a in typing.get_args(annotation) if isinstance(a, type)]
    return next((a for a in members if issubclass(a, BaseModel)), None)


def _split_loc(loc: tuple) -> tuple[list[str], type | None]:
    """Dotted key parts (union tags and list indices dropped) and the section model."""
    from nqs.config.document import Config

    parts: list[str] = []
    model: type | None = Config
    for i, item in enumerate(loc):
        if isinstance(item, int):
            break
        if "[" in str(item) or item in _MEMBER_NAMES:
            continue  # a member of a plain union, not a key
        if i == 1 and parts[0] in UNIONS and _member(parts[0], item) is not None:
            model = _member(parts[0], item)
            continue
        if i == 0:
            field = Config.model_fields.get(item)
            model = _section_model(getattr(field, "annotation", None))
        parts.append(str(item))
    return parts, model


def _tag_error(section: str, value: Any) -> InputError:
    if not isinstance(value, dict):
        return InputError(section, f"expected a table [{section}], got {show(value)}")
    if "kind" not in value:
        return InputError(f"{section}.kind", "missing required key")
    kinds = ", ".join(_kinds(section))
    return InputError(
        f"{section}.kind", f"expected one of {kinds}; got {show(value['kind'])}"
    )


def _extra(parts: list[str], model: type | None, value: Any) -> InputError:
    from nqs.config.document import Config

    key = ".".join(parts)
    if len(parts) == 1:
        what = "section" if isinstance(value, dict) else "key"
        return _unknown(key, list(Config.model_fields), what)
    section, name = parts[0], parts[-1]
    if section in UNIONS and model is not None and len(parts) == 2:
        kind = kinds_of(model)
        others = {k for m in UNIONS[section][0] for k in m.model_fields}
        if name in others:
            kinds = [
                k
                for m in UNIONS[section][0]
                if name in m.model_fields
                for k in kinds_of(m)
            ]
            shown = kind[0] if len(kind) == 1 else "/".join(kind)
            return InputError(
                key,
                f'not a key of {section}.kind = "{shown}" (it belongs to '
                f"{', '.join(kinds)})",
            )
        return _unknown(key, list(model.model_fields))
    fields = list(model.model_fields) if model is not None else []
    return _unknown(key, fields)


def _message(err: dict[str, Any]) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind in _TYPES:
        return f"{_TYPES[kind]}, got {show(value)}"
    if kind == "finite_number":
        return f"expected a finite number, got {value}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {show(value)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = [o.strip("'") for o in re.split(r", | or ", expected) if o]
        return f"expected one of {', '.join(options)}; got {show(value)}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        more = "at least" if kind == "too_short" else "at most"
        entries = "entry" if n == 1 else "entries"
        return f"expected {more} {n} {entries}, got {show(value)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def input_error(exc: ValidationError) -> InputError:
    """The first error of ``exc`` as ``InputError(dotted key, message)``."""
    errors = exc.errors(include_url=False)
    # Prefer a concrete problem over the "missing" of a later key.
    err = next((e for e in errors if e["type"] != "missing"), errors[0])
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, InputError):
        return InputError(error.key, error.message)
    parts, model = _split_loc(tuple(err["loc"]))
    if isinstance(error, SubkeyError):
        return InputError(".".join([*parts, error.subkey]), error.message)
    kind = err["type"]
    if kind in ("union_tag_not_found", "union_tag_invalid") and len(parts) == 1:
        return _tag_error(parts[0], err.get("input"))
    if kind == "extra_forbidden":
        return _extra(parts, model, err.get("input"))
    key = ".".join(parts)
    if kind == "missing":
        if len(parts) == 1:
            return InputError(key, f"missing required section [{key}]")
        if parts[0] in UNIONS and model is not None:
            shown = "/".join(kinds_of(model))
            return InputError(key, f'missing required key for kind "{shown}"')
        return InputError(key, "missing required key")
    if (
        len(parts) == 1
        and kind in ("model_type", "dict_type")
        and parts[0]
        in (
            "lattice",
            "hilbert",
            "hamiltonian",
            "model",
            "sampler",
            "driver",
            "optimizer",
            "preconditioner",
            "observables",
        )
    ):
        return InputError(key, f"expected a table [{key}], got {show(err['input'])}")
    return InputError(key, _message(err))
