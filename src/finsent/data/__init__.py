"""The data stage: labeled text in, validated chain-of-thought ChatML out (see ``finsent.data.pipeline``).

Usage: ``finsent data --config recipes/tiny-cpu.yaml`` or ``build_dataset(load_config("tiny-cpu"))``.
"""

from typing import Any

__all__ = ["DataResult", "build_dataset"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing one reader (finsent.data.sources) does not load dedup, teachers and their dependencies.
    if name in __all__:
        from finsent.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'finsent.data' has no attribute {name!r}")
