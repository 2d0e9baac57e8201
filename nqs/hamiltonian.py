"""Built-in lattice Hamiltonians as ``LocalOperator`` sums over the lattice's edges.

Conventions (SPEC): spin-1/2 configuration +1 is up (Pauli Z = +1); spin operators are
S = σ/2 for s = 1/2; the bond sums run over the lattice's edges of the given order
(each pair once, periodic wrap-around edges included).

- ``ising``: H = -J Σ_<ij> Z_i Z_j - h Σ_i X_i (Pauli matrices, spin 1/2 only).
- ``heisenberg``: H = J Σ_<ij> S_i·S_j (any spin s).
- ``xxz``: H = J Σ_<ij> (S^x_i S^x_j + S^y_i S^y_j + Δ S^z_i S^z_j).
- ``j1j2``: J1 on nearest (order 1) and J2 on next-nearest (order 2) edges.
- ``bose_hubbard``: H = -t Σ_<ij> (b†_i b_j + h.c.) + U/2 Σ_i n_i(n_i-1) - μ Σ_i n_i.

``sign_rule="marshall"`` conjugates a spin Hamiltonian by the diagonal unitary
U = Π_{i in A} (-1)^(s - m_i) on sublattice A (sites with ``bipartition == 0``), which
flips the sign of the transverse part of every bond between the two sublattices and
leaves the spectrum unchanged.
"""

from __future__ import annotations

import numpy as np

from nqs.operator import LocalOperator, spin_matrices


def _check_sizes(hilbert, lattice) -> None:
    if lattice.n_sites != hilbert.n_sites:
        raise ValueError(
            f"the lattice has {lattice.n_sites} sites but the Hilbert space has "
            f"{hilbert.n_sites}; they must be equal"
        )


def _spin(hilbert, lattice, model: str) -> float:
    """Spin s of ``hilbert`` after checking it is a spin space matching ``lattice``."""
    s = getattr(hilbert, "s", None)
    if s is None:
        raise ValueError(f"{model} needs a spin Hilbert space, got {hilbert}")
    _check_sizes(hilbert, lattice)
    return s


def _bond_terms(edges, matrix) -> list:
    return [((i, j), matrix) for i, j in edges]


def _xxz_bond(s: float, delta: float) -> np.ndarray:
    """S^x S^x + S^y S^y + Δ S^z S^z = (S+S- + S-S+)/2 + Δ S^z S^z on two sites."""
    sz, sp, sm = spin_matrices(s)
    return 0.5 * (np.kron(sp, sm) + np.kron(sm, sp)) + delta * np.kron(sz, sz)


def _marshall(op: LocalOperator, lattice) -> LocalOperator:
    """U op U† with U = Π_{i: bipartition[i] == 0} (-1)^(s - m_i)."""
    parts = lattice.bipartition
    if parts is None:
        raise ValueError(
            "sign_rule='marshall' needs a bipartite nearest-neighbour graph; "
            f"the lattice {lattice.name!r} is not bipartite"
        )
    d = op.hilbert.local_size
    phase = (-1.0) ** (d - 1 - np.arange(d))  # (-1)^(2s - k) = (-1)^(s - m)
    terms = []
    for sites, matrix in op.terms:
        diag = np.ones(1)
        for site in sites:
            diag = np.kron(diag, phase if parts[site] == 0 else np.ones(d))
        terms.append((sites, diag[:, None] * matrix * diag[None, :]))
    return LocalOperator(op.hilbert, tuple(terms), op.constant)


def _apply_sign_rule(op: LocalOperator, lattice, sign_rule) -> LocalOperator:
    if sign_rule is None:
        return op
    if sign_rule == "marshall":
        return _marshall(op, lattice)
    raise ValueError(f"unknown sign_rule {sign_rule!r}; expected None or 'marshall'")


def ising(hilbert, lattice, J: float, h: float) -> LocalOperator:
    """Transverse-field Ising model H = -J Σ_<ij> Z_i Z_j - h Σ_i X_i (Pauli).

    Args:
        hilbert: ``Spin`` space with s = 1/2 on ``lattice.n_sites`` sites.
        lattice: edges of order 1 are the bonds.
        J: coupling; h: transverse field.
    Returns:
        the Hamiltonian.
    Raises:
        ValueError: for a non-spin-1/2 space or mismatched sizes.
    """
    s = _spin(hilbert, lattice, "ising")
    if s != 0.5:
        raise ValueError(f"ising needs spin 1/2 (Pauli matrices), got s={s}")
    pauli_z = np.diag([-1.0, 1.0])  # local index 0 is entry -1 (down)
    pauli_x = np.array([[0.0, 1.0], [1.0, 0.0]])
    terms = _bond_terms(lattice.edges_of_order(1), -J * np.kron(pauli_z, pauli_z))
    terms += [((i,), -h * pauli_x) for i in range(hilbert.n_sites)]
    return LocalOperator(hilbert, tuple(terms))


def xxz(
    hilbert, lattice, J: float, delta: float, sign_rule: str | None = None
) -> LocalOperator:
    """XXZ model H = J Σ_<ij> (S^x_i S^x_j + S^y_i S^y_j + Δ S^z_i S^z_j), any spin s.

    Args:
        hilbert: ``Spin`` space on ``lattice.n_sites`` sites.
        lattice: edges of order 1 are the bonds.
        J: coupling; delta: anisotropy Δ.
        sign_rule: None, or "marshall" to rotate sublattice A (bipartite lattices).
    Returns:
        the Hamiltonian.
    """
    s = _spin(hilbert, lattice, "xxz")
    bond = J * _xxz_bond(s, delta)
    op = LocalOperator(hilbert, tuple(_bond_terms(lattice.edges_of_order(1), bond)))
    return _apply_sign_rule(op, lattice, sign_rule)


def heisenberg(hilbert, lattice, J: float, sign_rule: str | None = None):
    """Heisenberg model H = J Σ_<ij> S_i·S_j (S = σ/2 for s = 1/2), any spin s.

    Args:
        hilbert: ``Spin`` space on ``lattice.n_sites`` sites.
        lattice: edges of order 1 are the bonds.
        J: coupling (J > 0 antiferromagnetic).
        sign_rule: None, or "marshall" to rotate sublattice A (bipartite lattices).
    Returns:
        the Hamiltonian (a ``LocalOperator``).
    """
    s = _spin(hilbert, lattice, "heisenberg")
    bond = J * _xxz_bond(s, 1.0)
    op = LocalOperator(hilbert, tuple(_bond_terms(lattice.edges_of_order(1), bond)))
    return _apply_sign_rule(op, lattice, sign_rule)


def j1j2(hilbert, lattice, J1: float, J2: float, sign_rule: str | None = None):
    """J1-J2 model H = J1 Σ_<ij> S_i·S_j + J2 Σ_<<ij>> S_i·S_j, any spin s.

    Args:
        hilbert: ``Spin`` space on ``lattice.n_sites`` sites.
        lattice: edges of order 1 carry J1, edges of order 2 carry J2.
        J1, J2: couplings.
        sign_rule: None, or "marshall" (rotation by the nearest-neighbour
            bipartition; exact sign structure only at J2 = 0).
    Returns:
        the Hamiltonian (a ``LocalOperator``).
    """
    s = _spin(hilbert, lattice, "j1j2")
    bond = _xxz_bond(s, 1.0)
    terms = _bond_terms(lattice.edges_of_order(1), J1 * bond)
    terms += _bond_terms(lattice.edges_of_order(2), J2 * bond)
    op = LocalOperator(hilbert, tuple(terms))
    return _apply_sign_rule(op, lattice, sign_rule)


def bose_hubbard(hilbert, lattice, t: float, U: float, mu: float) -> LocalOperator:
    """Bose-Hubbard H = -t Σ_<ij> (b†_i b_j + h.c.) + U/2 Σ n_i(n_i-1) - μ Σ n_i.

    Args:
        hilbert: ``Fock`` space (occupations truncated at n_max) on
            ``lattice.n_sites`` sites.
        lattice: edges of order 1 are the hopping bonds.
        t: hopping; U: on-site interaction; mu: chemical potential.
    Returns:
        the Hamiltonian.
    Raises:
        ValueError: for a non-Fock space or mismatched sizes.
    """
    n_max = getattr(hilbert, "n_max", None)
    if n_max is None:
        raise ValueError(f"bose_hubbard needs a Fock Hilbert space, got {hilbert}")
    _check_sizes(hilbert, lattice)
    b = np.diag(np.sqrt(np.arange(1.0, n_max + 1)), 1)  # b|n> = sqrt(n)|n-1>
    n = np.diag(np.arange(n_max + 1.0))
    hop = -t * (np.kron(b.T, b) + np.kron(b, b.T))
    onsite = 0.5 * U * n @ (n - np.eye(n_max + 1)) - mu * n
    terms = _bond_terms(lattice.edges_of_order(1), hop)
    terms += [((i,), onsite) for i in range(hilbert.n_sites)]
    return LocalOperator(hilbert, tuple(terms))
