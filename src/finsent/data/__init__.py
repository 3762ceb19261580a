"""The data stage: labeled text in, validated chain-of-thought ChatML out (see ``finsent.data.pipeline``).

Usage: ``finsent data --config recipes/tiny-cpu.yaml`` or ``build_dataset(load_config("tiny-cpu"))``.
"""

from finsent.data.pipeline import DataResult, build_dataset

__all__ = ["DataResult", "build_dataset"]
