"""Time the GCNN on the rows one VMC step evaluates.

Usage: ``python benchmarks/gcnn_step.py [--rows 66560] [--jac-rows 1024]
[--chunk 4160] [--jac-chunk 256] [--layers 4] [--features 4] [--dtype complex128]
[--extent 4] [--group space] [--repeats 5]``.

Workload: a J1-J2 run on the 4x4 square torus in the space-group sector k = 0, A1
(M = 128 elements), 4 layers of 4 features, complex parameters: each step evaluates
log psi on ~1024 samples x 65 connected configurations = 66,560 rows and the
per-sample Jacobian on the 1024 samples. Timed, each as one compiled function (the
compile call excluded, ``block_until_ready``, median of ``--repeats``):

* ``apply``: log psi on ``--rows`` int8 rows, ``--chunk`` rows at a time (lax.map);
* ``jacobian``: ``nqs.vstate.jacobian`` (vmap of jacrev, real parameter vector) on
  ``--jac-rows`` rows, ``--jac-chunk`` rows at a time;
* ``per-row grads``: the model's part of it, vmap of jacrev of (Re, Im) log psi with
  respect to the parameter pytree (no raveling into one vector), same chunks.

The machine may be shared: the minimum of the repeats is printed beside the median.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from nqs import lattice, symmetry, vstate  # noqa: E402
from nqs.models.gcnn import GCNN  # noqa: E402


def timed(fn, *args, repeats: int) -> tuple[float, float, float]:
    """(compile + first call, median, minimum of ``repeats`` further calls), in s."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), min(times)


def chunked_apply(model, chunk: int):
    """jitted (params, sigma (n, N)) -> (n,) log psi, ``chunk`` rows at a time."""

    @jax.jit
    def run(params, sigma):
        n = sigma.shape[0]
        n_chunks = -(-n // chunk)
        pad = n_chunks * chunk - n
        padded = jnp.concatenate([sigma, jnp.repeat(sigma[:1], pad, axis=0)])
        chunks = padded.reshape((n_chunks, chunk) + sigma.shape[1:])
        out = jax.lax.map(lambda s: model.apply(params, s), chunks)
        return out.reshape(-1)[:n]

    return run


def chunked_grads(model, chunk: int):
    """jitted per-row d(Re, Im) log psi / d params as a pytree, ``chunk`` rows at a
    time."""

    def parts(params, s):
        out = model.apply(params, s[None])[0]
        return jnp.stack([jnp.real(out), jnp.imag(out)])

    per_row = jax.vmap(jax.jacrev(parts), in_axes=(None, 0))

    @jax.jit
    def run(params, sigma):
        chunks = sigma.reshape((-1, chunk) + sigma.shape[1:])
        return jax.lax.map(lambda s: per_row(params, s), chunks)

    return run


def report(label: str, rows: int, chunk: int, first: float, median, least) -> None:
    print(
        f"{label:15s} {rows:6d} rows (chunk {chunk:5d}): {median * 1e3:8.1f} ms median,"
        f" {least * 1e3:8.1f} ms min ({median / rows * 1e6:6.2f} us/row; first call "
        f"{first:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=66560)
    parser.add_argument("--jac-rows", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=4160)
    parser.add_argument("--jac-chunk", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--dtype", default="complex128")
    parser.add_argument("--extent", type=int, default=4)
    parser.add_argument("--group", default="space")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    lat = lattice.square((args.extent, args.extent))
    sector = symmetry.sector(lat, args.group, (0, 0), None)
    model = GCNN(
        sector=sector,
        layers=args.layers,
        features=args.features,
        param_dtype=jnp.dtype(args.dtype),
    )
    rng = np.random.default_rng(0)
    sigma = jnp.asarray(rng.choice([-1, 1], (args.rows, lat.n_sites)), jnp.int8)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), sigma[:1])
    n_params = vstate.n_real_params(params)
    print(
        f"GCNN {args.layers}x{args.features} {args.dtype} on {lat.n_sites} sites, "
        f"{sector}, {n_params} real parameters"
    )

    apply = chunked_apply(model, args.chunk)
    report(
        "apply",
        args.rows,
        args.chunk,
        *timed(apply, params, sigma, repeats=args.repeats),
    )
    jac_sigma = sigma[: args.jac_rows]
    times = timed(
        lambda p, s: vstate.jacobian(model, p, s, args.jac_chunk),
        params,
        jac_sigma,
        repeats=args.repeats,
    )
    report("jacobian", args.jac_rows, args.jac_chunk, *times)
    grads = chunked_grads(model, min(args.jac_chunk, args.jac_rows))
    times = timed(grads, params, jac_sigma, repeats=args.repeats)
    report("per-row grads", args.jac_rows, args.jac_chunk, *times)


if __name__ == "__main__":
    main()
