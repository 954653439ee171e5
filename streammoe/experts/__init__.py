"""Experts: the Expert protocol, river Hoeffding trees, array tree pools, neural experts."""
from .base import Expert

__all__ = ["Expert"]
