"""The whole recipe: the shared prompt, the task, the run directory and one section per stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from finsent.completion import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE, PromptConfig
from finsent.config.base import LineMap
from finsent.config.data import DataConfig
from finsent.config.deploy import ExportConfig, ServeConfig
from finsent.config.evaluation import RUN_DIR, EvalConfig, EvalSetConfig
from finsent.config.train import GRPOStageConfig, SFTStageConfig, TrackingConfig
from finsent.errors import ConfigError
from finsent.tasks import TASKS, Task

STAGES = ("data", "sft", "grpo", "export", "eval")


@dataclass
class RecipeConfig:
    """A whole recipe: the shared prompt, the run directory and one section per stage."""

    output_dir: str = field(default="runs/finsent", metadata={"help": "Run directory; stages default to subfolders."})
    stages: list[Literal["data", "sft", "grpo", "export", "eval"]] = field(
        default_factory=lambda: list(STAGES),
        metadata={"help": "What `finsent run` runs, in this order."},
    )
    task: str = field(
        default="sentiment", metadata={"help": "What to train for (finsent ls tasks): labels, prompt, scoring."}
    )
    prompt: PromptConfig = field(
        default_factory=PromptConfig,
        metadata={"help": "The student prompt (all stages); fields left unset take the task's defaults."},
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data stage."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Evaluation stage."})
    sft: SFTStageConfig = field(default_factory=SFTStageConfig, metadata={"help": "SFT warm-up stage."})
    grpo: GRPOStageConfig = field(default_factory=GRPOStageConfig, metadata={"help": "GRPO stage."})
    tracking: TrackingConfig = field(default_factory=TrackingConfig, metadata={"help": "Metrics and plots."})
    export: ExportConfig = field(default_factory=ExportConfig, metadata={"help": "Export stage."})
    serve: ServeConfig = field(default_factory=ServeConfig, metadata={"help": "HTTP service."})
    # Where each key was written; load_config sets it per recipe, so checks after loading name file and line.
    line_map: ClassVar[LineMap] = LineMap()

    @property
    def source_path(self) -> str | None:
        """The recipe file this came from (None: the defaults and overrides only)."""
        return self.line_map.source

    def locate(self, dotted: str) -> tuple[str | None, int | None]:
        """Return the file and line that set ``dotted`` (its nearest enclosing key's line when it is not there)."""
        return self.line_map.locate(dotted)

    def get_task(self) -> Task:
        """Return the recipe's task with the recipe's prompt and anonymizer setting: what every stage reads."""
        return TASKS.get(self.task).with_settings(self.prompt, bool(self.data.anonymize))

    def _expand_run_paths(self) -> None:
        """Replace ``{output_dir}`` in the paths of eval and export, so a recipe names what this run wrote."""

        def expand(path: str | None) -> str | None:
            return path.replace(RUN_DIR, str(self.output_dir)) if path else path

        for model in self.eval.models:
            model.path, model.adapter = expand(model.path), expand(model.adapter)
        singles = [s for s in (self.eval.train, self.eval.calibration_set) if s is not None]
        for source in [*self.eval.test_sets, *self.eval.reference, *singles]:
            source.path = expand(source.path)
        self.export.model = expand(self.export.model)

    def __post_init__(self) -> None:
        if self.data.output_dir is None:
            self.data.output_dir = str(Path(self.output_dir) / "data")
        if self.eval.output_dir is None:
            self.eval.output_dir = str(Path(self.output_dir) / "eval")
        if not self.eval.test_sets:
            self.eval.test_sets = [data_split_set(self.task, Path(self.data.output_dir) / "test.jsonl", "data_test")]
        data_dir = Path(self.data.output_dir)
        for stage, name in ((self.sft, "sft"), (self.grpo, "grpo")):
            if stage.output_dir is None:
                stage.output_dir = str(Path(self.output_dir) / name)
            if stage.train_file is None:
                stage.train_file = str(data_dir / "train.jsonl")
            if stage.eval_file is None:
                stage.eval_file = str(data_dir / "validation.jsonl")
        if self.grpo.model is None:
            self.grpo.model = self.sft.output_dir
        if self.export.output_dir is None:
            self.export.output_dir = str(Path(self.output_dir) / "export")
        if self.export.model is None:
            self.export.model = self.grpo.output_dir
        self._expand_run_paths()
        if len(set(self.stages)) != len(self.stages):
            raise ConfigError("", field="stages", expected="each stage at most once", got=self.stages)
        if self.task not in TASKS:
            raise ConfigError(TASKS.unknown_message(self.task), field="task")
        task = TASKS.get(self.task)
        # PromptConfig's defaults are the sentiment prompt: a field left at it takes the task's own default.
        self.prompt = PromptConfig(
            system=task.prompt.system if self.prompt.system == DEFAULT_SYSTEM_PROMPT else self.prompt.system,
            user_template=(
                task.prompt.user_template
                if self.prompt.user_template == DEFAULT_USER_TEMPLATE
                else self.prompt.user_template
            ),
        )
        if self.data.anonymize is None:
            self.data.anonymize = task.use_anonymizer
        if self.data.mixture is not None and task.labels is not None:
            raise ConfigError(
                "mixtures sample instruction rows by task_type", field="data.mixture", expected="task: instruct"
            )
        if "{text}" not in self.prompt.user_template:
            raise ConfigError(
                "",
                field="prompt.user_template",
                expected="a template containing {text}",
                got=self.prompt.user_template,
            )


def data_split_set(task: str, path: Path, display_name: str) -> EvalSetConfig:
    """A split the data stage wrote, read by the task's reader: test.jsonl is what a recipe evaluates when it names
    no test set, validation.jsonl what eval fits temperatures on when it names no calibration set."""
    if task == "instruct":
        return EvalSetConfig(name="instruct", path=str(path), display_name=display_name)
    if task == "transactions":
        return EvalSetConfig(
            name="transactions", path=str(path), text_column="text", label_column="label", display_name=display_name
        )
    return EvalSetConfig(name="jsonl", path=str(path), display_name=display_name)
