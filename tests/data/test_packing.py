"""prepare_sft_dataset against the real Qwen3 chat template and tokenizer, and TRL's SFTTrainer on its output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finsent.completion import PromptConfig, build_messages, render_completion
from finsent.data.packing import IGNORE_INDEX, pack_sequences, prepare_sft_dataset, tokenize_chatml
from finsent.errors import DataError

NO_THINK = {"enable_thinking": False}


@pytest.fixture(scope="module")
def tokenizer(qwen3_tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)


@pytest.fixture(scope="module")
def conversations(phrasebank_allagree: Path) -> list[list[dict[str, str]]]:
    """Single-turn rows built from real PhraseBank sentences, plus multi-turn and unicode rows."""
    lines = phrasebank_allagree.read_text(encoding="latin-1").splitlines()[:40]
    rows = []
    for line in lines:
        text, label = line.rsplit("@", 1)
        reasoning = f"The sentence reports: {text[:80]}. For an investor this reads as {label}."
        rows.append([*build_messages(text, PromptConfig()), _assistant(render_completion(reasoning, label))])
    rows.append(
        [
            *build_messages("Umsatz stieg um 12 % auf 3,4 Mrd. € — 株価は上昇した 📈", PromptConfig()),
            _assistant(render_completion("Revenue rose 12 % to €3.4bn; 株価 rose. Ça va très bien 👍.", "positive")),
        ]
    )
    rows.append(
        [
            *build_messages("Operating profit fell to EUR 1.2 mn.", PromptConfig()),
            _assistant(render_completion("Profit fell.", "negative")),
            {"role": "user", "content": "And what about Tieto's order intake, which was flat at EUR 30 mn?"},
            _assistant(render_completion("A flat order intake is neither good nor bad news.", "neutral")),
            {"role": "user", "content": "Last one: net sales rose 5 %."},
            _assistant(render_completion("Sales growth is good news.", "positive")),
        ]
    )
    rows.append([{"role": "user", "content": "No system prompt here: shares jumped 40 %."}, _assistant("positive")])
    article = " ".join(line.rsplit("@", 1)[0] for line in lines)
    rows.append([*build_messages(article, PromptConfig()), _assistant(render_completion("Mixed news.", "neutral"))])
    return rows


@pytest.fixture(params=["mixed", "shared_system_prompt", "multi_turn_alone"])
def rows(request: pytest.FixtureRequest, conversations: list[list[dict[str, str]]]) -> list[list[dict[str, str]]]:
    """Batches with no shared start, with a shared system turn (encoded once), and one conversation alone."""
    if request.param == "shared_system_prompt":
        return [messages for messages in conversations if messages[0]["role"] == "system"]
    if request.param == "multi_turn_alone":
        return [messages for messages in conversations if len(messages) > 3]
    return conversations


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    """Return the [start, end) token ranges where ``mask`` is 1."""
    edges = np.diff(np.concatenate(([0], mask, [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def test_input_ids_are_exactly_the_chat_template_ids(tokenizer, rows):
    tokenized = tokenize_chatml(rows, tokenizer, max_length=4096, chat_template_kwargs=NO_THINK)

    assert len(tokenized.dataset) == len(rows)
    for row, messages in zip(tokenized.dataset, rows, strict=True):
        assert row["input_ids"] == tokenizer.apply_chat_template(messages, **NO_THINK)["input_ids"]


def test_mask_covers_each_assistant_content_and_its_im_end_only(tokenizer, rows):
    tokenized = tokenize_chatml(rows, tokenizer, max_length=4096, chat_template_kwargs=NO_THINK)

    for row, messages in zip(tokenized.dataset, rows, strict=True):
        runs = _runs(row["assistant_masks"])
        expected = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
        assert [tokenizer.decode(row["input_ids"][start:end]) for start, end in runs] == expected


def test_prompt_is_the_generation_prompt_the_model_sees_at_inference(tokenizer, rows):
    """The "<think>\\n\\n</think>\\n\\n" before the answer is prompt: the generation prompt already holds it."""
    tokenized = tokenize_chatml(rows, tokenizer, max_length=4096, chat_template_kwargs=NO_THINK)

    for row, messages in zip(tokenized.dataset, rows, strict=True):
        last_start = _runs(row["assistant_masks"])[-1][0]
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, **NO_THINK)["input_ids"]
        assert row["input_ids"][:last_start] == prompt


def test_truncation_left_on_the_tokenizer_by_an_earlier_call_is_ignored(qwen3_tokenizer_dir, conversations):
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    tokenizer(["Revenue rose 12% in the quarter"], truncation=True, max_length=2, padding="max_length")

    tokenized = tokenize_chatml(conversations[:3], tokenizer, max_length=4096, chat_template_kwargs=NO_THINK)

    for row, messages in zip(tokenized.dataset, conversations[:3], strict=True):
        assert row["input_ids"] == tokenizer.apply_chat_template(messages, **NO_THINK)["input_ids"]


def test_a_dataset_with_a_messages_column_gives_the_same_rows(tokenizer, conversations):
    dataset = Dataset.from_dict({"messages": conversations, "id": [str(i) for i in range(len(conversations))]})

    from_lists = tokenize_chatml(conversations, tokenizer, max_length=4096, chat_template_kwargs=NO_THINK)
    from_dataset = tokenize_chatml(dataset, tokenizer, max_length=4096, chat_template_kwargs=NO_THINK)

    assert from_dataset.dataset.to_dict() == from_lists.dataset.to_dict()


def test_overflow_drops_or_truncates_long_rows_and_counts_them(tokenizer, conversations):
    full = tokenize_chatml(conversations, tokenizer, max_length=4096, chat_template_kwargs=NO_THINK).dataset
    lengths = [len(ids) for ids in full["input_ids"]]
    prompt_lengths = [_runs(mask)[0][0] for mask in full["assistant_masks"]]
    max_length = int(np.median(lengths))
    n_long = sum(length > max_length for length in lengths)
    n_no_answer_left = sum(prompt >= max_length for prompt in prompt_lengths)

    dropped = tokenize_chatml(conversations, tokenizer, max_length, "drop", NO_THINK)
    truncated = tokenize_chatml(conversations, tokenizer, max_length, "truncate", NO_THINK)

    assert n_long > 0 and n_no_answer_left > 0
    assert (dropped.examples, dropped.dropped, dropped.truncated) == (len(conversations), n_long, 0)
    assert dropped.dataset["input_ids"] == [ids for ids in full["input_ids"] if len(ids) <= max_length]
    assert (truncated.dropped, truncated.truncated) == (n_no_answer_left, n_long - n_no_answer_left)
    kept = [i for i, prompt in enumerate(prompt_lengths) if prompt < max_length]
    assert truncated.dataset["input_ids"] == [full[i]["input_ids"][:max_length] for i in kept]
    assert truncated.dataset["assistant_masks"] == [full[i]["assistant_masks"][:max_length] for i in kept]


def test_packing_keeps_every_token_once_with_labels_only_on_assistant_tokens(tokenizer, conversations):
    tokenized = tokenize_chatml(conversations, tokenizer, max_length=1024, chat_template_kwargs=NO_THINK).dataset
    tokenized = tokenized.select(range(3, len(tokenized)))  # a slice of the Arrow table, as a split would give

    packed = pack_sequences(tokenized, max_length=1024)

    assert packed.column_names == ["input_ids", "labels", "seq_lengths"]
    assert len(packed) < len(tokenized)
    unpacked = []
    for row in packed:
        assert len(row["input_ids"]) == sum(row["seq_lengths"]) <= 1024
        bounds = np.cumsum([0, *row["seq_lengths"]])
        unpacked += [(row["input_ids"][a:b], row["labels"][a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    expected = [
        (ids, [token if is_loss else IGNORE_INDEX for token, is_loss in zip(ids, mask, strict=True)])
        for ids, mask in zip(tokenized["input_ids"], tokenized["assistant_masks"], strict=True)
    ]
    assert sorted(unpacked) == sorted(expected)


def test_prepare_sft_dataset_reports_what_it_did(tokenizer, conversations):
    packed, stats = prepare_sft_dataset(conversations, tokenizer, 4096, chat_template_kwargs=NO_THINK)
    unpacked, unpacked_stats = prepare_sft_dataset(
        conversations, tokenizer, 4096, False, chat_template_kwargs=NO_THINK
    )

    assert unpacked.column_names == ["input_ids", "labels"]
    assert (stats.examples, stats.dropped, stats.truncated) == (len(conversations), 0, 0)
    assert stats.tokens == sum(len(ids) for ids in unpacked["input_ids"]) == sum(map(sum, packed["seq_lengths"]))
    assert stats.loss_tokens == sum(label != IGNORE_INDEX for labels in unpacked["labels"] for label in labels)
    assert (stats.rows, unpacked_stats.rows) == (len(packed), len(unpacked))
    assert stats.fill_ratio == pytest.approx(stats.tokens / (len(packed) * 4096))


def test_nothing_left_to_train_on_is_a_data_error(tokenizer, conversations):
    with pytest.raises(DataError, match="max_length=8: expected at least one conversation that fits"):
        prepare_sft_dataset(conversations, tokenizer, 8, chat_template_kwargs=NO_THINK)


def test_a_conversation_without_an_assistant_turn_is_a_data_error(tokenizer, conversations):
    rows = [*conversations[:3], build_messages("Sales rose.", PromptConfig())]

    with pytest.raises(DataError, match=r"\[3\]\.messages: expected an assistant message"):
        tokenize_chatml(rows, tokenizer, max_length=1024, chat_template_kwargs=NO_THINK)


def test_packed_conversations_do_not_attend_to_each_other_in_trl_batches(tokenizer, conversations, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    packed, _ = prepare_sft_dataset(conversations, tokenizer, 1024, chat_template_kwargs=NO_THINK)
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()

    batch = collator([packed[0], packed[1]])

    lengths = [*packed[0]["seq_lengths"], *packed[1]["seq_lengths"]]
    assert len(lengths) > 2
    assert batch["position_ids"][0].tolist() == [p for length in lengths for p in range(length)]
    assert batch["input_ids"][0].tolist() == packed[0]["input_ids"] + packed[1]["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        start, end = lengths[0], lengths[0] + lengths[1]
        alone = model(input_ids=batch["input_ids"][:, start:end], use_cache=False).logits
    torch.testing.assert_close(logits[:, start:end], alone)


@pytest.mark.slow
def test_sft_trainer_trains_on_the_prepared_rows_without_preparing_them_again(
    tokenizer, conversations, tiny_model_dir, tmp_path
):
    import torch
    from trl import SFTConfig, SFTTrainer

    packed, _ = prepare_sft_dataset(conversations, tokenizer, 512, chat_template_kwargs=NO_THINK)
    args = SFTConfig(
        output_dir=str(tmp_path), packing=True, max_length=512, max_steps=1,
        per_device_train_batch_size=2, learning_rate=1e-2, use_cpu=True, bf16=False, report_to="none",
        dataset_kwargs={"skip_prepare_dataset": True}, save_strategy="no",
    )  # fmt: skip
    trainer = SFTTrainer(str(tiny_model_dir), args=args, train_dataset=packed, processing_class=tokenizer)
    before = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}

    assert trainer.train_dataset is packed
    trainer.train()

    assert all(not torch.equal(before[name], param) for name, param in trainer.model.named_parameters())


def test_trl_prompt_completion_preparation_agrees_except_the_newline_after_im_end(
    tokenizer, conversations, tiny_model_dir, tmp_path
):
    """TRL also trains on the "\\n" the template writes after <|im_end|>, which the model never generates."""
    from trl import SFTConfig, SFTTrainer

    single_turn = [messages for messages in conversations if len(messages) == 3]
    ours, _ = prepare_sft_dataset(single_turn, tokenizer, 4096, packing=False, chat_template_kwargs=NO_THINK)
    rows = Dataset.from_dict(
        {
            "prompt": [messages[:-1] for messages in single_turn],
            "completion": [messages[-1:] for messages in single_turn],
            "chat_template_kwargs": [NO_THINK] * len(single_turn),
        }
    )
    args = SFTConfig(output_dir=str(tmp_path), max_length=4096, use_cpu=True, bf16=False, report_to="none")
    trainer = SFTTrainer(str(tiny_model_dir), args=args, train_dataset=rows, processing_class=tokenizer)

    for theirs, mine in zip(trainer.train_dataset, ours, strict=True):
        assert theirs["input_ids"] == mine["input_ids"]
        assert theirs["labels"][:-1] == mine["labels"][:-1]
        assert (tokenizer.decode(theirs["labels"][-1]), mine["labels"][-1]) == ("\n", IGNORE_INDEX)
