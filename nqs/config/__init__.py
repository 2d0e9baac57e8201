"""The run configuration: a TOML file validated into frozen pydantic models.

Read a config with :func:`load` (file) or :func:`loads` (text) into a
:class:`Config` with one model per section (``nqs.config.sections``); every key is
declared there once, with type, default and description, and :func:`json_schema`
(``nqs schema``) is generated from the same models. Every problem is reported as
``nqs.errors.InputError(key, message)`` naming the dotted key (or the file).

Defaults resolved from other sections: ``sampler.rule`` (``local`` unconstrained,
``exchange`` for two constrained local states, ``hop`` for bosons with
``n_particles``, ``hamiltonian`` otherwise; rules that cannot sample the space
ergodically are refused) and ``sampler.sweep_size`` (``n_sites``).
``driver.exact``: "auto" computes the exact energy at the start of a run for small
spaces (``nqs.drivers.loop.MAX_EXACT_DIMENSION``), true up to
``nqs.build.MAX_EXACT_DIMENSION``, false never. Free tables (``[model]`` and
``[optimizer]`` arguments, schedules, observables) are kept as given and checked when
the objects are built (``nqs.build``).
"""

from nqs.config.document import Config, default_rule
from nqs.config.files import (
    apply_overrides,
    dumps,
    from_dict,
    load,
    loads,
    parse_override,
    resolved_toml,
    to_dict,
)
from nqs.config.schema import json_schema

__all__ = [
    "Config",
    "apply_overrides",
    "default_rule",
    "dumps",
    "from_dict",
    "json_schema",
    "load",
    "loads",
    "parse_override",
    "resolved_toml",
    "to_dict",
]
