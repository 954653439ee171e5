"""The Expert protocol shared by every expert kind (river trees, array trees, neural experts).

Experts see the model's dense, imputed feature vector ``x`` (float64, one column per feature
in the order the model first saw them) and integer class indices.  Both dimensions may grow
during a stream: ``x`` can get longer than it was, and ``n_classes`` can increase; experts
must accept that (treating unseen trailing features / classes as new).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Expert(Protocol):
    #: short name of the expert family, e.g. ``"river-ht"``, ``"lora"``; used in state and logs
    kind: str
    #: a frozen expert still predicts but ignores ``learn`` (kept for recurring concepts)
    frozen: bool

    def predict_proba(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """Class probabilities, shape ``(n_classes,)``; all zeros when the expert knows nothing."""

    def learn(self, x: np.ndarray, y: int) -> None:
        """Learn one labelled event (a no-op when frozen)."""

    def to_state(self) -> bytes:
        """Serialise without pickle (see :mod:`streammoe.state.codec`)."""

    @classmethod
    def from_state(cls, blob: bytes) -> "Expert":
        """Inverse of :meth:`to_state`; the restored expert continues bit-identically."""
