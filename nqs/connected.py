"""log ψ on the configurations an operator connects samples to, evaluated only where
a local estimate needs it.

For a sample σ, ``op.get_conn`` gives n_conn slots (σ'_k, ⟨σ|O|σ'_k⟩). A slot needs
the model only when its matrix element is nonzero and σ'_k ≠ σ: the diagonal slot
(σ' = σ) has the ratio ψ(σ')/ψ(σ) = 1 exactly, and slots with a zero element (padding,
or a Heisenberg bond of two parallel spins) contribute nothing. On the 4×4 J1–J2
model, for instance, only about 55–60% of the 65 slots of a sample near the ground
state are needed.

Operators without empty slots (``LocalOperator.has_empty_slots`` False, as for a
transverse field) need every slot: :func:`all_log_psi` evaluates them in one call
(slot 0, σ itself, gives log ψ(σ)). Otherwise the needed rows are compacted to the
front of their block of rows and the model runs on them ``BATCH`` rows per block at
a time, in a ``lax.while_loop`` whose trip count is the number of batches the
fullest block needs: one compiled body, and a cost that follows the number of
needed rows rather than n_conn. With the rows split over D devices
(``nqs.parallel``), blocks = D makes every device compact and evaluate its own rows:
the block axis is the split one and every gather stays inside its block; only the
trip count (a scalar maximum) is shared.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "BATCH",
    "CONN_BYTES",
    "connected_log_psi",
    "conn_chunk",
    "needed_slots",
    "all_log_psi",
]

#: Rows per block per model call: enough against loop overhead and for efficient
#: products in the model (on CPU the GCNN's batched Fourier products take ~40% less
#: time per row at 1024 rows than at 520), small enough that the last batch's
#: padding, ~BATCH / 2 rows per block, is a small part of the needed rows.
BATCH = 1024
#: Bytes of connected configurations (int8) held at once: the samples are taken in
#: chunks that keep n_samples x n_conn x n_sites under this.
CONN_BYTES = 2**26


def needed_slots(sigma: jax.Array, sigma_p: jax.Array, mels: jax.Array) -> jax.Array:
    """Slots whose ψ(σ') a local estimate needs.

    Args:
        sigma: (m, n_sites) int8 configurations.
        sigma_p: (m, n_conn, n_sites) int8 connected configurations.
        mels: (m, n_conn) matrix elements.
    Returns:
        (m, n_conn) bool: mel ≠ 0 and σ' ≠ σ.
    """
    return (mels != 0) & jnp.any(sigma_p != sigma[:, None, :], axis=-1)


def conn_chunk(n_samples: int, n_conn: int, n_sites: int, blocks: int) -> int | None:
    """Samples per chunk whose connected configurations fit in ``CONN_BYTES``: a
    multiple of ``blocks``, or None when all of them fit."""
    fit = max(blocks, CONN_BYTES // max(1, n_conn * n_sites) // blocks * blocks)
    return None if fit >= n_samples else fit


def connected_log_psi(
    model,
    params,
    sigma_p: jax.Array,
    need: jax.Array,
    blocks: int = 1,
    max_rows: int | None = None,
) -> jax.Array:
    """log ψ(σ'_k) where ``need``, 0 elsewhere.

    Inside a jitted function (not reverse-differentiable: the loop's trip count
    depends on the data).

    Args:
        model: Flax module; apply maps (b, n_sites) int8 to (b,) log ψ.
        params: variables pytree of ``model``.
        sigma_p: (m, n_conn, n_sites) int8 connected configurations.
        need: (m, n_conn) bool slots to evaluate (:func:`needed_slots`).
        blocks: blocks of consecutive samples compacted separately (module
            docstring); 1 when it does not divide m.
        max_rows: at most this many rows per model call (all blocks together), as a
            memory bound; None for ``BATCH`` per block.
    Returns:
        (m, n_conn) log ψ, the model's dtype.
    """
    m, n_conn, n_sites = sigma_p.shape
    if m % blocks:
        blocks = 1
    n_rows = m // blocks * n_conn
    batch = min(n_rows, BATCH)
    if max_rows is not None:
        batch = max(1, min(batch, max_rows // blocks))
    n_batches = -(-n_rows // batch)
    rows = sigma_p.reshape(blocks, n_rows, n_sites)
    need = need.reshape(blocks, n_rows)
    # positions of the needed rows first (then index 0, harmless), padded to
    # batches: a scatter by the running count (compiles faster than jnp.nonzero)
    where = jnp.cumsum(need, axis=1, dtype=jnp.int32) - 1  # slot -> its compact row
    target = jnp.where(need, where, n_batches * batch)  # out of range: dropped
    source = jnp.arange(n_rows, dtype=jnp.int32)
    order = jax.vmap(
        lambda t: jnp.zeros(n_batches * batch, jnp.int32).at[t].set(source, mode="drop")
    )(target)
    n_trips = (jnp.max(jnp.sum(need, axis=1)) + batch - 1) // batch

    def body(carry):
        i, out = carry
        take = jax.lax.dynamic_slice_in_dim(order, i * batch, batch, axis=1)
        x = jax.vmap(lambda r, t: r[t])(rows, take)  # (blocks, batch, n_sites)
        y = model.apply(params, x.reshape(-1, n_sites)).astype(out.dtype)
        out = jax.lax.dynamic_update_slice_in_dim(
            out, y.reshape(blocks, batch), i * batch, axis=1
        )
        return i + 1, out

    dtype = jax.eval_shape(model.apply, params, rows[0, :1]).dtype
    out = jnp.zeros((blocks, n_batches * batch), dtype)
    _, out = jax.lax.while_loop(lambda c: c[0] < n_trips, body, (0, out))
    values = jnp.take_along_axis(out, jnp.maximum(where, 0), axis=1)
    return jnp.where(need, values, 0).reshape(m, n_conn)


def all_log_psi(model, params, sigma_p: jax.Array) -> jax.Array:
    """log ψ(σ'_k) of every slot, in one model call.

    Args:
        sigma_p: (m, n_conn, n_sites) int8 connected configurations.
    Returns:
        (m, n_conn) log ψ.
    """
    m, n_conn, n_sites = sigma_p.shape
    return model.apply(params, sigma_p.reshape(-1, n_sites)).reshape(m, n_conn)
