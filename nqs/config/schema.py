"""JSON Schema of the config, generated from the section models (``nqs schema``).

Editors that read a ``#:schema <path or URL>`` first line in a TOML file (Taplo, Even
Better TOML) use it for completion and inline errors. The schema is what a file may
contain; checks across sections (rule vs Hilbert space, ...) happen at load.
"""

from __future__ import annotations

import json
from typing import Any

from nqs.config.document import Config


def _any_of(node: Any) -> Any:
    """``oneOf`` -> ``anyOf``: a section without ``kind`` may match several kinds'
    models (all keys defaulted); the loader picks the default kind."""
    if isinstance(node, dict):
        return {
            ("anyOf" if k == "oneOf" else k): _any_of(v)
            for k, v in node.items()
            if k != "discriminator"
        }
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    return node


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file."""
    schema = _any_of(Config.model_json_schema(mode="validation"))
    schema["required"] = [k for k in schema.get("required", []) if k != "name"]
    schema["properties"]["name"].pop("default", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "nqs run configuration",
        **{k: v for k, v in schema.items() if k != "title"},
        "description": "TOML config of an nqs run (nqs run CONFIG); see the README.",
    }


def schema_text() -> str:
    """The schema as indented JSON text with a final newline (the shipped file)."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
