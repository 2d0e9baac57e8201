"""The whole config: top-level keys, the sections, and the checks across sections."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from nqs.config.sections import (
    Driver,
    Hamiltonian,
    Hilbert,
    Lattice,
    MetropolisSampler,
    Model,
    Optimizer,
    Parallel,
    Preconditioner,
    Sampler,
    SpinSpace,
    SRPreconditioner,
    Symmetry,
    VmcDriver,
)
from nqs.config.types import NamedTables, NonNegInt, Section, Str
from nqs.errors import InputError

_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


class Config(Section):
    """A validated run configuration (frozen; not hashable: free tables are dicts).

    Validate with ``Config.model_validate(data, context={"name": default_name})``
    (``nqs.config.loads`` does it). After validation ``sampler.rule`` and
    ``sampler.sweep_size`` hold the values used (defaults resolved from the Hilbert
    space and lattice).
    """

    name: Str = Field(
        description="run name, one path component (default: the config file stem)"
    )
    seed: NonNegInt = Field(0, description="seed of every random draw of the run")
    lattice: Lattice = Field(description="sites and edges")
    hilbert: Hilbert = Field(default_factory=SpinSpace, description="local states")
    hamiltonian: Hamiltonian = Field(description="the Hamiltonian")
    model: Model = Field(default_factory=Model, description="the ansatz")
    sampler: Sampler = Field(
        default_factory=MetropolisSampler, description="how samples are drawn"
    )
    driver: Driver = Field(default_factory=VmcDriver, description="what the run does")
    optimizer: Optimizer = Field(
        default_factory=Optimizer, description="optax optimizer of the parameters"
    )
    preconditioner: Preconditioner = Field(
        default_factory=SRPreconditioner, description="gradient preconditioner"
    )
    symmetry: Symmetry | None = Field(
        None, description="symmetry sector of exact diagonalisation and the ansatz"
    )
    parallel: Parallel = Field(
        default_factory=Parallel, description="devices and hosts of the run"
    )
    observables: NamedTables = Field(
        default_factory=dict,
        description='extra observables: name = { kind = "magnetization", ... }',
    )

    @property
    def n_sites(self) -> int:
        return self.lattice.n_sites

    @property
    def lattice_axes(self) -> int:
        """Number of lattice axes (1 for a chain or a custom graph)."""
        return (
            2
            if self.lattice.kind in ("square", "triangular", "honeycomb", "kagome")
            else 1
        )

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and "name" not in data:
            data = {"name": (info.context or {}).get("name", "nqs"), **data}
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(cls, data: Any, handler) -> Config:
        cfg = handler(data)
        if not _NAME.fullmatch(cfg.name) or set(cfg.name) == {"."}:
            raise InputError(
                "name",
                "expected one path component of letters, digits and _.+- (not . or "
                f"..), got {cfg.name!r}",
            )
        _check_hilbert(cfg)
        _check_hamiltonian(cfg)
        _check_symmetry(cfg)
        _check_parallel(cfg)
        return cfg.model_copy(update={"sampler": _resolve_sampler(cfg)})


def _check_hilbert(cfg: Config) -> None:
    hil, n_sites = cfg.hilbert, cfg.n_sites
    if hil.kind == "spin" and hil.total_sz is not None:
        top = n_sites * hil.s
        if abs(hil.total_sz) > top or not (top - hil.total_sz).is_integer():
            raise InputError(
                "hilbert.total_sz",
                f"{hil.total_sz} is not reachable with {n_sites} spins s = {hil.s}: "
                f"expected one of -{top}, -{top - 1}, ..., {top}",
            )
    if hil.kind == "fock" and (hil.n_particles or 0) > n_sites * hil.n_max:
        raise InputError(
            "hilbert.n_particles",
            f"{hil.n_particles} bosons do not fit on {n_sites} sites with "
            f"n_max = {hil.n_max}",
        )


def _check_hamiltonian(cfg: Config) -> None:
    ham, hil = cfg.hamiltonian, cfg.hilbert
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
    if getattr(ham, "sign_rule", None) == "marshall" and cfg.lattice.kind in (
        "triangular",
        "kagome",
    ):
        raise InputError(
            "hamiltonian.sign_rule",
            f"the Marshall sign rule needs a bipartite lattice; {cfg.lattice.kind} "
            "is not",
        )


def _check_parallel(cfg: Config) -> None:
    from nqs import parallel

    p = cfg.parallel
    parallel.check_settings(p.coordinator, p.num_processes, p.process_id)


def _check_symmetry(cfg: Config) -> None:
    sym, hil = cfg.symmetry, cfg.hilbert
    if sym is None:
        return
    if sym.momentum is not None and len(sym.momentum) != cfg.lattice_axes:
        raise InputError(
            "symmetry.momentum",
            f"expected {cfg.lattice_axes} integer(s), one per lattice axis, got "
            f"{list(sym.momentum)}",
        )
    if sym.spin_flip is not None and not (
        hil.kind == "spin" and hil.s == 0.5 and hil.total_sz == 0
    ):
        raise InputError(
            "symmetry.spin_flip",
            "the global spin flip is a symmetry sector only of spin 1/2 with "
            "hilbert.total_sz = 0",
        )


def default_rule(hil) -> str:
    """Sampler rule used when ``sampler.rule`` is not given: ``local`` on an
    unconstrained space, ``exchange`` on a constrained space with two local states
    (spin-1/2 with ``total_sz``, hard-core bosons), ``hop`` on bosons with
    ``n_particles``, ``hamiltonian`` on constrained higher spins."""
    if not hil.is_constrained:
        return "local"
    if hil.n_local_states == 2:
        return "exchange"
    return "hop" if hil.kind == "fock" else "hamiltonian"


def _resolve_sampler(cfg: Config):
    smp, hil = cfg.sampler, cfg.hilbert
    if smp.kind != "metropolis":
        return smp
    rule = smp.rule or default_rule(hil)
    key = "sampler.rule"
    if rule == "hop" and hil.kind == "spin":
        raise InputError(key, 'hop moves bosons; on spins use "exchange" or "local"')
    if rule == "local" and hil.is_constrained:
        raise InputError(
            key,
            "local flips break the fixed total_sz / n_particles; use "
            f'"{default_rule(hil)}" or "hamiltonian"',
        )
    if rule in ("exchange", "hop") and not hil.is_constrained:
        raise InputError(
            key,
            f"{rule} conserves the total and cannot sample an unconstrained "
            'space; use "local", or fix hilbert.total_sz / hilbert.n_particles',
        )
    if rule == "exchange" and hil.n_local_states != 2:
        raise InputError(
            key,
            "exchange only permutes local states, which is not ergodic with "
            f'more than two local states; use "{default_rule(hil)}"',
        )
    return smp.model_copy(
        update={"rule": rule, "sweep_size": smp.sweep_size or cfg.n_sites}
    )


__all__ = ["Config", "default_rule", "SRPreconditioner", "Model", "Optimizer"]
