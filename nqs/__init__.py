"""nqs: neural-network quantum states with variational Monte Carlo on JAX."""

__version__ = "0.1.0"
