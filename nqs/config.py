"""TOML run configuration: schema, defaults, validation, ``--set`` overrides.

A config is read with :func:`load` (file) or :func:`loads` (text) into a frozen
:class:`Config` of one frozen dataclass per TOML section. Every problem is reported as
``nqs.errors.InputError(key, message)`` naming the dotted key (or the file).

Sections (keys per ``kind``; defaults in brackets, ``!`` = required)::

    name [file stem], seed [0]
    [lattice] kind! chain|square|triangular|honeycomb|kagome: extent! (one int per
              axis: 1 for chain, 2 otherwise), pbc [true] (bool or one per axis),
              max_order [3]; custom: n_sites!, edges! ([[i, j], ...] or [[i, j, order]])
    [hilbert] kind [spin]: s [0.5], total_sz; fock: n_max!, n_particles
    [hamiltonian] kind!: ising J [1] h [1] | heisenberg J [1] sign_rule |
              xxz J [1] delta [1] sign_rule | j1j2 J1 [1] J2! sign_rule |
              bose_hubbard t [1] U [1] mu [0]
    [model] kind [rbm], param_dtype [float64], any other key goes to the module
    [sampler] kind [metropolis]: rule, n_chains [16], n_samples [1024],
              n_discard_per_chain [16], sweep_size [n_sites], power [2];
              exact: n_chains [16], n_samples [1024], power [2]
    [driver] kind [vmc]: n_steps [300], checkpoint_every [50], flush_every [10],
              observables_every [1], chunk_size, exact [auto] (auto|true|false),
              early_stop [false], patience [100], rel_tol [1e-5], and the safety
              thresholds of nqs.drivers.vmc.Safety (jump_errors [10],
              jump_spread [10], ema_weight [0.1], warmup [20], shift_boost [10],
              shift_decay [0.5], max_consecutive_rejections [10],
              min_acceptance [0.005], max_r_hat [1.5], variance_tol [1e-10],
              collapse_patience [3]);
              tdvp: t_end!, dt!, integrator [rk4], rtol [1e-5], atol [1e-8],
              initial_state, checkpoint_every, flush_every, observables_every,
              chunk_size
    [optimizer] kind [sgd], learning_rate [0.01] (number or schedule table),
              any other key goes to the optax constructor
    [preconditioner] kind [sr]: diag_shift [0.01] (number or schedule table),
              diag_scale, solver [auto] (auto|dense|minsr|cg), cg_tol [1e-8],
              cg_maxiter; none: no keys
    [observables] name = { kind = "...", ... }

``driver.exact``: "auto" computes the exact energy at the start of a run when the
Hilbert space has at most ``nqs.drivers.loop.MAX_EXACT_DIMENSION`` states, true up to
``nqs.build.MAX_EXACT_DIMENSION``, false never.

Default sampler rule: ``local`` on an unconstrained space, ``exchange`` on a constrained
space with two local states (spin-1/2 with ``total_sz``, hard-core bosons), ``hop`` on
bosons with ``n_particles``, ``hamiltonian`` on constrained higher spins. Choices that
cannot sample the space ergodically are refused. ``n_samples`` must be a multiple of
``n_chains`` (refused with the nearest valid values: the logged sample count is then the
one used). Free-form tables (model, optimizer, schedules, observables) are kept as dicts
and validated when the objects are built (``nqs.build``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tomllib

from nqs.errors import InputError

REQUIRED = object()  # marks a key without default


# ---------------------------------------------------------------- section dataclasses
@dataclasses.dataclass(frozen=True)
class LatticeConfig:
    kind: str
    extent: tuple[int, ...] | None = None
    pbc: bool | tuple[bool, ...] | None = None
    max_order: int | None = None
    n_sites: int | None = None
    edges: tuple[tuple[int, ...], ...] | None = None


@dataclasses.dataclass(frozen=True)
class HilbertConfig:
    kind: str
    s: float | None = None
    total_sz: float | None = None
    n_max: int | None = None
    n_particles: int | None = None


@dataclasses.dataclass(frozen=True)
class HamiltonianConfig:
    kind: str
    J: float | None = None
    h: float | None = None
    delta: float | None = None
    J1: float | None = None
    J2: float | None = None
    t: float | None = None
    U: float | None = None
    mu: float | None = None
    sign_rule: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the ``nqs.hamiltonian`` constructor of ``kind``."""
        keys = _SCHEMA["hamiltonian"].kinds[self.kind]
        return {k: getattr(self, k) for k in keys}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    kind: str
    param_dtype: str = "float64"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    kind: str
    rule: str | None = None
    n_chains: int | None = None
    n_samples: int = 1024
    n_discard_per_chain: int | None = None
    sweep_size: int | None = None
    power: float = 2.0


@dataclasses.dataclass(frozen=True)
class DriverConfig:
    kind: str
    n_steps: int | None = None
    t_end: float | None = None
    dt: float | None = None
    integrator: str | None = None
    rtol: float | None = None
    atol: float | None = None
    initial_state: str | None = None
    checkpoint_every: int = 50
    flush_every: int = 10
    observables_every: int = 1
    chunk_size: int | None = None
    exact: bool | str | None = None
    early_stop: bool | None = None
    patience: int | None = None
    rel_tol: float | None = None
    jump_errors: float | None = None
    jump_spread: float | None = None
    ema_weight: float | None = None
    warmup: int | None = None
    shift_boost: float | None = None
    shift_decay: float | None = None
    max_consecutive_rejections: int | None = None
    min_acceptance: float | None = None
    max_r_hat: float | None = None
    variance_tol: float | None = None
    collapse_patience: int | None = None

    def safety(self) -> dict[str, Any]:
        """Keyword arguments of ``nqs.drivers.vmc.Safety``."""
        return {k: getattr(self, k) for k in _SAFETY_KEYS}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    kind: str
    learning_rate: float | dict[str, Any] = 0.01
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PreconditionerConfig:
    kind: str
    diag_shift: float | dict[str, Any] | None = None
    diag_scale: float | None = None
    solver: str | None = None
    cg_tol: float | None = None
    cg_maxiter: int | None = None


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated run configuration (not hashable: free tables are dicts)."""

    name: str
    seed: int
    lattice: LatticeConfig
    hilbert: HilbertConfig
    hamiltonian: HamiltonianConfig
    model: ModelConfig
    sampler: SamplerConfig
    driver: DriverConfig
    optimizer: OptimizerConfig
    preconditioner: PreconditionerConfig
    observables: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def n_sites(self) -> int:
        return lattice_n_sites(self.lattice)


# ---------------------------------------------------------------- value parsers
def _show(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else repr(v)


def _int(lo: int | None = None) -> Callable[[str, Any], int]:
    def parse(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(key, f"expected an integer, got {_show(v)}")
        if lo is not None and v < lo:
            raise InputError(key, f"must be >= {lo}, got {v}")
        return v

    return parse


def _float(
    lo: float | None = None, strict: bool = False
) -> Callable[[str, Any], float]:
    def parse(key: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(key, f"expected a number, got {_show(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise InputError(key, f"expected a finite number, got {v}")
        if lo is not None and (v <= lo if strict else v < lo):
            raise InputError(key, f"must be {'>' if strict else '>='} {lo}, got {v}")
        return v

    return parse


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise InputError(key, f"expected a string, got {_show(v)}")
    return v


def _choice(*options: str) -> Callable[[str, Any], str]:
    def parse(key: str, v: Any) -> str:
        if v not in options:
            raise InputError(
                key, f"expected one of {', '.join(options)}; got {_show(v)}"
            )
        return v

    return parse


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise InputError(key, f"expected true or false, got {_show(v)}")
    return v


def _auto_bool(key: str, v: Any) -> bool | str:
    if v == "auto" or isinstance(v, bool):
        return v
    raise InputError(key, f'expected "auto", true or false; got {_show(v)}')


def _extent(key: str, v: Any) -> tuple[int, ...]:
    items = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(items, list) or not items:
        raise InputError(key, f"expected a list of positive integers, got {_show(v)}")
    return tuple(_int(1)(key, x) for x in items)


def _pbc(key: str, v: Any) -> bool | tuple[bool, ...]:
    if isinstance(v, list) and v:
        return tuple(_bool(key, x) for x in v)
    return _bool(key, v)


def _edges(key: str, v: Any) -> tuple[tuple[int, ...], ...]:
    ok = isinstance(v, list) and v
    ok = ok and all(isinstance(e, list) and len(e) in (2, 3) for e in v)
    if not ok:
        raise InputError(key, "expected a list of [i, j] or [i, j, order] lists")
    return tuple(tuple(_int(0)(key, x) for x in e) for e in v)


def _number_or_table(lo: float) -> Callable[[str, Any], float | dict]:
    def parse(key: str, v: Any) -> float | dict:
        if isinstance(v, dict):
            if not isinstance(v.get("kind"), str):
                raise InputError(
                    key, 'a schedule table needs kind = "<optax schedule>"'
                )
            return v
        return _float(lo)(key, v)

    return parse


def _half_integer(key: str, v: Any) -> float:
    v = _float(0.0, strict=True)(key, v)
    if not (2 * v).is_integer():
        raise InputError(key, f"must be a positive multiple of 1/2, got {v}")
    return v


# ---------------------------------------------------------------- schema
@dataclasses.dataclass(frozen=True)
class _Section:
    cls: type
    default_kind: Any  # str or REQUIRED
    kinds: dict[str, tuple[str, ...]] | None  # None: any kind string (free section)
    keys: dict[str, tuple[Callable[[str, Any], Any], Any]]  # key -> (parse, default)
    free: bool = False  # unknown keys go to ``kwargs``


_LATTICE_AXES = {"chain": 1, "square": 2, "triangular": 2, "honeycomb": 2, "kagome": 2}
_LATTICE_BASIS = {"chain": 1, "square": 1, "triangular": 1, "honeycomb": 2, "kagome": 3}
_BRAVAIS = ("extent", "pbc", "max_order")
_RUN_KEYS = ("checkpoint_every", "flush_every", "observables_every", "chunk_size")
_EARLY_KEYS = ("early_stop", "patience", "rel_tol")
# Defaults equal nqs.drivers.vmc.Safety's (checked by the tests).
_SAFETY = {
    "jump_errors": (float, 10.0),
    "jump_spread": (float, 10.0),
    "ema_weight": (float, 0.1),
    "warmup": (int, 20),
    "shift_boost": (float, 10.0),
    "shift_decay": (float, 0.5),
    "max_consecutive_rejections": (int, 10),
    "min_acceptance": (float, 0.005),
    "max_r_hat": (float, 1.5),
    "variance_tol": (float, 1e-10),
    "collapse_patience": (int, 3),
}
_SAFETY_KEYS = tuple(_SAFETY)

_SCHEMA: dict[str, _Section] = {
    "lattice": _Section(
        LatticeConfig,
        REQUIRED,
        {**{k: _BRAVAIS for k in _LATTICE_AXES}, "custom": ("n_sites", "edges")},
        {
            "extent": (_extent, REQUIRED),
            "pbc": (_pbc, True),
            "max_order": (_int(1), 3),
            "n_sites": (_int(1), REQUIRED),
            "edges": (_edges, REQUIRED),
        },
    ),
    "hilbert": _Section(
        HilbertConfig,
        "spin",
        {"spin": ("s", "total_sz"), "fock": ("n_max", "n_particles")},
        {
            "s": (_half_integer, 0.5),
            "total_sz": (_float(), None),
            "n_max": (_int(1), REQUIRED),
            "n_particles": (_int(0), None),
        },
    ),
    "hamiltonian": _Section(
        HamiltonianConfig,
        REQUIRED,
        {
            "ising": ("J", "h"),
            "heisenberg": ("J", "sign_rule"),
            "xxz": ("J", "delta", "sign_rule"),
            "j1j2": ("J1", "J2", "sign_rule"),
            "bose_hubbard": ("t", "U", "mu"),
        },
        {
            "J": (_float(), 1.0),
            "h": (_float(), 1.0),
            "delta": (_float(), 1.0),
            "J1": (_float(), 1.0),
            "J2": (_float(), REQUIRED),
            "t": (_float(), 1.0),
            "U": (_float(), 1.0),
            "mu": (_float(), 0.0),
            "sign_rule": (_choice("marshall"), None),
        },
    ),
    "model": _Section(
        ModelConfig,
        "rbm",
        None,
        {
            "param_dtype": (
                _choice("float32", "float64", "complex64", "complex128"),
                "float64",
            )
        },
        free=True,
    ),
    "sampler": _Section(
        SamplerConfig,
        "metropolis",
        {
            "metropolis": (
                "rule",
                "n_chains",
                "n_samples",
                "n_discard_per_chain",
                "sweep_size",
                "power",
            ),
            "exact": ("n_chains", "n_samples", "power"),
        },
        {
            "rule": (_choice("local", "exchange", "hop", "hamiltonian"), None),
            "n_chains": (_int(1), 16),
            "n_samples": (_int(1), 1024),
            "n_discard_per_chain": (_int(0), 16),
            "sweep_size": (_int(1), None),
            "power": (_float(0.0, strict=True), 2.0),
        },
    ),
    "driver": _Section(
        DriverConfig,
        "vmc",
        {
            "vmc": ("n_steps", *_RUN_KEYS, "exact", *_EARLY_KEYS, *_SAFETY_KEYS),
            "tdvp": ("t_end", "dt", "integrator", "rtol", "atol", "initial_state")
            + _RUN_KEYS,
        },
        {
            "n_steps": (_int(1), 300),
            "t_end": (_float(0.0, strict=True), REQUIRED),
            "dt": (_float(0.0, strict=True), REQUIRED),
            "integrator": (_choice("euler", "heun", "rk4", "rk23", "rk45"), "rk4"),
            "rtol": (_float(0.0, strict=True), 1e-5),
            "atol": (_float(0.0, strict=True), 1e-8),
            "initial_state": (_str, None),
            "checkpoint_every": (_int(1), 50),
            "flush_every": (_int(1), 10),
            "observables_every": (_int(1), 1),
            "chunk_size": (_int(1), None),
            "exact": (_auto_bool, "auto"),
            "early_stop": (_bool, False),
            "patience": (_int(4), 100),
            "rel_tol": (_float(0.0), 1e-5),
            **{
                k: (_int(1) if t is int else _float(0.0, strict=True), v)
                for k, (t, v) in _SAFETY.items()
            },
        },
    ),
    "optimizer": _Section(
        OptimizerConfig,
        "sgd",
        None,
        {"learning_rate": (_number_or_table(0.0), 0.01)},
        free=True,
    ),
    "preconditioner": _Section(
        PreconditionerConfig,
        "sr",
        {
            "sr": ("diag_shift", "diag_scale", "solver", "cg_tol", "cg_maxiter"),
            "none": (),
        },
        {
            "diag_shift": (_number_or_table(0.0), 0.01),
            "diag_scale": (_float(0.0), None),
            "solver": (_choice("auto", "dense", "minsr", "cg"), "auto"),
            "cg_tol": (_float(0.0, strict=True), 1e-8),
            "cg_maxiter": (_int(1), None),
        },
    ),
}
_TOP_KEYS = ("name", "seed", *_SCHEMA, "observables")


# ---------------------------------------------------------------- parsing
def _unknown(key: str, candidates: Iterable[str], what: str = "key") -> InputError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    options = ", ".join(sorted(candidates))
    if not hint and options:
        hint = f"; expected one of: {options}"
    return InputError(key, f"unknown {what}{hint}")


def _parse_section(name: str, raw: Any) -> Any:
    spec = _SCHEMA[name]
    if not isinstance(raw, dict):
        raise InputError(name, f"expected a table [{name}], got {_show(raw)}")
    kind = raw.get("kind", spec.default_kind)
    if kind is REQUIRED:
        raise InputError(f"{name}.kind", "missing required key")
    kind = _str(f"{name}.kind", kind)
    if spec.kinds is not None and kind not in spec.kinds:
        raise InputError(
            f"{name}.kind",
            f"expected one of {', '.join(spec.kinds)}; got {_show(kind)}",
        )
    allowed = spec.kinds[kind] if spec.kinds is not None else tuple(spec.keys)
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{name}.{k}"
        if k == "kind":
            continue
        if k in allowed:
            values[k] = spec.keys[k][0](key, v)
        elif spec.free:
            extra[k] = v
        elif k in spec.keys:
            raise InputError(key, f'not a key of {name}.kind = "{kind}"')
        else:
            raise _unknown(key, ("kind", *allowed))
    for k in allowed:
        if k not in values:
            default = spec.keys[k][1]
            if default is REQUIRED:
                raise InputError(
                    f"{name}.{k}", f'missing required key for kind "{kind}"'
                )
            values[k] = default
    if spec.free:
        values["kwargs"] = extra
    return spec.cls(kind=kind, **values)


def _parse_observables(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise InputError("observables", "expected a table of name = { kind = ... }")
    for name, table in raw.items():
        if not isinstance(table, dict) or not isinstance(table.get("kind"), str):
            raise InputError(f"observables.{name}", 'expected { kind = "...", ... }')
    return dict(raw)


def lattice_n_sites(lattice: LatticeConfig) -> int:
    """Number of sites of a lattice section (without building the lattice)."""
    if lattice.kind == "custom":
        return lattice.n_sites
    return math.prod(lattice.extent) * _LATTICE_BASIS[lattice.kind]


def _from_dict(data: dict[str, Any], default_name: str) -> Config:
    for k in data:
        if k not in _TOP_KEYS:
            what = "section" if isinstance(data[k], dict) else "key"
            raise _unknown(k, _TOP_KEYS, what)
    for k in ("lattice", "hamiltonian"):
        if k not in data:
            raise InputError(k, f"missing required section [{k}]")
    name = _str("name", data.get("name", default_name))
    if not name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise InputError(
            "name", f"expected letters, digits and _.+- only, got {name!r}"
        )
    sections = {k: _parse_section(k, data.get(k, {})) for k in _SCHEMA}
    cfg = Config(
        name=name,
        seed=_int(0)("seed", data.get("seed", 0)),
        observables=_parse_observables(data.get("observables", {})),
        **sections,
    )
    return _check(cfg)


# ---------------------------------------------------------------- cross-section checks
def _check_lattice(lat: LatticeConfig) -> None:
    if lat.kind == "custom":
        for e in lat.edges:
            if max(e[:2]) >= lat.n_sites or e[0] == e[1]:
                raise InputError(
                    "lattice.edges",
                    f"edge {list(e)} is not a pair of distinct "
                    f"sites in 0..{lat.n_sites - 1}",
                )
        return
    n_axes = _LATTICE_AXES[lat.kind]
    if len(lat.extent) != n_axes:
        raise InputError(
            "lattice.extent",
            f"a {lat.kind} lattice needs {n_axes} entr{'y' if n_axes == 1 else 'ies'} "
            f"(one per axis), got {list(lat.extent)}",
        )
    if isinstance(lat.pbc, tuple) and len(lat.pbc) != n_axes:
        raise InputError(
            "lattice.pbc", f"expected a bool or {n_axes} bools, got {list(lat.pbc)}"
        )


def _check_hilbert(hil: HilbertConfig, n_sites: int) -> None:
    if hil.kind == "spin" and hil.total_sz is not None:
        top = n_sites * hil.s
        if abs(hil.total_sz) > top or not (top - hil.total_sz).is_integer():
            raise InputError(
                "hilbert.total_sz",
                f"{hil.total_sz} is not reachable with {n_sites} spins s = {hil.s}: "
                f"expected one of -{top}, -{top - 1}, ..., {top}",
            )
    fock_n = hil.n_particles if hil.kind == "fock" else None
    if fock_n is not None and fock_n > n_sites * hil.n_max:
        raise InputError(
            "hilbert.n_particles",
            f"{hil.n_particles} bosons do not fit on {n_sites} sites with "
            f"n_max = {hil.n_max}",
        )


def _check_hamiltonian(ham: HamiltonianConfig, hil: HilbertConfig) -> None:
    wants = "fock" if ham.kind == "bose_hubbard" else "spin"
    if hil.kind != wants:
        raise InputError(
            "hamiltonian.kind",
            f'{ham.kind} acts on a {wants} space, but hilbert.kind = "{hil.kind}"',
        )
    if ham.kind == "ising" and hil.s != 0.5:
        raise InputError(
            "hamiltonian.kind",
            f"ising is defined for spin 1/2, got hilbert.s = {hil.s}",
        )


def default_rule(hil: HilbertConfig) -> str:
    """Sampler rule used when ``sampler.rule`` is not given (see module docstring)."""
    constrained = hil.total_sz is not None or hil.n_particles is not None
    two_states = (hil.kind == "spin" and hil.s == 0.5) or hil.n_max == 1
    if not constrained:
        return "local"
    if two_states:
        return "exchange"
    return "hop" if hil.kind == "fock" else "hamiltonian"


def _check_sampler(smp: SamplerConfig, hil: HilbertConfig, n_sites: int):
    _check_multiple(smp)
    if smp.kind == "exact":
        return smp
    constrained = hil.total_sz is not None or hil.n_particles is not None
    two_states = (hil.kind == "spin" and hil.s == 0.5) or hil.n_max == 1
    rule = smp.rule or default_rule(hil)
    key = "sampler.rule"
    if rule == "hop" and hil.kind == "spin":
        raise InputError(key, 'hop moves bosons; on spins use "exchange" or "local"')
    if rule == "local" and constrained:
        raise InputError(
            key,
            "local flips break the fixed total_sz / n_particles; use "
            f'"{default_rule(hil)}" or "hamiltonian"',
        )
    if rule in ("exchange", "hop") and not constrained:
        raise InputError(
            key,
            f"{rule} conserves the total and cannot sample an unconstrained "
            'space; use "local", or fix hilbert.total_sz / hilbert.n_particles',
        )
    if rule == "exchange" and not two_states:
        raise InputError(
            key,
            "exchange only permutes local states, which is not ergodic with "
            f'more than two local states; use "{default_rule(hil)}"',
        )
    return dataclasses.replace(smp, rule=rule, sweep_size=smp.sweep_size or n_sites)


def _check_multiple(smp: SamplerConfig) -> None:
    if smp.n_samples % smp.n_chains:
        low = smp.n_samples // smp.n_chains * smp.n_chains
        options = [n for n in (low, low + smp.n_chains) if n > 0]
        raise InputError(
            "sampler.n_samples",
            f"{smp.n_samples} is not a multiple of n_chains = {smp.n_chains}; "
            f"use {' or '.join(map(str, options))}",
        )


def _check(cfg: Config) -> Config:
    _check_lattice(cfg.lattice)
    n_sites = lattice_n_sites(cfg.lattice)
    _check_hilbert(cfg.hilbert, n_sites)
    _check_hamiltonian(cfg.hamiltonian, cfg.hilbert)
    sampler = _check_sampler(cfg.sampler, cfg.hilbert, n_sites)
    if cfg.hamiltonian.sign_rule == "marshall" and cfg.lattice.kind in (
        "triangular",
        "kagome",
    ):
        raise InputError(
            "hamiltonian.sign_rule",
            f"the Marshall sign rule needs a bipartite lattice; {cfg.lattice.kind} "
            "is not",
        )
    return dataclasses.replace(cfg, sampler=sampler)


# ---------------------------------------------------------------- overrides
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
    data = json.loads(json.dumps(data))  # deep copy of plain TOML data
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(".".join(path[: i + 1]), "is a value, not a table")
        node[path[-1]] = value
    return data


def loads(text: str, *, overrides: Iterable[str] = (), name: str = "nqs") -> Config:
    """Parse and validate TOML text; ``name`` is the default of the ``name`` key.

    Raises:
        InputError: any invalid TOML, key, value or combination (key names it).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError("config", f"invalid TOML: {err}") from None
    return _from_dict(apply_overrides(data, overrides), name)


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


# ---------------------------------------------------------------- resolved TOML
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as a TOML-ready dict (absent optional keys left out)."""
    out: dict[str, Any] = {"name": cfg.name, "seed": cfg.seed}
    for name, spec in _SCHEMA.items():
        section = getattr(cfg, name)
        table: dict[str, Any] = {"kind": section.kind}
        allowed = spec.kinds[section.kind] if spec.kinds is not None else spec.keys
        for k in allowed:
            v = getattr(section, k)
            if v is not None:
                table[k] = list(v) if isinstance(v, tuple) else v
        if name == "lattice" and table.get("edges"):
            table["edges"] = [list(e) for e in section.edges]
        if spec.free:
            table.update(section.kwargs)
        out[name] = table
    if cfg.observables:
        out["observables"] = cfg.observables
    return out


def dumps(data: dict[str, Any]) -> str:
    """Write a dict of scalars and one level of tables (with inline sub-tables)."""
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in data.items()
        if not isinstance(v, dict)
    ]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{_toml_key(k)}]"]
            lines += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def resolved_toml(cfg: Config) -> str:
    """TOML text of ``cfg`` with every default filled in; ``loads`` reads it back."""
    return dumps(to_dict(cfg))
