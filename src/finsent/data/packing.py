"""ChatML conversations to packed, assistant-masked token rows that TRL's ``SFTTrainer`` trains on as they are.

Each conversation is rendered once with the tokenizer's own chat template and encoded in batches by the Rust
tokenizer (the start a batch shares, its system turn, once per batch), and the loss mask comes from the character
spans of the assistant turns: no second rendering for the prompt and no Python loop over tokens. Packing is TRL's
best-fit-decreasing ``pack_dataset``.

Usage: ``train, stats = prepare_sft_dataset(ds, tokenizer, max_length=1024, chat_template_kwargs={"enable_thinking":
False})``, then ``SFTTrainer(..., train_dataset=train, args=SFTConfig(packing=True, max_length=1024,
dataset_kwargs={"skip_prepare_dataset": True}))``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from datasets.fingerprint import generate_random_fingerprint
from datasets.utils.logging import is_progress_bar_enabled
from tokenizers import Encoding, Tokenizer
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase
from trl.data_utils import pack_dataset

from finsent.errors import DataError

logger = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, Any]]
Overflow = Literal["drop", "truncate"]

IGNORE_INDEX = -100
_BATCH_SIZE = 2048


@dataclass(frozen=True)
class TokenizedChats:
    """Token rows (``input_ids``, ``assistant_masks``) and how many conversations exceeded ``max_length``.

    ``dropped`` counts conversations left out: too long with ``overflow="drop"``, or truncated so far that no
    assistant token was left. ``truncated`` counts conversations cut to ``max_length`` and kept.
    """

    dataset: Dataset
    examples: int
    dropped: int
    truncated: int


@dataclass(frozen=True)
class PackingStats:
    """What ``prepare_sft_dataset`` did: tokens kept (and in the loss), conversations dropped or cut, rows built.

    ``fill_ratio`` is ``tokens / (rows * max_length)``: how full the training rows are.
    """

    examples: int
    tokens: int
    loss_tokens: int
    dropped: int
    truncated: int
    rows: int
    fill_ratio: float
    seconds: float


def tokenize_chatml(
    conversations: Dataset | Iterable[Messages],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overflow: Overflow = "drop",
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> TokenizedChats:
    """Return the chat-template tokens of each conversation with 1 on assistant content and its end-of-turn token.

    Args:
        conversations: lists of ``{"role", "content"}`` messages, or a ``Dataset`` with a ``messages`` column.
        overflow: ``drop`` conversations longer than ``max_length`` tokens, or ``truncate`` them (keeping the start).
        chat_template_kwargs: passed to ``apply_chat_template``, e.g. ``{"enable_thinking": False}`` for Qwen3.
    """
    if overflow not in ("drop", "truncate"):
        raise ValueError(f"overflow: expected 'drop' or 'truncate', got {overflow!r}")
    lengths: list[int] = []
    spans: list[tuple[int, int, int]] = []  # (row, first token, one past the end-of-turn token)
    # Ids go to numpy batch by batch: as Python ints, 177k conversations of ~220 tokens would take 1.4 GB.
    values: list[np.ndarray] = [np.zeros(0, dtype=np.int32)]
    total = len(conversations) if isinstance(conversations, Dataset | Sequence) else None
    with tqdm(total=total, desc="Tokenizing chats", unit="ex", disable=not is_progress_bar_enabled()) as bar:
        for batch in _render_and_encode(conversations, tokenizer, chat_template_kwargs or {}):
            start_ids, n_start = batch.start_ids, len(batch.start_ids)
            for char_spans, encoding in zip(batch.char_spans, batch.encodings, strict=True):
                row = len(lengths)
                for start, end in char_spans:
                    # The token that starts right after the content is the template's end-of-turn token
                    # (<|im_end|> in ChatML): it is trained so that the model learns to stop.
                    first, after = (encoding.char_to_token(i - batch.start_chars) for i in (start, end))
                    spans.append((row, n_start + first, n_start + after + 1))
                lengths.append(n_start + len(encoding))
            ids = chain.from_iterable(chain(start_ids, encoding.ids) for encoding in batch.encodings)
            values.append(np.fromiter(ids, dtype=np.int32))
            bar.update(len(batch.encodings))
    spans_array = np.array(spans, dtype=np.int64).reshape(-1, 3)
    return _to_dataset(np.concatenate(values), np.array(lengths, dtype=np.int64), spans_array, max_length, overflow)


def pack_sequences(tokenized: Dataset, max_length: int) -> Dataset:
    """Pack ``input_ids``/``assistant_masks`` rows best-fit-decreasing into rows of at most ``max_length`` tokens.

    The result has the columns TRL's ``SFTTrainer`` uses as they are: ``input_ids``, ``labels`` (``-100`` outside
    assistant content) and ``seq_lengths``, from which its collator restarts ``position_ids`` at 0 for every packed
    conversation, so that attention never crosses from one conversation into the next.
    """
    return pack_dataset(_with_labels(tokenized), max_length, "bfd", {"desc": "Packing"})


def prepare_sft_dataset(
    dataset: Dataset | Iterable[Messages],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    packing: bool = True,
    overflow: Overflow = "drop",
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Dataset, PackingStats]:
    """Return the SFT training rows for ``dataset`` (packed unless ``packing=False``) and what it took.

    Pass the result to ``SFTTrainer`` with ``dataset_kwargs={"skip_prepare_dataset": True}`` and the same
    ``packing`` and ``max_length``.
    """
    started = time.perf_counter()
    tokenized = tokenize_chatml(dataset, tokenizer, max_length, overflow, chat_template_kwargs)
    if not len(tokenized.dataset):
        raise DataError(
            f"no conversation to train on with max_length={max_length}",
            expected="at least one conversation that fits",
            got=f"{tokenized.examples} conversations, {tokenized.dropped} dropped",
        )
    table = tokenized.dataset.data.table
    result = pack_sequences(tokenized.dataset, max_length) if packing else _with_labels(tokenized.dataset)
    tokens = int(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py())
    stats = PackingStats(
        examples=tokenized.examples,
        tokens=tokens,
        loss_tokens=int(pc.sum(pc.list_flatten(table.column("assistant_masks"))).as_py()),
        dropped=tokenized.dropped,
        truncated=tokenized.truncated,
        rows=len(result),
        fill_ratio=tokens / (len(result) * max_length),
        seconds=time.perf_counter() - started,
    )
    logger.info("prepared %d rows of up to %d tokens for SFT: %s", stats.rows, max_length, stats)
    return result, stats


def _with_labels(tokenized: Dataset) -> Dataset:
    """Return ``input_ids`` and ``labels``: the ids on assistant tokens, ``-100`` elsewhere (TRL's label format)."""
    table = tokenized.with_format("arrow")[:]
    ids, masks = (table.column(name).combine_chunks() for name in ("input_ids", "assistant_masks"))
    values = ids.flatten().to_numpy()
    labels = np.where(masks.flatten().to_numpy(zero_copy_only=False) != 0, values, np.int32(IGNORE_INDEX))
    offsets = pa.array(np.concatenate(([0], np.cumsum(ids.value_lengths().to_numpy()))).astype(np.int32))
    columns = {"input_ids": values, "labels": labels}
    return _in_memory_dataset(pa.table({k: pa.ListArray.from_arrays(offsets, v) for k, v in columns.items()}))


@dataclass(frozen=True)
class _EncodedBatch:
    """A batch of conversations tokenized as ``start_ids`` (the start they share) followed by their ``encodings``.

    ``char_spans`` are the assistant spans in each full rendering, ``start_chars`` the shared start's length.
    """

    char_spans: list[list[tuple[int, int]]]
    start_chars: int
    start_ids: list[int]
    encodings: list[Encoding]


def _render_and_encode(
    conversations: Dataset | Iterable[Messages], tokenizer: PreTrainedTokenizerBase, kwargs: Mapping[str, Any]
) -> Iterator[_EncodedBatch]:
    """Yield each batch of conversations rendered by the chat template and encoded, with its assistant spans.

    The Rust encoder releases the GIL, so a worker thread encodes one batch while jinja renders the next.
    """
    backend = tokenizer.backend_tokenizer
    if backend.truncation or backend.padding:
        # transformers leaves a call's truncation or padding set on the shared Rust tokenizer; a copy without them
        # encodes every text whole, as the chat template renders it.
        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
    turn_end = _isolated_turn_end(tokenizer)
    rows = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for batch in _batches(conversations):
            texts = tokenizer.apply_chat_template(batch, tokenize=False, **kwargs)
            char_spans = [
                _assistant_spans(messages, text, rows + i)
                for i, (messages, text) in enumerate(zip(batch, texts, strict=True))
            ]
            rows += len(batch)
            start = _shared_start(texts, turn_end, min(spans[0][0] for spans in char_spans)) if turn_end else ""
            encoded = pool.submit(_encode, backend, texts, char_spans, start)
            if pending is not None:
                yield pending.result()
            pending = encoded
        if pending is not None:
            yield pending.result()


def _isolated_turn_end(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Return the end-of-turn token if the texts before and after it always tokenize apart, else ``None``."""
    token = tokenizer.backend_tokenizer.get_added_tokens_decoder().get(tokenizer.eos_token_id)
    if token is None or token.lstrip or token.rstrip or token.single_word or token.normalized:
        return None
    return token.content


def _shared_start(texts: list[str], turn_end: str, limit: int) -> str:
    """Return the longest start shared by ``texts`` that ends with ``turn_end`` and stops by ``limit``."""
    common = os.path.commonprefix(texts)[:limit]
    return common[: common.rfind(turn_end) + len(turn_end)] if turn_end in common else ""


def _encode(
    backend: Tokenizer, texts: list[str], char_spans: list[list[tuple[int, int]]], start: str
) -> _EncodedBatch:
    # The tokenizer splits a text on added tokens before anything else, so after a turn-end token (which strips no
    # whitespace) the rest of a text tokenizes the same alone: the start that a batch shares, such as its system
    # prompt, is encoded once rather than per conversation, which saves about a third of the encoding.
    start_ids = backend.encode(start, add_special_tokens=False).ids if start else []
    encodings = backend.encode_batch([text[len(start) :] for text in texts], add_special_tokens=False)
    return _EncodedBatch(char_spans, len(start), start_ids, encodings)


def _batches(conversations: Dataset | Iterable[Messages]) -> Iterator[list[Messages]]:
    if isinstance(conversations, Dataset):
        if "messages" not in conversations.column_names:
            raise DataError(
                "", field="messages", expected="a 'messages' column", got=", ".join(conversations.column_names)
            )
        for batch in conversations.select_columns("messages").iter(batch_size=_BATCH_SIZE):
            yield batch["messages"]
        return
    rows = iter(conversations)
    while batch := list(islice(rows, _BATCH_SIZE)):
        yield batch


def _assistant_spans(messages: Messages, text: str, row: int) -> list[tuple[int, int]]:
    """Return the character span of each assistant message's content in ``text``, its rendering."""
    spans = []
    cursor = 0
    for index, message in enumerate(messages):
        content = message["content"] or ""
        if message["role"] == "assistant":
            # Qwen3's template renders only what follows a "</think>" and strips the newlines it starts with; the
            # "<think>\n\n</think>\n\n" it adds before the last turn stays out of the loss, because with
            # enable_thinking=False the generation prompt already holds it: the model never writes it at inference.
            content = content.split("</think>")[-1].lstrip("\n")
            if not content:
                raise DataError("assistant message has no content to train on", field=f"[{row}].messages[{index}]")
        start = text.find(content, cursor)
        if start < 0:
            raise DataError(
                "the chat template does not render this message's content verbatim",
                field=f"[{row}].messages[{index}].content",
                expected="text found in the rendering",
                got=content,
            )
        cursor = start + len(content)
        if message["role"] == "assistant":
            spans.append((start, cursor))
    if not spans:
        raise DataError("", field=f"[{row}].messages", expected="an assistant message", got=messages)
    return spans


def _to_dataset(
    values: np.ndarray, lengths: np.ndarray, spans: np.ndarray, max_length: int, overflow: Overflow
) -> TokenizedChats:
    """Build the ``input_ids``/``assistant_masks`` dataset from the flat ids and row lengths, dropping or cutting."""
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    # Assistant spans never overlap, so +1 at each start and -1 at each end, summed, marks the tokens inside them.
    delta = np.zeros(len(values) + 1, dtype=np.int8)
    np.add.at(delta, offsets[spans[:, 0]] + spans[:, 1], 1)
    np.add.at(delta, offsets[spans[:, 0]] + spans[:, 2], -1)
    masks = np.cumsum(delta[:-1], dtype=np.int8)

    is_long = lengths > max_length
    kept_lengths = np.where(is_long, max_length if overflow == "truncate" else 0, lengths)
    kept_offsets = np.concatenate(([0], np.cumsum(kept_lengths)))
    if is_long.any():
        keep = np.arange(len(values)) - np.repeat(offsets[:-1], lengths) < np.repeat(kept_lengths, lengths)
        values, masks = values[keep], masks[keep]
    # A row whose assistant tokens were all cut away would train on nothing: it is dropped too.
    has_loss = (kept_lengths > 0) & (np.add.reduceat(np.append(masks, 0), kept_offsets[:-1], dtype=np.int64) > 0)
    if not has_loss.all():
        keep = np.repeat(has_loss, kept_lengths)
        values, masks, kept_lengths = values[keep], masks[keep], kept_lengths[has_loss]
        kept_offsets = np.concatenate(([0], np.cumsum(kept_lengths)))
    row_offsets = pa.array(kept_offsets.astype(np.int32))
    table = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(row_offsets, pa.array(values)),
            "assistant_masks": pa.ListArray.from_arrays(row_offsets, pa.array(masks)),
        }
    )
    truncated = int((is_long & has_loss).sum()) if overflow == "truncate" else 0
    return TokenizedChats(
        _in_memory_dataset(table), examples=len(lengths), dropped=int((~has_loss).sum()), truncated=truncated
    )


def _in_memory_dataset(table: pa.Table) -> Dataset:
    # Without a fingerprint, datasets pickles the whole table to hash it: 1.7 s for 177k conversations.
    return Dataset(table, fingerprint=generate_random_fingerprint())
