"""The StateStore protocol: where a model's parts live between runs.

A model is saved as a mapping ``part name -> bytes`` (see :mod:`streammoe.state.codec`).
Stores only move bytes; they never interpret or unpickle them.
"""
from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable


@runtime_checkable
class StateStore(Protocol):
    def write(self, name: str, parts: Mapping[str, bytes], *, replace: bool = True) -> None:
        """Store ``parts`` under model ``name`` atomically.

        ``replace=True`` drops parts not named in ``parts``; ``replace=False`` updates only
        the given parts (used to write just the experts that changed).
        """

    def read(self, name: str) -> dict[str, bytes]:
        """Return all parts of model ``name``; raise ``KeyError`` if it does not exist."""

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> list[str]: ...
