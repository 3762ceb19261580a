"""The GRPO stage: TRL's ``GRPOTrainer`` with the ``REWARDS`` registry and honest early stopping.

Usage: ``finsent grpo --config recipes/tiny-cpu.yaml`` or ``train_grpo(load_config("tiny-cpu"))``.
It trains on from the SFT adapter (or puts a new LoRA on a model; ``lora: null`` trains every weight), prompting
with the task's prompt, as data, eval and serve do; generation runs in transformers or, with
``trainer.use_vllm``, in vLLM (``vllm_mode: colocate`` or ``server``). Early stopping is ``finsent.plateau``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from finsent.checks import validate_recipe
from finsent.config import RecipeConfig
from finsent.errors import ConfigError
from finsent.eval.metrics import classification_metrics
from finsent.plateau import AccuracyFn, RewardPlateauCallback
from finsent.rewards import REWARDS
from finsent.serve.backends import TransformersBackend
from finsent.serve.predict import Confidence, predict_texts
from finsent.tasks import Task
from finsent.tracking import start_trainer_tracking
from finsent.training import (
    TrackerCallback,
    TrainResult,
    check_model_source,
    check_quantization,
    last_checkpoint,
    load_stage_model,
    new_lora_config,
    read_jsonl,
    tiny_shape,
    tracking_defaults,
    train_and_save,
    trainer_config,
)

# Qwen3's thinking stays off, as in SFT, eval and serve.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}


def train_grpo(cfg: RecipeConfig) -> TrainResult:
    """Run the GRPO stage of ``cfg`` and return where the adapter and the best checkpoint went."""
    validate_recipe(cfg, ["grpo"])
    started = time.perf_counter()
    stage = cfg.grpo
    out = Path(stage.output_dir)
    # First: QLoRA without CUDA must fail here, not deep inside bitsandbytes or on the bf16 check.
    check_quantization(stage.quantization, "grpo", cfg)
    defaults = {"logging_steps": 1, "chat_template_kwargs": CHAT_TEMPLATE_KWARGS, **tracking_defaults(cfg.tracking)}
    args = trainer_config(GRPOConfig, stage.trainer, defaults, cfg, "grpo.trainer")
    args.output_dir = str(out)
    sft_outputs = ("adapter_config.json", "config.json")  # a LoRA adapter, or a model with sft.lora: null
    if stage.model == cfg.sft.output_dir and not any((Path(stage.model) / name).is_file() for name in sft_outputs):
        raise ConfigError(
            f"no SFT output in {stage.model}: run `finsent sft` first, or set grpo.model to a model or adapter",
            field="grpo.model",
        )
    check_model_source(stage.model, "grpo", cfg)
    task = cfg.get_task()
    peft_config = new_lora_config(stage.model, stage.lora, cfg, "grpo.lora")
    shape = tiny_shape(stage.tiny, cfg, "grpo.tiny")
    reward_funcs = [REWARDS.get(name) for name in stage.rewards]
    train_rows = read_jsonl(stage.train_file)
    needs_eval = args.eval_strategy != "no" or stage.plateau.accuracy_every_steps > 0
    eval_rows = read_jsonl(stage.eval_file) if needs_eval else []
    resume_from = last_checkpoint(out, stage.resume)

    state, tokenizer, model = load_stage_model(cfg, stage, args.seed, shape, padding_side="left")

    local, opened = start_trainer_tracking(cfg.tracking, out, state.is_main_process)
    accuracy_fn = None
    if stage.plateau.accuracy_every_steps:
        held_out = random.Random(args.seed).sample(eval_rows, min(stage.plateau.accuracy_examples, len(eval_rows)))
        accuracy_fn = validation_accuracy(held_out, task, args.max_completion_length or 256)
    plateau = RewardPlateauCallback(stage.plateau, out, accuracy_fn, local)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=Dataset.from_list(grpo_rows(train_rows, task)),
        eval_dataset=(Dataset.from_list(grpo_rows(eval_rows, task)) if args.eval_strategy != "no" else None),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[TrackerCallback(local), plateau],
    )
    return train_and_save(trainer, resume_from, (local, opened), started)


def grpo_rows(rows: Sequence[dict[str, Any]], task: Task) -> list[dict[str, Any]]:
    """Return GRPO rows: the task's prompt as chat messages, and the columns the rewards read (label, text, task)."""
    return [
        {
            "prompt": task.messages(row["text"]),
            "label": row["label"],
            "text": row["text"],
            "id": row.get("id", str(i)),
            "task": task.name,
        }
        for i, row in enumerate(rows)
    ]


def validation_accuracy(rows: Sequence[dict[str, Any]], task: Task, max_new_tokens: int) -> AccuracyFn:
    """Return ``(model, tokenizer) -> accuracy`` on ``rows``: greedy replies of the model being trained, parsed and
    scored as the eval stage does (``predict_texts``, ``classification_metrics``)."""
    texts, gold = [row["text"] for row in rows], [row["label"] for row in rows]

    def accuracy(model: Any, tokenizer: Any) -> float:
        backend = TransformersBackend(model, tokenizer, max_new_tokens, batch_size=16)
        # Only the labels count here: scoring their probabilities would slow training for nothing.
        predictions = predict_texts(backend, texts, task, confidence=Confidence(use_probabilities=False))
        return classification_metrics(gold, [p.label for p in predictions], task.labels).accuracy

    return accuracy
