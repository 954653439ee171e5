"""File-backed store, the embedded default: one zip archive per model, replaced atomically."""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

_SUFFIX = ".smoe"


class FileStore:
    """Keeps each model as ``<root>/<name>.smoe``, a zip of its parts.

    Writes go to a temporary file in the same directory, are fsync'ed and then renamed over
    the old archive, so a crash leaves either the old or the new state, never a mix.

    Examples
    --------
    >>> import tempfile
    >>> from streammoe.state.file import FileStore
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = FileStore(folder.name)
    >>> store.write("fraud", {"meta": b'{"n": 1}', "expert/0": b"\\x00\\x01"})
    >>> store.read("fraud")["meta"], store.names()
    (b'{"n": 1}', ['fraud'])
    >>> store.write("fraud", {"expert/0": b"\\x02"}, replace=False)  # update one part, keep the others
    >>> sorted(store.read("fraud").items())
    [('expert/0', b'\\x02'), ('meta', b'{"n": 1}')]

    ``DriftMoE.save`` / ``load`` use it when given a folder:

    >>> from streammoe import DriftMoE
    >>> model = DriftMoE(seed=1)
    >>> model.learn_one({"a": 1.0, "b": 0.0}, True)
    >>> model.save(folder.name, name="m")
    >>> DriftMoE.load(folder.name, name="m").predict_proba_one({"a": 1.0, "b": 0.0}) == model.predict_proba_one(
    ...     {"a": 1.0, "b": 0.0})
    True
    >>> folder.cleanup()
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid model name {name!r}")
        return self.root / f"{name}{_SUFFIX}"

    def write(self, name: str, parts: Mapping[str, bytes], *, replace: bool = True) -> None:
        merged = dict(parts) if replace or not self.exists(name) else {**self.read(name), **parts}
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
                    for part in sorted(merged):
                        info = zipfile.ZipInfo(part, date_time=(1980, 1, 1, 0, 0, 0))
                        zf.writestr(info, merged[part])
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path(name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def read(self, name: str) -> dict[str, bytes]:
        path = self._path(name)
        if not path.exists():
            raise KeyError(f"no saved model {name!r} in {self.root}")
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist()}

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name[: -len(_SUFFIX)] for p in self.root.glob(f"*{_SUFFIX}"))


class MemoryStore:
    """In-process store for tests and notebooks."""

    def __init__(self):
        self._models: dict[str, dict[str, bytes]] = {}

    def write(self, name: str, parts: Mapping[str, bytes], *, replace: bool = True) -> None:
        if replace:
            self._models[name] = dict(parts)
        else:
            self._models.setdefault(name, {}).update(parts)

    def read(self, name: str) -> dict[str, bytes]:
        if name not in self._models:
            raise KeyError(f"no saved model {name!r}")
        return dict(self._models[name])

    def exists(self, name: str) -> bool:
        return name in self._models

    def delete(self, name: str) -> None:
        self._models.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._models)


def as_store(target):
    """``target`` as a state store: a directory path becomes a :class:`FileStore`, a store is
    used as is (what ``save``/``load`` of the models accept)."""
    return FileStore(target) if isinstance(target, (str, os.PathLike)) else target
