"""TOML in and out: reading a config file, ``--set`` overrides, the resolved config."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w
import tomllib
from pydantic import ValidationError

from nqs.config.document import Config
from nqs.config.errors import input_error
from nqs.errors import InputError


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """Split ``KEY=VALUE`` into the key path and the TOML-literal value.

    The value is read as a TOML literal (``4096``, ``1e-3``, ``true``, ``[8, 8]``,
    ``{kind = "x"}``, ``"text"``); anything else is taken as a bare string.

    Raises:
        InputError: no ``=`` or an empty key part.
    """
    key, sep, value = item.partition("=")
    path = tuple(p.strip() for p in key.strip().split("."))
    if not sep or not all(path):
        raise InputError("--set", f"expected KEY=VALUE with a dotted key, got {item!r}")
    value = value.strip()
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return path, parsed


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of the raw TOML dict with ``--set KEY=VALUE`` items applied."""
    data = copy.deepcopy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(".".join(path[: i + 1]), "is a value, not a table")
        node[path[-1]] = value
    return data


def from_dict(data: dict[str, Any], name: str = "nqs") -> Config:
    """Validate a raw TOML dict; ``name`` is the default of the ``name`` key.

    Raises:
        InputError: the first invalid key, value or combination (key names it).
    """
    try:
        return Config.model_validate(data, context={"name": name})
    except ValidationError as exc:
        raise input_error(exc) from None


def loads(text: str, *, overrides: Iterable[str] = (), name: str = "nqs") -> Config:
    """Parse and validate TOML text; ``name`` is the default of the ``name`` key.

    Raises:
        InputError: any invalid TOML, key, value or combination (key names it).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError("config", f"invalid TOML: {err}") from None
    return from_dict(apply_overrides(data, overrides), name)


def load(path: str | Path, *, overrides: Iterable[str] = ()) -> Config:
    """Read, override and validate a TOML config file (default name: file stem).

    Raises:
        InputError: missing/unreadable file (key = path), invalid TOML (with line and
            column), or any invalid key, value or combination.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(str(path), f"cannot read: {err}") from None
    try:
        return loads(text, overrides=overrides, name=path.stem)
    except InputError as err:
        if err.key == "config":
            raise InputError(str(path), err.message) from None
        raise


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as a TOML-ready dict (absent optional keys left out;
    ``kind`` first in every section)."""
    out = _plain(cfg.model_dump())
    for name, table in out.items():
        if isinstance(table, dict) and "kind" in table and name != "observables":
            out[name] = {"kind": table.pop("kind"), **table}
    if not out.get("observables"):
        out.pop("observables", None)
    return out


def dumps(data: dict[str, Any]) -> str:
    """TOML text of a dict (tables inside sections written inline)."""
    return tomli_w.dumps(data)


def resolved_toml(cfg: Config) -> str:
    """TOML text of ``cfg`` with every default filled in; ``loads`` reads it back."""
    return dumps(to_dict(cfg))
