"""The SFT warm-up stage: TRL's ``SFTTrainer`` with a PEFT LoRA adapter (QLoRA on CUDA; ``lora: null`` trains every
weight) on the data stage's ChatML.

Usage: ``finsent sft --config recipes/tiny-cpu.yaml [--resume]`` or ``train_sft(load_config("tiny-cpu"))``.
Conversations are tokenized and packed by ``finsent.data.packing`` with labels on the assistant turns only, then
handed to TRL as they are. Outputs in ``sft.output_dir``: the adapter (or model) and tokenizer, ``config.yaml``,
``metrics.jsonl`` with ``plots/`` (loss, learning rate, grad norm, tokens/s) and ``result.json``, written last.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from finsent.checks import validate_recipe
from finsent.config import RecipeConfig
from finsent.data.packing import IGNORE_INDEX, prepare_sft_dataset
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

logger = logging.getLogger(__name__)

# Qwen3's chat template renders an empty <think> block when thinking is off; eval and serve render it the same way.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}


def train_sft(cfg: RecipeConfig) -> TrainResult:
    """Run the SFT stage of ``cfg`` and return where the adapter went."""
    validate_recipe(cfg, ["sft"])
    started = time.perf_counter()
    stage = cfg.sft
    out = Path(stage.output_dir)
    # First: QLoRA without CUDA must fail here, not deep inside bitsandbytes or on the bf16 check.
    check_quantization(stage.quantization, "sft", cfg)
    check_model_source(stage.model, "sft", cfg)
    defaults = {
        "logging_steps": 1,
        "include_num_input_tokens_seen": "non_padding",  # logs tokens/s
        **tracking_defaults(cfg.tracking),
    }
    args = trainer_config(SFTConfig, stage.trainer, defaults, cfg, "sft.trainer")
    args.output_dir = str(out)
    # The data stage's packer has already tokenized, masked and packed: TRL takes the rows as they are.
    args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    peft_config = new_lora_config(stage.model, stage.lora, cfg, "sft.lora")
    shape = tiny_shape(stage.tiny, cfg, "sft.tiny")
    train_rows = read_jsonl(stage.train_file)
    eval_rows = read_jsonl(stage.eval_file) if args.eval_strategy != "no" else None
    resume_from = last_checkpoint(out, stage.resume)

    state, tokenizer, model = load_stage_model(cfg, stage, args.seed, shape, padding_side="right")

    def prepare(rows: list[dict]) -> Dataset:
        conversations = Dataset.from_list([{"messages": row["messages"]} for row in rows])
        dataset, stats = prepare_sft_dataset(
            conversations, tokenizer, args.max_length, packing=args.packing, chat_template_kwargs=CHAT_TEMPLATE_KWARGS
        )
        logger.info(
            "SFT rows: %d conversations -> %d rows (%.0f%% full)", stats.examples, stats.rows, 100 * stats.fill_ratio
        )
        return dataset

    with state.main_process_first():
        train_dataset = prepare(train_rows)
        eval_dataset = prepare(eval_rows) if eval_rows else None

    local, opened = start_trainer_tracking(cfg.tracking, out, state.is_main_process)
    trainer = CompactLossSFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[TrackerCallback(local)],
    )
    return train_and_save(trainer, resume_from, (local, opened), started)


class CompactLossSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer``, whose loss on CPU sends only the positions that have a label through the output layer.

    Without Triton, TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``) scores every position, prompt
    included, in a torch fallback that makes several passes over the vocabulary. With Qwen3's 151k tokens that is
    most of a CPU step: asking the model for the logits of the labelled positions only (``logits_to_keep``) gives
    the same loss about 5x faster on a tiny Qwen3. TRL's entropy, token-accuracy and token-count metrics are not
    logged then; the Trainer's tokens/s still is.
    """

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        is_plain_nll = self.args.loss_type == "nll" and self.label_smoother is None and self.compute_loss_func is None
        # On CUDA the fused head already scores labelled positions only, without materialising their logits.
        if return_outputs or not is_plain_nll or self.aux_loss_enabled or self.accelerator.device.type != "cpu":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        targets = inputs["labels"][:, 1:]
        keep = (targets != IGNORE_INDEX).any(0).nonzero().squeeze(-1)  # positions whose next token is a label
        forward = {**{k: v for k, v in inputs.items() if k != "labels"}, "use_cache": False, "logits_to_keep": keep}
        logits = model(**forward).logits
        targets = targets[:, keep]
        count = (targets != IGNORE_INDEX).sum() if num_items_in_batch is None else num_items_in_batch
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        ) / torch.as_tensor(count).clamp(min=1)
        # As TRL: num_items_in_batch counts every rank's tokens, and DDP averages the gradients over ranks.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return loss
