"""Routers that weigh experts per event."""
from .mlp import MLPRouter, softmax

__all__ = ["MLPRouter", "softmax"]
