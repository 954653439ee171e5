"""streammoe: streaming online learning with a mixture of drift-adaptive experts."""
__version__ = "0.1.0"

from .model import DriftMoE  # noqa: E402
from .presets import PRESETS  # noqa: E402

__all__ = ["DriftMoE", "PRESETS", "__version__"]
