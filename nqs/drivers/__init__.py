"""Drivers: ground-state VMC and time-dependent VMC."""
