"""Flax ansätze: built-ins, custom-module loading, and initialisation helpers.

Every model maps int8 configurations ``(..., n_sites)`` to log-amplitudes ``(...)``
(float64 or complex128) through ``model.apply(variables, sigma)``, where
``variables = model.init(key, sigma)`` (``{"params": ...}``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from nqs.errors import InputError
from nqs.models.custom import DTYPES, check_model, instantiate, load_class
from nqs.models.ffn import FFN
from nqs.models.jastrow import Jastrow
from nqs.models.logstate import LogStateVector
from nqs.models.rbm import RBM, log_cosh

BUILTINS: dict[str, type[nn.Module]] = {
    "rbm": RBM,
    "jastrow": Jastrow,
    "ffn": FFN,
    "logstate": LogStateVector,
    "log_state_vector": LogStateVector,
}

__all__ = [
    "BUILTINS",
    "DTYPES",
    "FFN",
    "RBM",
    "Jastrow",
    "LogStateVector",
    "build",
    "build_checked",
    "check_model",
    "init_params",
    "load_class",
    "log_cosh",
]


def build(kind: str, hilbert, **kwargs) -> nn.Module:
    """The model a ``[model]`` table describes.

    Args:
        kind: a built-in name ("rbm", "jastrow", "ffn", "logstate" or
            "log_state_vector"), ``"package.module:Class"`` or ``"path/file.py:Class"``
            (relative to the working directory, or absolute).
        hilbert: Hilbert space; given to models with a ``hilbert`` field.
        **kwargs: the module's fields; ``param_dtype``/``dtype`` may be the strings
            "float32", "float64", "complex64", "complex128".
    Returns:
        The (unbound) Flax module.
    Raises:
        ValueError: unknown built-in (lists them), bad spec, missing file, import
            error, missing attribute, not a Flax module, or bad keyword arguments.
    """
    if not isinstance(kind, str):
        raise ValueError(f"model kind must be a string, got {kind!r}")
    if ":" in kind:
        cls = load_class(kind)
    else:
        cls = BUILTINS.get(kind.lower())
        if cls is None:
            raise ValueError(
                f"unknown model kind {kind!r}; built-ins are {', '.join(BUILTINS)}, "
                "or give 'package.module:Class' or 'path/file.py:Class'"
            )
    return instantiate(cls, hilbert, kwargs, kind)


def build_checked(
    kind: str, hilbert, key: jax.Array, sigma: jax.Array | None = None, **kwargs
) -> tuple:
    """:func:`build`, then :func:`check_model` on a dummy batch; blame one argument.

    Args:
        kind, hilbert, **kwargs: as for :func:`build`.
        key: PRNG key of the dummy batch and the trial initialisation.
        sigma: optional (3, n_sites) dummy batch (see :func:`check_model`).
    Returns:
        (module, variables of the trial initialisation).
    Raises:
        ValueError: as :func:`build` and :func:`check_model`; when the check fails and
            leaving one argument at its default makes it pass, an ``InputError``
            whose ``key`` is that argument.
    """
    model = build(kind, hilbert, **kwargs)
    try:
        return model, check_model(model, hilbert, key, label=kind, sigma=sigma)
    except ValueError as err:
        problem = err
    for name in kwargs:
        rest = {k: v for k, v in kwargs.items() if k != name}
        try:
            trial = build(kind, hilbert, **rest)
            check_model(trial, hilbert, key, label=kind, sigma=sigma)
        except (ValueError, TypeError):
            continue
        raise InputError(name, f"{problem} (with {name} = {kwargs[name]!r})")
    raise problem


def _init(model: nn.Module, hilbert, key: jax.Array) -> dict:
    k_states, k_init = jax.random.split(key)
    return model.init(k_init, hilbert.random_states(k_states, 1))


_init_jit = jax.jit(_init, static_argnums=(0, 1))


def init_params(model: nn.Module, hilbert, key: jax.Array) -> dict:
    """``model.init`` on a dummy batch of one valid configuration (jitted).

    Args:
        model: Flax module.
        hilbert: Hilbert space providing ``random_states``.
        key: PRNG key.
    Returns:
        The variables pytree ``{"params": ...}`` to pass to ``model.apply``.
    """
    return _init_jit(model, hilbert, key)
