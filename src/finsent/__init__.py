"""finsent: train small financial LLMs that explain themselves."""

from finsent.completion import LABELS, parse_completion, render_completion
from finsent.config import load_config

__version__ = "0.1.0"
__all__ = ["LABELS", "load_config", "parse_completion", "render_completion", "__version__"]
