"""Discrete operators as sums of k-local terms, with one JAX kernel for connections.

A ``LocalOperator`` is ``constant + sum_t O_t`` where each term ``O_t`` acts on a tuple
of sites with a dense ``(d^k, d^k)`` matrix in the local-index basis of those sites
(local index 0 is the smallest local value; the first site is the most significant
digit).

``get_conn`` maps configurations to the configurations connected by the operator and
the matrix elements ``<sigma|O|sigma'>``; slot 0 is the diagonal, then the off-diagonal
slots of the terms grouped by (arity k, max off-diagonal entries per row m), so that
``n_conn = 1 + sum_t m_t``. ``to_sparse`` / ``sparse_matrix`` give the CSR matrix in
the basis of ``hilbert.all_states()`` (``nqs.exact`` diagonalises it).

Modules: ``local`` (the operator, its algebra, spin and boson operators) builds on
``tables`` (compiled term tables, the connection kernel, the sparse matrix).
"""

from nqs.operator.local import (
    LocalOperator,
    create,
    destroy,
    identity,
    local_operator,
    number,
    sigma_x,
    sigma_y,
    sigma_z,
    spin_matrices,
    spin_minus,
    spin_plus,
    spin_x,
    spin_y,
    spin_z,
)
from nqs.operator.tables import TermGroup, connections, sparse_matrix

__all__ = [
    "LocalOperator",
    "TermGroup",
    "connections",
    "create",
    "destroy",
    "identity",
    "local_operator",
    "number",
    "sigma_x",
    "sigma_y",
    "sigma_z",
    "sparse_matrix",
    "spin_matrices",
    "spin_minus",
    "spin_plus",
    "spin_x",
    "spin_y",
    "spin_z",
]
