"""streammoe: streaming online learning with a mixture of drift-adaptive experts.

The public names are imported on first use, so that ``import streammoe.gpu`` or the CLI's
``--help`` do not pay for river and torch until a model is actually built.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {"DriftMoE": ("model", "DriftMoE"), "PRESETS": ("presets", "PRESETS"),
         "KeyedDriftMoE": ("keyed", "KeyedDriftMoE")}

__all__ = ["DriftMoE", "PRESETS", "KeyedDriftMoE", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'streammoe' has no attribute {name!r}")
    from importlib import import_module

    module, attr = _LAZY[name]
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
