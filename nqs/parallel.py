"""Samples split over devices and hosts: the device mesh, placement, and host transfer.

The compiled steps stay single programs (``jax.jit``); parallelism is a layout. The
mesh has one axis, ``"samples"``, over the chosen devices (all of ``jax.devices()``
by default, every process's under ``jax.distributed``). Parameters, optimizer state
and the scalars of a step are replicated; the chains and everything per sample (the
samples, local energies, Jacobian rows, Gram rows) are split along the samples axis
and reduced with collectives, which XLA's partitioner inserts where a value needs the
other devices' rows:

    * statistics and the plain gradient: all-reductions of scalars and of one
      parameter-sized vector (P floats);
    * SR ``dense``/``pinv``: S = XᵀX is reduced from the local row blocks (P² floats);
    * SR ``minsr`` (also through a model's Gram matrix): the n × n kernel needs every
      row, so the Jacobian (n P floats) or the Gram matrix (n² floats) is gathered;
    * SR ``cg``: per iteration one all-reduction of P floats (Xᵀ(Xv)).

Same result on 1 or N devices: every random number of a step is a function of the key
and of its position in the array of draws (``jax_threefry_partitionable``, on by
default), not of the device that computes it, and the chains are the same chains
however they are split. Only the order of floating-point sums changes.

With one device (or ``sharding=None``) nothing here adds anything to a step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nqs import vstate
from nqs.errors import InputError

#: Name of the mesh axis the samples are split along.
AXIS = "samples"


@dataclasses.dataclass(frozen=True)
class SampleSharding:
    """How the samples of a run are split (static: a jit argument's field).

    Attributes:
        mesh: one-axis ``jax.sharding.Mesh`` (axis ``AXIS``) over the run's devices.
        axis: the axis of the (n_chains, n_per_chain, n_sites) samples that is split:
            0 (chains: Metropolis and exact draws) or 1 (the basis states of a full
            sum, which is one "chain").
    """

    mesh: Mesh
    axis: int = 0

    @property
    def n_devices(self) -> int:
        return int(self.mesh.devices.size)

    def split(self, axis: int) -> NamedSharding:
        """Sharding of an array split along ``axis`` (replicated elsewhere)."""
        return NamedSharding(self.mesh, PartitionSpec(*([None] * axis), AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())


def constrain_samples(x: jax.Array, sharding: SampleSharding | None) -> jax.Array:
    """``x`` (n_chains, n_per_chain, ...) laid out split over the samples axis.

    Inside a jitted function; a no-op without sharding.
    """
    if sharding is None:
        return x
    return jax.lax.with_sharding_constraint(x, sharding.split(sharding.axis))


def row_blocks(sharding: SampleSharding | None) -> int:
    """Blocks of consecutive sample rows, one per device (``nqs.connected``)."""
    return 1 if sharding is None else sharding.n_devices


def chain_shardings(chain: Any, sharding: SampleSharding) -> Any:
    """The shardings of a ``nqs.sampler.SamplerState``: per-chain fields split along
    the chains when the samples are split by chain, the rest replicated."""
    per_chain = sharding.split(0) if sharding.axis == 0 else sharding.replicated
    return dataclasses.replace(
        jax.tree_util.tree_map(lambda _: sharding.replicated, chain),
        sigma=per_chain,
        log_prob=per_chain,
        n_accepted=per_chain,
    )


def constrain_chain(chain: Any, sharding: SampleSharding | None) -> Any:
    """A ``SamplerState`` laid out as :func:`chain_shardings` says (inside jit)."""
    if sharding is None:
        return chain
    return jax.lax.with_sharding_constraint(chain, chain_shardings(chain, sharding))


def sample(sampler, model, params, chain, sharding: SampleSharding | None):
    """``sampler.sample(model, params, chain)`` with the samples and the new chain
    laid out over the devices (inside jit): what every driver samples with."""
    samples, chain = sampler.sample(model, params, chain)
    return constrain_samples(samples, sharding), constrain_chain(chain, sharding)


def expect(problem, params, samples, op, weights):
    """``nqs.vstate.expect`` of ``op`` on ``samples`` with the problem's model and
    chunks, the local estimates compacted per device (``nqs.connected``): what
    every driver estimates with.

    Args:
        problem: a ``VMCProblem`` or ``TDVPProblem`` (``model``, ``chunk_size``,
            ``sharding``).
    """
    blocks = row_blocks(problem.sharding)
    return vstate.expect(
        problem.model, params, samples, op, problem.chunk_size, weights, blocks
    )


def place(tree: Any, shardings: Any) -> Any:
    """Global arrays holding ``tree``'s values with the given shardings.

    Every process passes the same values (a deterministic initial state, or the
    checkpoint they all read); each keeps only its devices' parts. Typed PRNG keys
    are placed as their key data and wrapped again.

    Args:
        tree: pytree of arrays (jax or numpy).
        shardings: pytree of ``NamedSharding`` with ``tree``'s structure.
    """

    def one(x, s):
        if _is_key(x):
            impl = jax.random.key_impl(x)
            data = one(jax.random.key_data(x), s)
            return jax.random.wrap_key_data(data, impl=impl)
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, s, lambda idx: host[idx])

    return jax.tree_util.tree_map(one, tree, shardings)


def to_host(tree: Any) -> Any:
    """The values of ``tree`` on this host (numpy; typed keys stay keys).

    Arrays split over other processes' devices are gathered, which is a collective:
    every process must call this at the same point.
    """

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if x.is_fully_replicated:
            return x.addressable_data(0)
        if _is_key(x):
            impl = jax.random.key_impl(x)
            return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=impl)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(one, tree)


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def device_string(sharding: SampleSharding | None) -> str:
    """The devices a run computes on, e.g. "cpu:0, cpu:1" (the log's ``devices``)."""
    devices = [jax.devices()[0]] if sharding is None else sharding.mesh.devices.flat
    return ", ".join(f"{d.platform}:{d.id}" for d in devices)


def is_writer() -> bool:
    """Whether this process writes logs, checkpoints and progress (process 0)."""
    return jax.process_index() == 0


# -- building the mesh from [parallel] -----------------------------------------------


def n_devices(requested: int | None, key: str = "parallel.devices") -> int:
    """The number of devices a run uses: ``requested``, or every visible device.

    Raises:
        InputError: more devices requested than JAX sees.
    """
    visible = jax.device_count()
    if requested is None:
        return visible
    if requested > visible:
        raise InputError(
            key,
            f"{requested} devices requested, JAX sees {visible} ({describe_devices()})",
        )
    return int(requested)


def describe_devices() -> str:
    """E.g. "4 cpu devices on 1 process"."""
    devices = jax.devices()
    kinds = sorted({d.platform for d in devices})
    procs = jax.process_count()
    return (
        f"{len(devices)} {'/'.join(kinds)} device{'s' * (len(devices) != 1)} on "
        f"{procs} process{'es' * (procs != 1)}"
    )


def check_divisible(n_chains: int, n_dev: int, key: str = "sampler.n_chains") -> None:
    """Refuse a number of chains the devices cannot split evenly.

    Raises:
        InputError: naming the nearest valid values.
    """
    if n_chains % n_dev == 0:
        return
    below = (n_chains // n_dev) * n_dev
    above = below + n_dev
    nearest = " or ".join(str(v) for v in (below, above) if v > 0)
    raise InputError(
        key,
        f"{n_chains} chains cannot be split evenly over {n_dev} devices; use a "
        f"multiple of {n_dev} (e.g. {nearest}), or set parallel.devices",
    )


def make_sharding(n_dev: int, axis: int = 0) -> SampleSharding | None:
    """The samples' sharding over the first ``n_dev`` devices; None for one device."""
    if n_dev <= 1:
        return None
    mesh = Mesh(np.asarray(jax.devices()[:n_dev]), (AXIS,))
    return SampleSharding(mesh=mesh, axis=axis)


#: Environment variables that tell a process it is one task of a multi-host job
#: JAX can initialise itself from (``jax.distributed.initialize()`` without
#: arguments): SLURM, Open MPI, and JAX's own.
_CLUSTER_HINTS = (
    ("SLURM_NTASKS", "SLURM_JOB_ID"),
    ("OMPI_COMM_WORLD_SIZE",),
    ("JAX_COORDINATOR_ADDRESS",),
)


def _cluster_detected() -> bool:
    for names in _CLUSTER_HINTS:
        if not all(os.environ.get(n) for n in names):
            continue
        size = os.environ[names[0]]
        if names[0] == "JAX_COORDINATOR_ADDRESS" or (size.isdigit() and int(size) > 1):
            return True
    return False


def initialize(
    coordinator: str | None, num_processes: int | None, process_id: int | None
) -> bool:
    """Join a multi-process run (``jax.distributed``) if the settings ask for one.

    With ``coordinator`` (and ``num_processes``, ``process_id``) the run is joined
    explicitly; without, a SLURM or MPI job with more than one task (or
    ``JAX_COORDINATOR_ADDRESS`` in the environment) is joined by JAX's own
    detection. Must run before any computation. On CPU the collectives use gloo.

    Returns:
        whether this process is part of a multi-process run.
    Raises:
        InputError: num_processes or process_id without a coordinator, or a
            process_id outside [0, num_processes).
    """
    check_settings(coordinator, num_processes, process_id)
    if jax.distributed.is_initialized():
        return True
    if coordinator is None:
        if not _cluster_detected():
            return False
        _cpu_collectives()
        jax.distributed.initialize()
        return True
    _cpu_collectives()
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
    )
    return True


def check_settings(
    coordinator: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Refuse an incomplete or inconsistent multi-process setting (``[parallel]``).

    Raises:
        InputError: num_processes or process_id without a coordinator, a
            coordinator without both, or a process_id outside [0, num_processes).
    """
    if coordinator is None:
        if num_processes is not None or process_id is not None:
            given = "num_processes" if num_processes is not None else "process_id"
            raise InputError(
                "parallel.coordinator",
                f"parallel.{given} is set but no coordinator: give the address of "
                'process 0, e.g. coordinator = "node0:1234"',
            )
        return
    if num_processes is None or process_id is None:
        missing = "num_processes" if num_processes is None else "process_id"
        raise InputError(
            f"parallel.{missing}", "a coordinator needs num_processes and process_id"
        )
    if not 0 <= process_id < num_processes:
        raise InputError(
            "parallel.process_id",
            f"expected 0 <= process_id < num_processes = {num_processes}, got "
            f"{process_id}",
        )


def _cpu_collectives() -> None:
    """Cross-process collectives for CPU devices (GPU/TPU bring their own)."""
    # an older or newer JAX may not have the option
    with contextlib.suppress(AttributeError, ValueError):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
