"""Flax ansätze: built-ins, custom-module loading, and initialisation helpers.

Every model maps int8 configurations ``(..., n_sites)`` to log-amplitudes ``(...)``
(float64 or complex128) through ``model.apply(variables, sigma)``, where
``variables = model.init(key, sigma)`` (``{"params": ...}``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from nqs.errors import InputError
from nqs.models.custom import (
    DTYPES,
    check_model,
    instantiate,
    load_class,
    module_fields,
)
from nqs.models.ffn import FFN
from nqs.models.gcnn import GCNN
from nqs.models.jastrow import Jastrow
from nqs.models.logstate import LogStateVector
from nqs.models.projection import Symmetrized
from nqs.models.rbm import RBM, log_cosh
from nqs.models.rbm_symm import RBMSymm
from nqs.models.vit import ViT

BUILTINS: dict[str, type[nn.Module]] = {
    "rbm": RBM,
    "jastrow": Jastrow,
    "ffn": FFN,
    "logstate": LogStateVector,
    "log_state_vector": LogStateVector,
    "rbm_symm": RBMSymm,
    "gcnn": GCNN,
    "vit": ViT,
}

#: Built-ins that are defined by a symmetry sector and need ``[symmetry]``.
NEEDS_SECTOR: tuple[type[nn.Module], ...] = (RBMSymm, GCNN)
#: Built-ins projected onto the ``[symmetry]`` sector when there is one (as with
#: ``symmetrize = true``): the ViT is invariant only under translations by a patch.
PROJECTED_IN_SECTOR: tuple[type[nn.Module], ...] = (ViT,)

__all__ = [
    "BUILTINS",
    "DTYPES",
    "FFN",
    "GCNN",
    "RBM",
    "RBMSymm",
    "Jastrow",
    "Symmetrized",
    "ViT",
    "LogStateVector",
    "build",
    "build_checked",
    "check_model",
    "init_params",
    "honours_sector",
    "load_class",
    "log_cosh",
]


def build(
    kind: str,
    hilbert,
    *,
    lattice=None,
    sector=None,
    symmetrize: bool = False,
    **kwargs,
) -> nn.Module:
    """The model a ``[model]`` table describes.

    Args:
        kind: a built-in name (``BUILTINS``), ``"package.module:Class"`` or
            ``"path/file.py:Class"`` (relative to the working directory, or absolute).
        hilbert: Hilbert space; given to models with a ``hilbert`` field.
        lattice: the lattice; given to models with a ``lattice`` field.
        sector: ``nqs.symmetry.Sector`` of ``[symmetry]`` or None; given to models
            with a ``sector`` field (they stay in it themselves).
        symmetrize: wrap the model in :class:`Symmetrized` (projection onto
            ``sector``); ``PROJECTED_IN_SECTOR`` kinds are wrapped whenever there
            is a sector.
        **kwargs: the module's fields; ``param_dtype``/``dtype`` may be the strings
            "float32", "float64", "complex64", "complex128".
    Returns:
        The (unbound) Flax module.
    Raises:
        ValueError: unknown built-in (lists them), bad spec, missing file, import
            error, missing attribute, not a Flax module, or bad keyword arguments;
            ``InputError`` (key ``kind`` or ``symmetrize``, relative to [model])
            for a model that needs a sector without one, or ``symmetrize``
            without a sector or on a model that already takes it.
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
    if sector is None and cls in NEEDS_SECTOR:
        raise InputError(
            "kind",
            f"{kind} is a symmetric ansatz and needs a [symmetry] section (e.g. "
            'group = "space")',
        )
    context = {"lattice": lattice, "sector": sector}
    module = instantiate(cls, hilbert, kwargs, kind, context)
    if sector is not None and cls in PROJECTED_IN_SECTOR:
        return Symmetrized(module=module, sector=sector)
    if not symmetrize:
        return module
    if sector is None:
        raise InputError(
            "symmetrize", "projecting onto a sector needs a [symmetry] section"
        )
    if honours_sector(module):
        raise InputError(
            "symmetrize",
            f"{kind} already stays in the [symmetry] sector; remove symmetrize",
        )
    return Symmetrized(module=module, sector=sector)


def honours_sector(module: nn.Module) -> bool:
    """True if ``module`` keeps its state in the sector it is given: a projection,
    or a module with a ``sector`` field."""
    return isinstance(module, Symmetrized) or "sector" in module_fields(type(module))


def build_checked(
    kind: str,
    hilbert,
    key: jax.Array,
    sigma: jax.Array | None = None,
    *,
    lattice=None,
    sector=None,
    symmetrize: bool = False,
    **kwargs,
) -> tuple:
    """:func:`build`, then :func:`check_model` on a dummy batch; blame one argument.

    Args:
        kind, hilbert, lattice, sector, symmetrize, **kwargs: as for :func:`build`.
        key: PRNG key of the dummy batch and the trial initialisation.
        sigma: optional (3, n_sites) dummy batch (see :func:`check_model`).
    Returns:
        (module, variables of the trial initialisation).
    Raises:
        ValueError: as :func:`build` and :func:`check_model`; when the check fails and
            leaving one argument of ``kwargs`` at its default makes it pass, an
            ``InputError`` whose ``key`` is that argument.
    """
    context = {"lattice": lattice, "sector": sector, "symmetrize": symmetrize}
    model = build(kind, hilbert, **context, **kwargs)
    try:
        return model, check_model(model, hilbert, key, label=kind, sigma=sigma)
    except InputError:
        raise
    except ValueError as err:
        problem = err
    for name in kwargs:
        rest = {k: v for k, v in kwargs.items() if k != name}
        try:
            trial = build(kind, hilbert, **context, **rest)
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
