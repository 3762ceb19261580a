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

from finsent.config import RecipeConfig, dump_config
from finsent.io import atomic_write_text
from finsent.modeling import load_tokenizer
from finsent.tracking import start_trainer_tracking
from finsent.training import (
    TrackerCallback,
    TrainResult,
    check_quantization,
    last_checkpoint,
    load_training_model,
    new_lora_config,
    read_jsonl,
    resolve_model,
    tiny_shape,
    tracking_defaults,
    trainer_config,
    write_result,
)

logger = logging.getLogger(__name__)

# Qwen3's chat template renders an empty <think> block when thinking is off; eval and serve render it the same way.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}


def train_sft(cfg: RecipeConfig) -> TrainResult:
    """Run the SFT stage of ``cfg`` and return where the adapter went."""
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from finsent.data.packing import prepare_sft_dataset

    started = time.perf_counter()
    stage = cfg.sft
    out = Path(stage.output_dir)
    # First: QLoRA without CUDA must fail here, not deep inside bitsandbytes or on the bf16 check.
    check_quantization(stage.quantization, "sft", cfg)
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

    state = PartialState()
    set_seed(args.seed)
    if state.is_main_process:
        atomic_write_text(out / "config.yaml", dump_config(cfg))
    model_path, tokenizer_path = resolve_model(stage.model, stage.tokenizer, stage.train_file, out, shape)
    tokenizer = load_tokenizer(tokenizer_path, padding_side="right", trust_remote_code=stage.trust_remote_code)
    model = load_training_model(model_path, stage.quantization, stage.trust_remote_code)

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
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[TrackerCallback(local)],
    )
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(str(out))
    metrics = {k: float(v) for k, v in train_output.metrics.items() if isinstance(v, int | float)}
    result = TrainResult(str(out), str(out), metrics, resume_from)
    if state.is_main_process:
        tokenizer.save_pretrained(out)
        local.finish()
        opened.finish()
        write_result(out, result, started)
    return result
