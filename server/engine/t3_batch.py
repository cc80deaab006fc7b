"""Many T3 streams decoding together: one batched forward per step for every active stream.

A T3 decode step reads every weight once to produce one token: memory-bound, so a step for
several streams costs little more than a step for one. Each stream keeps its own KV cache rows,
position, sampling parameters and random generator (its randomness never depends on its
neighbours). Streams join after their own prefill and leave between steps.

The batch's KV cache is left-padded to a common length; an attention mask hides the padding and
explicit position ids give each row its own positions, so each stream's logits equal its solo
logits up to floating-point summation order.

Prefix caching: a stream's prompt starts with its voice's conditioning (speaker embedding and
~250 prompt speech tokens), which is the same for every request with that voice. Its keys and
values are computed once per voice and reused, so a joining stream prefills only its text (on
our CPU 0.6 s -> ~0.15 s; the whole batch waits while a stream prefills). Attention is causal:
the prefix's keys and values do not depend on what follows, so this changes only the order of
floating-point sums.

`TurboBatch` drives the GPT-2 T3 of Chatterbox Turbo, `OriginalBatch` the Llama T3 of the
original model, whose classifier-free guidance puts two rows (conditional and unconditional)
in the batch per stream. The per-stream arithmetic mirrors `token_stream.py`, which mirrors
upstream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from server.engine.kv_cache import GrowingCache
from server.engine.sampling import SamplingParams
from server.engine.token_stream import turbo_processors


@dataclass
class _Row:
    """One stream's decoding state (one or two cache rows)."""

    key: Hashable
    params: SamplingParams
    generator: torch.Generator
    width: int  # cache rows: 2 with classifier-free guidance, else 1
    history: torch.Tensor  # token ids the repetition penalty sees, (1, n)
    last_token: torch.Tensor  # (1, 1)
    position: int  # the backbone position of the next input
    step: int = 0  # tokens generated so far (the original model's speech position)
    finished: bool = False
    logits: list[torch.Tensor] = field(default_factory=list)  # kept only when recording


# Voices whose conditioning keys/values are kept (~25 MB each for Turbo).
DEFAULT_PREFIX_CACHE_SIZE = 8

_KV = list[tuple[torch.Tensor, torch.Tensor]]


class T3Batch:
    def __init__(
        self,
        t3: Any,
        record_logits: bool = False,
        prefix_cache_size: int = DEFAULT_PREFIX_CACHE_SIZE,
    ):
        self.t3 = t3
        self.rows: list[_Row] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # (cache rows, length): 1 = real, 0 = padding
        self.record_logits = record_logits
        self._prefixes: OrderedDict[Hashable, _KV] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        self.prefix_hits = 0

    def __len__(self) -> int:
        return len(self.rows)

    def add(
        self,
        key: Hashable,
        t3_cond: Any,
        text_tokens: torch.Tensor,
        params: SamplingParams,
        generator: torch.Generator,
        cond_key: Hashable | None = None,
    ) -> int:
        """Prefill one stream on its own and add it; returns its first token (stop or -1:
        the stream is done). Streams with the same `cond_key` have the same `t3_cond` (None:
        not shared), whose prefill is then reused."""
        raise NotImplementedError

    def step(self) -> dict[Hashable, int]:
        """One token for every stream, {key: token}; stop or -1 means the stream is done."""
        raise NotImplementedError

    @property
    def keys(self) -> list[Hashable]:
        return [row.key for row in self.rows]

    def remove(self, key: Hashable) -> None:
        """Drop a stream (finished, cancelled, or starting its next text segment)."""
        index = self.keys.index(key)
        start = sum(r.width for r in self.rows[:index])
        width = self.rows[index].width
        del self.rows[index]
        if not self.rows:
            self._cache, self._mask = None, None
            return
        assert self._mask is not None
        keep = [i for i in range(self._mask.shape[0]) if not start <= i < start + width]
        keep_t = torch.tensor(keep, device=self._mask.device)
        self._mask = self._mask[keep_t]
        # Columns that are padding for every remaining row are dead weight.
        live = int(self._mask.any(dim=0).nonzero()[0])
        self._mask = self._mask[:, live:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[keep_t, :, live:]
            layer.values = layer.values[keep_t, :, live:]

    def _prefill(
        self, inputs: torch.Tensor, cond_length: int, cond_key: Hashable | None, **kwargs: Any
    ) -> Any:
        """The backbone over a new stream's prompt `inputs` (rows, length, dim), whose first
        `cond_length` positions are the voice conditioning; reuses that part's keys/values."""
        if cond_key is None or self._prefix_cache_size <= 0:
            return self.t3.tfmr(
                inputs_embeds=inputs, past_key_values=GrowingCache(), use_cache=True, **kwargs
            )
        key = (cond_key, inputs.shape[0], cond_length)
        prefix = self._prefixes.get(key)
        if prefix is None:
            out = self.t3.tfmr(
                inputs_embeds=inputs[:, :cond_length],
                past_key_values=GrowingCache(),
                use_cache=True,
            )
            # Exact-size copies: every stream's cache reallocates before writing past them.
            prefix = [(lay.keys.clone(), lay.values.clone()) for lay in out.past_key_values.layers]
            self._prefixes[key] = prefix
            while len(self._prefixes) > self._prefix_cache_size:
                self._prefixes.popitem(last=False)
        else:
            self._prefixes.move_to_end(key)
            self.prefix_hits += 1
        return self.t3.tfmr(
            inputs_embeds=inputs[:, cond_length:],
            past_key_values=GrowingCache.holding(prefix),
            use_cache=True,
            **kwargs,
        )

    def _join(self, row: _Row, cache: Any, length: int) -> None:
        device = row.last_token.device
        if self._cache is None:
            self._cache = cache
            self._mask = torch.ones(row.width, length, dtype=torch.long, device=device)
            self.rows.append(row)
            return
        assert self._mask is not None
        current = self._mask.shape[1]
        new_mask = torch.ones(row.width, length, dtype=torch.long, device=device)
        if length < current:
            _pad_left(cache, current - length)
            new_mask = F.pad(new_mask, (current - length, 0))
        elif length > current:
            _pad_left(self._cache, length - current)
            self._mask = F.pad(self._mask, (length - current, 0))
        for ours, theirs in zip(self._cache.layers, cache.layers, strict=True):
            ours.keys = torch.cat([ours.keys, theirs.keys], dim=0)
            ours.values = torch.cat([ours.values, theirs.values], dim=0)
        self._mask = torch.cat([self._mask, new_mask], dim=0)
        self.rows.append(row)

    def _forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One step for every cache row; the last hidden state of each."""
        assert self._mask is not None
        mask = F.pad(self._mask, (0, 1), value=1)
        out = self.t3.tfmr(
            inputs_embeds=inputs_embeds,
            past_key_values=self._cache,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
        )
        self._cache, self._mask = out.past_key_values, mask
        hidden: torch.Tensor = out[0]
        return hidden[:, -1:]

    def _sample(self, row: _Row, logits: torch.Tensor, processed: torch.Tensor) -> int:
        if self.record_logits:
            row.logits.append(logits.detach().clone())
        if torch.all(processed == -float("inf")):
            row.finished = True
            return -1
        token = torch.multinomial(F.softmax(processed, dim=-1), 1, generator=row.generator)
        row.history = torch.cat([row.history, token], dim=1)
        row.last_token = token
        row.step += 1
        if int(token) == self.t3.hp.stop_speech_token:
            row.finished = True
        return int(token)


def _pad_left(cache: Any, columns: int) -> None:
    for layer in cache.layers:
        layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
        layer.values = F.pad(layer.values, (0, 0, columns, 0))


class TurboBatch(T3Batch):
    @torch.inference_mode()
    def add(
        self,
        key: Hashable,
        t3_cond: Any,
        text_tokens: torch.Tensor,
        params: SamplingParams,
        generator: torch.Generator,
        cond_key: Hashable | None = None,
    ) -> int:
        """Prefill one stream and add it; returns its first token (stop = done)."""
        t3 = self.t3
        start = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
        embeds, _ = t3.prepare_input_embeds(
            t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start, cfg_weight=0.0
        )
        # The prompt is [conditioning, text, start token].
        cond_length = embeds.shape[1] - text_tokens.shape[1] - 1
        out = self._prefill(embeds, cond_length, cond_key)
        logits = t3.speech_head(out[0][:, -1:])[:, -1, :]
        row = _Row(key, params, generator, 1, start, start, position=embeds.shape[1])
        processors = turbo_processors(params)
        token = self._sample(row, logits, processors(start, logits))
        # Upstream's repetition penalty never sees the start token once decoding runs.
        row.history = row.history[:, 1:]
        self._join(row, out.past_key_values, embeds.shape[1])
        return token

    @torch.inference_mode()
    def step(self) -> dict[Hashable, int]:
        """One token for every stream: {key: token}; a stop token means the stream is done."""
        t3 = self.t3
        tokens = torch.cat([row.last_token for row in self.rows], dim=0)
        positions = torch.tensor([[row.position] for row in self.rows], device=tokens.device)
        hidden = self._forward(t3.speech_emb(tokens), positions)
        logits = t3.speech_head(hidden)[:, -1, :]
        result = {}
        for index, row in enumerate(self.rows):
            row.position += 1
            row_logits = logits[index : index + 1]
            processed = turbo_processors(row.params)(row.history, row_logits)  # type: ignore[arg-type]
            result[row.key] = self._sample(row, row_logits, processed)
        return result


class OriginalBatch(T3Batch):
    @torch.inference_mode()
    def add(
        self,
        key: Hashable,
        t3_cond: Any,
        text_tokens: torch.Tensor,
        params: SamplingParams,
        generator: torch.Generator,
        cond_key: Hashable | None = None,
    ) -> int:
        t3 = self.t3
        width = 2 if params.cfg_weight > 0.0 else 1
        text_tokens = text_tokens.reshape(1, -1).to(dtype=torch.long, device=t3.device)
        text_tokens = text_tokens.expand(width, -1)
        bos = torch.tensor([[t3.hp.start_speech_token]], dtype=torch.long, device=t3.device)
        embeds, _ = t3.prepare_input_embeds(
            t3_cond=t3_cond,
            text_tokens=text_tokens.clone(),
            speech_tokens=bos.expand(width, 1),
            cfg_weight=params.cfg_weight,
        )
        bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)
        inputs = torch.cat([embeds, bos_embed.expand(width, -1, -1)], dim=1)
        # The prompt is [conditioning, text, start token, start embedding]; the unconditional
        # row's text is zeroed, its conditioning is the same.
        cond_length = inputs.shape[1] - text_tokens.shape[1] - 2
        out = self._prefill(inputs, cond_length, cond_key, output_hidden_states=True)
        row = _Row(key, params, generator, width, bos, bos, position=inputs.shape[1])
        token = self._sample_guided(row, t3.speech_head(out.hidden_states[-1])[:, -1, :])
        self._join(row, out.past_key_values, inputs.shape[1])
        return token

    @torch.inference_mode()
    def step(self) -> dict[Hashable, int]:
        t3 = self.t3
        embeds, positions = [], []
        for row in self.rows:
            embed = t3.speech_emb(row.last_token) + t3.speech_pos_emb.get_fixed_embedding(row.step)
            embeds.append(embed.expand(row.width, -1, -1))
            positions.extend([[row.position]] * row.width)
        device = self.rows[0].last_token.device
        hidden = self._forward(torch.cat(embeds), torch.tensor(positions, device=device))
        logits = t3.speech_head(hidden)[:, -1, :]
        result, offset = {}, 0
        for row in self.rows:
            row.position += 1
            result[row.key] = self._sample_guided(row, logits[offset : offset + row.width])
            offset += row.width
        return result

    def _sample_guided(self, row: _Row, logits: torch.Tensor) -> int:
        params = row.params
        if row.width == 2:
            cond, uncond = logits[0:1], logits[1:2]
            cfg = torch.as_tensor(params.cfg_weight, device=cond.device, dtype=cond.dtype)
            logits = cond + cfg * (cond - uncond)
        ids = row.history
        processed = RepetitionPenaltyLogitsProcessor(penalty=float(params.repetition_penalty))(
            ids,
            logits,
        )
        if params.temperature != 1.0:
            processed = processed / params.temperature
        processed = MinPLogitsWarper(min_p=params.min_p)(ids, processed)  # type: ignore[arg-type]
        processed = TopPLogitsWarper(top_p=params.top_p)(ids, processed)
        return self._sample(row, logits, processed)
