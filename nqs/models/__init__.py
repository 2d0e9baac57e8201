"""Flax ansätze."""
