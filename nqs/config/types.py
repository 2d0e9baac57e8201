"""Value types of the config schema and the base of every section.

Numbers are strict (no ``"2"`` for 2, no 2.5 where an integer is required, no
booleans as numbers) and finite; lists in TOML become tuples.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import Strict as _Strict


class Section(BaseModel):
    """A TOML table: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FreeSection(BaseModel):
    """A TOML table whose unknown keys are kept (arguments checked when built)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keys that are not declared fields, as given."""
        return dict(self.model_extra or {})


Int = Annotated[int, _Strict()]
PosInt = Annotated[int, _Strict(), Field(ge=1)]
NonNegInt = Annotated[int, _Strict(), Field(ge=0)]
Float = Annotated[float, _Strict(), Field(allow_inf_nan=False)]
PosFloat = Annotated[float, _Strict(), Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, _Strict(), Field(ge=0, allow_inf_nan=False)]
Bool = Annotated[bool, _Strict()]
Str = Annotated[str, _Strict()]


class SubkeyError(ValueError):
    """A bad entry inside a table-valued key; the error names ``<key>.<subkey>``."""

    def __init__(self, subkey: str, message: str):
        self.subkey = subkey
        self.message = message
        super().__init__(f"{subkey}: {message}")


def show(value: Any) -> str:
    """A config value as the user wrote it (strings quoted)."""
    import json

    return json.dumps(value) if isinstance(value, str) else repr(value)


def _number_or_schedule(value: Any) -> Any:
    if isinstance(value, dict):
        if not isinstance(value.get("kind"), str):
            raise SubkeyError("kind", 'a schedule table needs kind = "<schedule name>"')
        for k, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise SubkeyError(k, f"expected a finite number, got {v}")
        return dict(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number or a schedule table, got {show(value)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return float(value)


#: A non-negative number, or a schedule table ``{ kind = "...", ... }``.
NumberOrSchedule = Annotated[
    float | dict[str, Any],
    BeforeValidator(_number_or_schedule),
    Field(
        json_schema_extra={
            "anyOf": [
                {"type": "number", "minimum": 0},
                {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {"kind": {"type": "string"}},
                },
            ]
        }
    ),
]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


def _bool_or_bools(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    raise ValueError(f"expected true, false or a list of them, got {show(value)}")


#: Sites per axis: a positive integer or a list of them.
Extent = Annotated[tuple[PosInt, ...], BeforeValidator(_as_list), Field(min_length=1)]
#: Periodic boundaries: one bool, or one per axis.
Periodic = Annotated[bool | tuple[bool, ...], BeforeValidator(_bool_or_bools)]


def _table_of_tables(value: dict[str, Any]) -> dict[str, Any]:
    for name, table in value.items():
        if not isinstance(table, dict) or not isinstance(table.get("kind"), str):
            raise SubkeyError(name, 'expected { kind = "...", ... }')
    return value


#: ``name = { kind = "...", ... }`` entries (observables), checked when built.
NamedTables = Annotated[dict[str, dict[str, Any]], AfterValidator(_table_of_tables)]
