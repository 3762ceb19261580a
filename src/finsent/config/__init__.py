"""Typed recipe configuration: YAML with line numbers, dotted overrides, checks against the annotations.

A recipe is one YAML file with one section per stage. ``load_config("tiny-cpu", ["data.seed=3"])`` resolves a
bundled recipe name or a path, applies overrides, checks every key and type, and names file, line and key in
every error. The sections live beside the stage they configure: ``data``, ``train`` (SFT, GRPO, tracking),
``evaluation`` (eval, models), ``deploy`` (export, serve); ``loader`` reads YAML into them.
"""

from finsent.config.base import LineMap, check_at_least, check_unique
from finsent.config.data import (
    BalanceConfig,
    DataConfig,
    DedupConfig,
    MixtureConfig,
    SourceConfig,
    SplitConfig,
    TeacherConfig,
    ValidationConfig,
)
from finsent.config.deploy import OLLAMA_PARAMETERS, QUANTIZATIONS, ExportConfig, ServeConfig
from finsent.config.evaluation import RUN_DIR, EvalConfig, EvalSetConfig, ModelConfig
from finsent.config.loader import build_dataclass, config_hash, dump_config, load_config, resolve_recipe
from finsent.config.recipe import STAGES, RecipeConfig, data_split_set
from finsent.config.train import GRPOStageConfig, PlateauConfig, SFTStageConfig, TrackingConfig, TrainStageConfig

__all__ = [
    "OLLAMA_PARAMETERS",
    "QUANTIZATIONS",
    "RUN_DIR",
    "STAGES",
    "BalanceConfig",
    "DataConfig",
    "DedupConfig",
    "EvalConfig",
    "EvalSetConfig",
    "ExportConfig",
    "GRPOStageConfig",
    "LineMap",
    "MixtureConfig",
    "ModelConfig",
    "PlateauConfig",
    "RecipeConfig",
    "SFTStageConfig",
    "ServeConfig",
    "SourceConfig",
    "SplitConfig",
    "TeacherConfig",
    "TrackingConfig",
    "TrainStageConfig",
    "ValidationConfig",
    "build_dataclass",
    "data_split_set",
    "check_at_least",
    "check_unique",
    "config_hash",
    "dump_config",
    "load_config",
    "resolve_recipe",
]
