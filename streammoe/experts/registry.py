"""Named expert kinds: how a spec like ``"tree"`` or ``{"kind": "mora", "rank": 8}`` becomes an expert.

Specs are plain JSON so a model's expert mix is part of its (saved, cloned) parameters.
Modules that define expert kinds call :func:`register`; restoring a saved expert looks its
class up by the ``kind`` string stored with it.
"""
from __future__ import annotations

from typing import Any, Callable

from .base import Expert

#: spec name -> constructor(**options, seed=..., grace_period=..., delta=..., binary=...)
_MAKERS: dict[str, Callable[..., Expert]] = {}
#: stored ``Expert.kind`` -> class with ``from_state``
_CLASSES: dict[str, type] = {}
_LOADED = False


def register(name: str, maker: Callable[..., Expert], cls: type) -> None:
    """Make expert spec ``name`` available; ``cls.kind`` names it in saved state."""
    _MAKERS[name] = maker
    _CLASSES[cls.kind] = cls


def _load_builtin() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from .river_tree import RiverTreeExpert

    def tree(seed: int, grace_period: int, delta: float, binary: bool, **options) -> Expert:
        return RiverTreeExpert(grace_period=options.pop("grace_period", grace_period),
                               delta=options.pop("delta", delta), binary=binary, **options)

    register("tree", tree, RiverTreeExpert)

    try:
        from . import neural  # noqa: F401  (registers neural kinds; needs torch)
    except ImportError:
        pass


def normalise_spec(spec: str | dict) -> dict:
    if isinstance(spec, str):
        return {"kind": spec}
    if isinstance(spec, dict) and isinstance(spec.get("kind"), str):
        return dict(spec)
    raise ValueError(f"expert spec must be a kind name or a dict with 'kind', got {spec!r}")


def make_expert(spec: str | dict, *, seed: int, grace_period: int, delta: float, binary: bool) -> Expert:
    _load_builtin()
    spec = normalise_spec(spec)
    options: dict[str, Any] = {k: v for k, v in spec.items() if k != "kind"}
    maker = _MAKERS.get(spec["kind"])
    if maker is None:
        raise ValueError(f"unknown expert kind {spec['kind']!r}; known: {sorted(_MAKERS)}")
    return maker(seed=seed, grace_period=grace_period, delta=delta, binary=binary, **options)


def expert_class(kind: str) -> type:
    _load_builtin()
    if kind not in _CLASSES:
        raise ValueError(f"unknown expert kind {kind!r} in saved state; known: {sorted(_CLASSES)}")
    return _CLASSES[kind]


def known_kinds() -> list[str]:
    _load_builtin()
    return sorted(_MAKERS)
