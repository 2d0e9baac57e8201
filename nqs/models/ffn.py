"""Fully connected feed-forward network ansatz."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nqs.models.rbm import log_cosh, n_hidden_units


def _split(f: Callable) -> Callable:
    """Apply a real activation to the real and imaginary parts separately."""

    def g(x):
        if jnp.iscomplexobj(x):
            return jax.lax.complex(f(x.real), f(x.imag))
        return f(x)

    return g


# name -> (activation, variance-scaling gain of the kernel initialiser)
ACTIVATIONS: dict[str, tuple[Callable, float]] = {
    "tanh": (jnp.tanh, 1.0),
    "log_cosh": (log_cosh, 1.0),
    "relu": (_split(jax.nn.relu), 2.0),
    "gelu": (_split(jax.nn.gelu), 2.0),
    "selu": (_split(jax.nn.selu), 1.0),
}


class FFN(nn.Module):
    """Feed-forward network: hidden Dense layers with an activation, then a Dense head.

    h_0 = sigma, h_l = f(W_l h_{l-1} + b_l), log psi = w_out . h_L. Layer widths are
    ``widths`` if given, else ``round(alpha_l * n_sites)`` for each entry of ``alpha``.

    Output: real log psi for a real ``param_dtype``; complex log psi for a complex
    ``param_dtype`` ("tanh" and "log_cosh" are holomorphic; "relu", "gelu" and "selu"
    act on real and imaginary parts separately). With ``phase=True`` (real parameters
    only) a second real head gives the phase: log psi = log|psi| + i phase.

    Initialisation: kernels are truncated-normal with variance ``gain / fan_in`` (gain
    2 for relu/gelu, else 1), biases zero, and the head has variance ``1 / fan_in``
    with no bias. With +-1 (or O(1)) inputs every pre-activation and the output have
    variance O(1) independently of the number of sites, so a fresh network on hundreds
    of sites has |log psi| of order 1 and no overflow.

    Attributes:
        widths: hidden-layer widths; overrides ``alpha``.
        alpha: hidden-layer widths in units of ``n_sites`` (a float is one layer).
        activation: "tanh" | "relu" | "gelu" | "log_cosh" | "selu".
        param_dtype: float64 or complex128.
        dtype: compute dtype; None means ``param_dtype``.
        phase: add a real phase head (requires real ``param_dtype``).
    """

    widths: tuple[int, ...] | None = None
    alpha: float | tuple[float, ...] = 2.0
    activation: str = "log_cosh"
    param_dtype: Any = jnp.float64
    dtype: Any = None
    phase: bool = False

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; "
                f"expected one of {', '.join(ACTIVATIONS)}"
            )
        if self.phase and jnp.issubdtype(self.param_dtype, jnp.complexfloating):
            raise ValueError("phase=True needs a real param_dtype (e.g. float64)")
        super().__post_init__()

    def layer_widths(self, n_sites: int) -> tuple[int, ...]:
        """Widths of the hidden layers on ``n_sites`` sites."""
        if self.widths is not None:
            widths = tuple(int(w) for w in self.widths)
        else:
            alphas = self.alpha
            if not isinstance(alphas, tuple | list):
                alphas = (alphas,)
            widths = tuple(n_hidden_units(a, n_sites) for a in alphas)
        if not widths or min(widths) < 1:
            raise ValueError(f"FFN needs hidden layers of width >= 1, got {widths}")
        return widths

    @nn.compact
    def __call__(self, sigma: jax.Array) -> jax.Array:
        """Log-amplitudes.

        Args:
            sigma: (..., n_sites) int8 configurations.
        Returns:
            (...) log psi: float64 (real params), complex128 (complex params or
            ``phase=True``).
        """
        dtype = self.param_dtype if self.dtype is None else self.dtype
        f, gain = ACTIVATIONS[self.activation]
        h = jnp.asarray(sigma, dtype)
        for i, width in enumerate(self.layer_widths(sigma.shape[-1])):
            h = nn.Dense(
                width,
                dtype=dtype,
                param_dtype=self.param_dtype,
                kernel_init=nn.initializers.variance_scaling(
                    gain, "fan_in", "truncated_normal"
                ),
                name=f"dense_{i}",
            )(h)
            h = f(h)
        head = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")

        def dense_head(name):
            return nn.Dense(
                1,
                use_bias=False,
                dtype=dtype,
                param_dtype=self.param_dtype,
                kernel_init=head,
                name=name,
            )(h)[..., 0]

        log_psi = dense_head("head")
        if self.phase:
            log_psi = jax.lax.complex(log_psi, dense_head("phase_head"))
        return log_psi
