"""One pydantic model per TOML section; sections whose keys depend on ``kind`` are
discriminated unions of one model per kind (:func:`kind_union`).

Every key is declared here once, with its type, default and a one-line description;
the JSON Schema (``nqs schema``) and the resolved config are generated from these
models. Free keys of ``[model]`` and ``[optimizer]`` are kept as given and checked
when the objects are built (``nqs.build``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    create_model,
    model_validator,
)

from nqs.config.types import (
    Bool,
    Extent,
    Float,
    FreeSection,
    Int,
    NonNegFloat,
    NonNegInt,
    NumberOrSchedule,
    Periodic,
    PosFloat,
    PosInt,
    Section,
    Str,
    show,
)
from nqs.drivers.thresholds import EarlyStop, Safety
from nqs.errors import InputError


def kinds_of(member: type) -> tuple[str, ...]:
    """The ``kind`` values a section model accepts (from its ``Literal``)."""
    return typing.get_args(member.model_fields["kind"].annotation)


def kind_union(*members: type, default: str | None = None) -> Any:
    """A union of section models told apart by ``kind`` (``default`` when absent)."""
    tag_of = {kind: m.__name__ for m in members for kind in kinds_of(m)}

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            kind = value.get("kind", default)
        else:
            kind = getattr(value, "kind", None)
        return tag_of.get(kind) if isinstance(kind, str) else None

    choices = tuple(Annotated[m, Tag(m.__name__)] for m in members)
    return Annotated[typing.Union[choices], Discriminator(pick)]  # noqa: UP007


# ---------------------------------------------------------------- [lattice]
#: Sites per unit cell of the Bravais lattices.
BASIS_SITES = {"chain": 1, "square": 1, "triangular": 1, "honeycomb": 2, "kagome": 3}


class BravaisLattice(Section):
    kind: Literal["chain", "square", "triangular", "honeycomb", "kagome"] = Field(
        description="Bravais lattice"
    )
    extent: Extent = Field(
        description="unit cells per axis: one entry for chain, two otherwise"
    )
    pbc: Periodic = Field(True, description="periodic boundaries: one bool or per axis")
    max_order: PosInt = Field(
        3, description="neighbour shells given edges (1 = nearest, 2 = next, ...)"
    )

    @property
    def n_sites(self) -> int:
        return math.prod(self.extent) * BASIS_SITES[self.kind]

    @model_validator(mode="after")
    def _axes(self) -> BravaisLattice:
        n_axes = 1 if self.kind == "chain" else 2
        if len(self.extent) != n_axes:
            entries = "entry" if n_axes == 1 else "entries"
            raise InputError(
                "lattice.extent",
                f"a {self.kind} lattice needs {n_axes} {entries} (one per axis), "
                f"got {list(self.extent)}",
            )
        if isinstance(self.pbc, tuple) and len(self.pbc) != n_axes:
            raise InputError(
                "lattice.pbc",
                f"expected a bool or {n_axes} bools, got {list(self.pbc)}",
            )
        return self


class CustomLattice(Section):
    kind: Literal["custom"] = Field(description="a graph given by its edges")
    n_sites: PosInt = Field(description="number of sites")
    edges: tuple[
        Annotated[tuple[NonNegInt, ...], Field(min_length=2, max_length=3)], ...
    ] = Field(min_length=1, description="[[i, j], ...] or [[i, j, order], ...]")

    @model_validator(mode="after")
    def _sites(self) -> CustomLattice:
        for e in self.edges:
            if max(e[:2]) >= self.n_sites or e[0] == e[1]:
                raise InputError(
                    "lattice.edges",
                    f"edge {list(e)} is not a pair of distinct sites in "
                    f"0..{self.n_sites - 1}",
                )
            if len(e) == 3 and e[2] < 1:
                raise InputError(
                    "lattice.edges", f"edge {list(e)}: the order must be >= 1"
                )
        return self


Lattice = kind_union(BravaisLattice, CustomLattice)


# ---------------------------------------------------------------- [hilbert]
class SpinSpace(Section):
    kind: Literal["spin"] = Field("spin", description="spins s on every site")
    s: PosFloat = Field(0.5, description="spin length: 1/2, 1, 3/2, ...")
    total_sz: Float | None = Field(None, description="fixed total S^z (optional)")

    @property
    def is_constrained(self) -> bool:
        return self.total_sz is not None

    @property
    def n_local_states(self) -> int:
        return int(round(2 * self.s)) + 1

    @model_validator(mode="after")
    def _half_integer(self) -> SpinSpace:
        if not (2 * self.s).is_integer():
            raise InputError(
                "hilbert.s", f"must be a positive multiple of 1/2, got {self.s}"
            )
        return self


class FockSpace(Section):
    kind: Literal["fock"] = Field(description="bosons with at most n_max per site")
    n_max: PosInt = Field(description="largest occupation of a site")
    n_particles: NonNegInt | None = Field(
        None, description="fixed number of bosons (optional)"
    )

    @property
    def is_constrained(self) -> bool:
        return self.n_particles is not None

    @property
    def n_local_states(self) -> int:
        return self.n_max + 1


Hilbert = kind_union(SpinSpace, FockSpace, default="spin")


# ---------------------------------------------------------------- [hamiltonian]
class _Hamiltonian(Section):
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the ``nqs.hamiltonian`` constructor of ``kind``."""
        return {k: getattr(self, k) for k in type(self).model_fields if k != "kind"}


SignRule = Literal["marshall"] | None
_SIGN = "basis rotation: marshall (bipartite lattices; the energy is unchanged)"


class Ising(_Hamiltonian):
    kind: Literal["ising"] = Field(description="-J sum ZZ - h sum X (Pauli)")
    J: Float = Field(1.0, description="ZZ coupling on nearest neighbours")
    h: Float = Field(1.0, description="transverse field")


class Heisenberg(_Hamiltonian):
    kind: Literal["heisenberg"] = Field(description="J sum S.S on nearest neighbours")
    J: Float = Field(1.0, description="exchange coupling")
    sign_rule: SignRule = Field(None, description=_SIGN)


class XXZ(_Hamiltonian):
    kind: Literal["xxz"] = Field(description="J sum (SxSx + SySy + delta SzSz)")
    J: Float = Field(1.0, description="exchange coupling")
    delta: Float = Field(1.0, description="anisotropy of the SzSz term")
    sign_rule: SignRule = Field(None, description=_SIGN)


class J1J2(_Hamiltonian):
    kind: Literal["j1j2"] = Field(description="J1 S.S nearest + J2 S.S next-nearest")
    J1: Float = Field(1.0, description="nearest-neighbour coupling")
    J2: Float = Field(description="next-nearest-neighbour coupling")
    sign_rule: SignRule = Field(None, description=_SIGN)


class BoseHubbard(_Hamiltonian):
    kind: Literal["bose_hubbard"] = Field(
        description="-t sum (b+b + h.c.) + U/2 sum n(n-1) - mu sum n"
    )
    t: Float = Field(1.0, description="hopping amplitude")
    U: Float = Field(1.0, description="on-site interaction")
    mu: Float = Field(0.0, description="chemical potential")


Hamiltonian = kind_union(Ising, Heisenberg, XXZ, J1J2, BoseHubbard)


# ---------------------------------------------------------------- [model]
class Model(FreeSection):
    kind: Str = Field(
        "rbm",
        description='built-in name (rbm, jastrow, ffn, ...), "package.module:Class" '
        'or "path/file.py:Class"; other keys are the module\'s arguments',
    )
    param_dtype: Literal["float32", "float64", "complex64", "complex128"] = Field(
        "float64", description="dtype of the parameters"
    )
    dtype: Literal["float32", "float64"] = Field(
        "float64",
        description="compute dtype of log psi: float32 evaluates the model in single "
        "precision (complex64 for complex parameters) while the parameters, SR and "
        "statistics stay in double precision",
    )
    symmetrize: Bool = Field(
        False,
        description="project the model onto the [symmetry] sector: log psi(s) = "
        "log sum_g conj(chi(g)) psi(g s)",
    )


# ---------------------------------------------------------------- [sampler]
class _Samples(Section):
    n_chains: PosInt = Field(16, description="parallel Markov chains (or batches)")
    n_samples: PosInt = Field(
        1024, description="samples per step, a multiple of n_chains"
    )
    power: PosFloat = Field(2.0, description="samples are drawn from |psi|^power")

    @model_validator(mode="after")
    def _multiple(self) -> _Samples:
        if self.n_samples % self.n_chains:
            low = self.n_samples // self.n_chains * self.n_chains
            options = [n for n in (low, low + self.n_chains) if n > 0]
            raise InputError(
                "sampler.n_samples",
                f"{self.n_samples} is not a multiple of n_chains = {self.n_chains}; "
                f"use {' or '.join(map(str, options))}",
            )
        return self


class MetropolisSampler(_Samples):
    kind: Literal["metropolis"] = Field("metropolis", description="Markov chains")
    rule: Literal["local", "exchange", "hop", "hamiltonian"] | None = Field(
        None,
        description="move: local flips, exchange of neighbours, boson hop, or "
        "Hamiltonian moves; default: by the Hilbert space",
    )
    n_discard_per_chain: NonNegInt = Field(
        16, description="sweeps discarded per chain before sampling"
    )
    sweep_size: PosInt | None = Field(
        None, description="moves between two samples (default: n_sites)"
    )


class ExactSampler(_Samples):
    kind: Literal["exact"] = Field(
        description="i.i.d. draws from |psi|^power by enumeration (small spaces)"
    )


class FullSumSampler(Section):
    kind: Literal["full_sum"] = Field(
        description="exact sums over every basis state instead of samples (small "
        "spaces): no Monte Carlo noise"
    )


Sampler = kind_union(
    MetropolisSampler, ExactSampler, FullSumSampler, default="metropolis"
)


# ---------------------------------------------------------------- [driver]
def _fields_of(thresholds: type) -> dict[str, Any]:
    """Config fields of a thresholds dataclass: its types, defaults, bounds, docs."""
    fields = {}
    for f in dataclasses.fields(thresholds):
        base = Int if f.type in ("int", int) else Float
        bounds = {k: f.metadata[k] for k in ("gt", "ge") if k in f.metadata}
        fields[f.name] = (
            base,
            Field(f.default, description=f.metadata["doc"], **bounds),
        )
    return fields


class _RunKeys(Section):
    checkpoint_every: PosInt = Field(50, description="steps between checkpoints")
    flush_every: PosInt = Field(10, description="steps between log flushes")
    observables_every: PosInt = Field(
        1, description="steps between observable measurements"
    )
    chunk_size: PosInt | None = Field(
        None,
        description="samples per chunk of local estimates (default: all, or what "
        "keeps the model's intermediates under 2 GiB)",
    )


_VmcThresholds = create_model(
    "_VmcThresholds", __base__=_RunKeys, **_fields_of(EarlyStop), **_fields_of(Safety)
)


def _auto_or_bool(value: Any) -> Any:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f'expected "auto", true or false; got {show(value)}')


class VmcDriver(_VmcThresholds):
    kind: Literal["vmc"] = Field("vmc", description="ground state by VMC")
    n_steps: PosInt = Field(300, description="optimisation steps")
    exact: Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)] = Field(
        "auto",
        description="exact energy at the start: auto (small spaces), true, false",
    )
    early_stop: Bool = Field(False, description="stop once the energy has converged")

    def safety(self) -> dict[str, Any]:
        """Keyword arguments of ``nqs.drivers.thresholds.Safety``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Safety)}


class TdvpDriver(_RunKeys):
    kind: Literal["tdvp"] = Field(description="time evolution by TDVP")
    time: Literal["real", "imaginary"] = Field(
        "real", description="real time (-iH) or imaginary time (-H)"
    )
    t_end: PosFloat = Field(description="final time")
    dt: PosFloat = Field(description="time step (the first step if adaptive)")
    integrator: Literal["euler", "heun", "midpoint", "rk4", "rk23", "rk45"] = Field(
        "rk4", description="Runge-Kutta scheme; rk23 and rk45 are adaptive"
    )
    rtol: PosFloat = Field(1e-4, description="relative tolerance (adaptive only)")
    atol: PosFloat = Field(1e-6, description="absolute tolerance (adaptive only)")
    dt_min: PosFloat | None = Field(
        None, description="smallest adaptive step (default dt / 1e4)"
    )
    dt_max: PosFloat | None = Field(
        None, description="largest adaptive step (default: save_every_t or t_end)"
    )
    error_norm: Literal["qgt", "euclidean", "maximum"] = Field(
        "qgt",
        description="norm of the adaptive error estimate: quantum geometric "
        "tensor (d theta^T S d theta), euclidean or maximum",
    )
    save_every_t: PosFloat | None = Field(
        None,
        description="time grid of the logged rows (default: dt for fixed steps, "
        "every accepted step for adaptive ones)",
    )
    initial_state: Str = Field(
        description="run directory whose final state starts the evolution"
    )
    exact: Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)] = Field(
        "auto",
        description="exact evolution of the observables: auto (small spaces), "
        "true, false",
    )

    @property
    def adaptive(self) -> bool:
        """Whether the integrator controls its step by an error estimate."""
        return self.integrator in ("rk23", "rk45")

    @model_validator(mode="after")
    def _times(self) -> TdvpDriver:
        if self.dt > self.t_end:
            raise InputError(
                "driver.dt", f"{self.dt} is larger than t_end = {self.t_end}"
            )
        if self.save_every_t is not None and self.save_every_t > self.t_end:
            raise InputError(
                "driver.save_every_t",
                f"{self.save_every_t} is larger than t_end = {self.t_end}",
            )
        if self.adaptive:
            self._check_adaptive()
            return self
        steps = self.t_end / self.dt
        if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
            raise InputError(
                "driver.t_end",
                f"{self.t_end} is not a multiple of dt = {self.dt} (fixed-step "
                f"{self.integrator}); use {round(steps) * self.dt:.6g} or an "
                "adaptive integrator",
            )
        if self.save_every_t is not None:
            ratio = self.save_every_t / self.dt
            if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
                raise InputError(
                    "driver.save_every_t",
                    f"{self.save_every_t} is not a multiple of dt = {self.dt} "
                    f"(fixed-step {self.integrator}); use "
                    f"{max(1, round(ratio)) * self.dt:.6g}",
                )
        return self

    def _check_adaptive(self) -> None:
        if not 1e-13 <= self.rtol < 1:
            raise InputError(
                "driver.rtol",
                f"{self.rtol} makes no sense for an adaptive step: expected "
                "1e-13 <= rtol < 1",
            )
        if self.atol >= 1:
            raise InputError(
                "driver.atol",
                f"{self.atol} makes no sense for an adaptive step: expected < 1",
            )
        lo, hi = self.dt_min, self.dt_max
        if lo is not None and lo > self.dt:
            raise InputError("driver.dt_min", f"{lo} is larger than dt = {self.dt}")
        if hi is not None and hi < self.dt:
            raise InputError("driver.dt_max", f"{hi} is smaller than dt = {self.dt}")


Driver = kind_union(VmcDriver, TdvpDriver, default="vmc")


# ---------------------------------------------------------------- [optimizer]
class Optimizer(FreeSection):
    kind: Str = Field(
        "sgd", description="optax optimizer by name; other keys are its arguments"
    )
    learning_rate: NumberOrSchedule = Field(
        0.01, description='number or schedule table { kind = "cosine", ... }'
    )


# ---------------------------------------------------------------- [preconditioner]
class SRPreconditioner(Section):
    kind: Literal["sr"] = Field("sr", description="stochastic reconfiguration")
    diag_shift: NumberOrSchedule = Field(
        0.01, description="diagonal shift of S: number or schedule table"
    )
    diag_scale: NonNegFloat | None = Field(
        None, description="relative shift: adds diag_scale * diag(S)"
    )
    solver: Literal["auto", "dense", "minsr", "cg", "pinv"] = Field(
        "auto",
        description="linear solver of the SR system; pinv: eigendecomposition "
        "with the rcond and snr_cutoff regularisations",
    )
    cg_tol: PosFloat = Field(1e-8, description="relative tolerance of cg")
    cg_maxiter: PosInt | None = Field(None, description="iteration limit of cg")
    rcond: NonNegFloat = Field(
        1e-12,
        description="pinv: eigenvalues of S below rcond * largest are cut off",
    )
    smooth_cutoff: Bool = Field(
        True,
        description="pinv: smooth cutoffs 1 / (1 + (cut / x)^6) instead of sharp",
    )
    snr_cutoff: PosFloat | None = Field(
        None,
        description="pinv: drop modes whose signal-to-noise ratio of the force is "
        "below this (Schmitt & Heyl 2020; e.g. 2-4); default off",
    )

    @model_validator(mode="after")
    def _pinv_keys(self) -> SRPreconditioner:
        if self.solver != "pinv" and self.snr_cutoff is not None:
            raise InputError("preconditioner.snr_cutoff", 'needs solver = "pinv"')
        return self


class NoPreconditioner(Section):
    kind: Literal["none"] = Field(description="plain energy gradient")


Preconditioner = kind_union(SRPreconditioner, NoPreconditioner, default="sr")


# ---------------------------------------------------------------- [symmetry]
class Symmetry(Section):
    group: Literal["translation", "point", "space"] = Field(
        "space", description="translation, point, or space (translations x point)"
    )
    momentum: tuple[Int, ...] | None = Field(
        None,
        description="integers n per axis, k = 2 pi n / extent (default all 0)",
    )
    irrep: Str | None = Field(
        None, description="irrep of the little group at k (default the trivial one)"
    )
    spin_flip: Literal[1, -1] | None = Field(
        None, description="global spin flip parity (spin-1/2, total_sz = 0 only)"
    )


# ---------------------------------------------------------------- [parallel]
class Parallel(Section):
    devices: PosInt | None = Field(
        None,
        description="devices the chains and samples are split over (default: every "
        "device JAX sees, on every process)",
    )
    coordinator: Str | None = Field(
        None,
        description='several hosts: "host:port" of process 0 for jax.distributed '
        "(default: detected from SLURM or MPI, else one process)",
    )
    num_processes: PosInt | None = Field(
        None, description="several hosts: number of processes (with coordinator)"
    )
    process_id: NonNegInt | None = Field(
        None, description="several hosts: this process's index (with coordinator)"
    )


#: Section name -> (its union members, default kind) for error messages.
UNIONS: dict[str, tuple[tuple[type, ...], str | None]] = {
    "lattice": ((BravaisLattice, CustomLattice), None),
    "hilbert": ((SpinSpace, FockSpace), "spin"),
    "hamiltonian": ((Ising, Heisenberg, XXZ, J1J2, BoseHubbard), None),
    "sampler": ((MetropolisSampler, ExactSampler, FullSumSampler), "metropolis"),
    "driver": ((VmcDriver, TdvpDriver), "vmc"),
    "preconditioner": ((SRPreconditioner, NoPreconditioner), "sr"),
}
