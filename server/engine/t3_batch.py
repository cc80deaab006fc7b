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
original and multilingual models, whose classifier-free guidance puts two rows (conditional
and unconditional) in the batch per stream; for the multilingual model each stream also runs
upstream's alignment checks (`alignment.py`) on its own conditional row. The per-stream
arithmetic mirrors `token_stream.py`, which mirrors upstream.

A step never waits on the device until its end: what changes from step to step (positions,
last tokens, the speech positions, the tokens each repetition penalty sees, the alignment
checks' state) is kept in tensors there, rebuilt only when streams join or leave, and the
sampled tokens, with the few flags the host needs, come back in one transfer
(`batch_sampling.py` samples every stream at once). The host keeps its own copy of what it
needs to arrange the batch (each stream's position and last token), which it can always
compute without asking the device.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from server.engine.alignment import AlignmentGuard, aligned_attention
from server.engine.batch_sampling import Processing, draw, original_processing, turbo_processing
from server.engine.kv_cache import GrowingCache
from server.engine.sampling import SamplingParams


@dataclass
class _Row:
    """One stream (one or two cache rows): what the host knows of it. Its tensors are rows
    of the batch's."""

    key: Hashable
    params: SamplingParams
    generator: torch.Generator
    width: int  # cache rows: 2 with classifier-free guidance, else 1
    position: int  # the backbone position of the next input (= its real cache columns)
    last_token: int  # sampled last (the start token at first)
    step: int = 0  # tokens generated so far (the original model's speech position)
    finished: bool = False
    guard: AlignmentGuard | None = None  # the multilingual model's alignment checks
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
        self.record_logits = record_logits
        self._prefixes: OrderedDict[Hashable, _KV] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        self.prefix_hits = 0
        # On the device, a row per cache row or per stream (None while the batch is empty).
        self._positions: Any = None  # (cache rows, 1) long: the next input's position
        self._tokens: Any = None  # (streams, 1) long: the last token
        self._steps: Any = None  # (streams, 1) long: tokens generated so far
        self._seen: Any = None  # (streams, vocab) bool: what the repetition penalty sees
        # Streams with equal sampling parameters share each processor call; their indices
        # (None: one group, every stream in order).
        self._groups: list[tuple[Processing, torch.Tensor | None]] = []

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

    def _processing(self, params: SamplingParams) -> Processing:
        raise NotImplementedError

    @property
    def keys(self) -> list[Hashable]:
        return [row.key for row in self.rows]

    def remove(self, key: Hashable) -> None:
        """Drop a stream (finished, cancelled, or starting its next text segment)."""
        index = self.keys.index(key)
        start = sum(r.width for r in self.rows[:index])
        stop = start + self.rows[index].width
        del self.rows[index]
        if not self.rows:
            self._cache = self._positions = self._tokens = self._steps = self._seen = None
            self._groups = []
            return
        # Columns that are padding for every remaining row are dead weight.
        live = self._cache.get_seq_length() - max(row.position for row in self.rows)
        for layer in self._cache.layers:
            layer.keys = _without(layer.keys[:, :, live:], start, stop)
            layer.values = _without(layer.values[:, :, live:], start, stop)
        self._positions = _without(self._positions, start, stop)
        self._tokens = _without(self._tokens, index, index + 1)
        self._steps = _without(self._steps, index, index + 1)
        self._seen = _without(self._seen, index, index + 1)
        self._arrange()

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

    def _first_token(
        self,
        row: _Row,
        logits: torch.Tensor,
        seen: torch.Tensor,
        report: torch.Tensor | None = None,
    ) -> tuple[int, torch.Tensor]:
        """A new stream's first token from its prompt's `logits` (1, vocab) and `seen` (the
        tokens its repetition penalty sees), as an int and (1, 1) on the device. `report`:
        its alignment checks' (`AlignmentGuard.step_on_device`)."""
        processed = self._processing(row.params)(logits, seen)
        if self.record_logits:
            row.logits.append(logits.detach().clone())
        drawn, empty = draw(processed, [row.generator])
        packed = torch.where(empty, -1, drawn)
        if report is not None:
            packed = torch.cat([packed, report.view(1, -1)], dim=1)
        token, *flags = packed.tolist()[0]
        self._settle(row, token, flags)
        return token, drawn

    def _join(
        self, row: _Row, cache: Any, length: int, token: torch.Tensor, seen: torch.Tensor
    ) -> None:
        """Add a prefilled stream: its `cache` of `length` columns, last `token` (1, 1) and
        `seen` (1, vocab)."""
        positions = torch.full((row.width, 1), length, dtype=torch.long, device=token.device)
        steps = torch.full((1, 1), row.step, dtype=torch.long, device=token.device)
        if self._cache is None:
            self._cache = cache
            self._positions, self._tokens, self._steps, self._seen = positions, token, steps, seen
        else:
            current = self._cache.get_seq_length()
            if length < current:
                _pad_left(cache, current - length)
            elif length > current:
                _pad_left(self._cache, length - current)
            for ours, theirs in zip(self._cache.layers, cache.layers, strict=True):
                ours.keys = torch.cat([ours.keys, theirs.keys], dim=0)
                ours.values = torch.cat([ours.values, theirs.values], dim=0)
            self._positions = torch.cat([self._positions, positions])
            self._tokens = torch.cat([self._tokens, token])
            self._steps = torch.cat([self._steps, steps])
            self._seen = torch.cat([self._seen, seen])
        self.rows.append(row)
        self._arrange()

    def _arrange(self) -> None:
        """Rebuild what depends on which streams are in the batch (they joined or left)."""
        by_params: dict[SamplingParams, list[int]] = {}
        for index, row in enumerate(self.rows):
            by_params.setdefault(row.params, []).append(index)
        if len(by_params) == 1:
            self._groups = [(self._processing(self.rows[0].params), None)]
            return
        device = self._tokens.device
        self._groups = [
            (self._processing(params), torch.tensor(indices, device=device))
            for params, indices in by_params.items()
        ]

    def _forward(
        self, inputs_embeds: torch.Tensor, layer_inputs: bool = False
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """One step for every cache row: the last hidden state of each, with `layer_inputs`
        every layer's input (`output_hidden_states`; else None), and the positions of this
        step's inputs, (cache rows, 1)."""
        columns = self._cache.get_seq_length()
        positions = self._positions
        mask = None
        if any(row.position < columns for row in self.rows):  # some rows are left-padded
            mask = self._padding_mask(positions, columns + 1)
        out = self.t3.tfmr(
            inputs_embeds=inputs_embeds,
            past_key_values=self._cache,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            output_hidden_states=layer_inputs,
        )
        self._cache = out.past_key_values
        self._positions = positions + 1
        for row in self.rows:
            row.position += 1
        hidden: torch.Tensor = out[0]
        return hidden[:, -1:], out.hidden_states if layer_inputs else None, positions

    def _padding_mask(self, positions: torch.Tensor, columns: int) -> torch.Tensor:
        """Which of the `columns` (this step's included) each cache row attends to: its own,
        the last `position + 1`. The mask transformers would make from the same (rows,
        columns) 0/1 mask, made here, because transformers checks on the host whether a 2-D
        mask pads anything (for SDPA: skipping a mask that does not)."""
        first: torch.Tensor = columns - 1 - positions
        real = torch.arange(columns, device=positions.device) >= first
        if self.t3.tfmr.config._attn_implementation == "sdpa":
            return real[:, None, None, :]  # (rows, heads, queries, columns): True attends
        return real.long()

    def _sample(
        self, logits: torch.Tensor, reports: torch.Tensor | None = None
    ) -> dict[Hashable, int]:
        """Every stream's next token from its `logits` (streams, vocab): the step's one
        transfer to the host, with the streams' alignment `reports` (streams, 3), if any."""
        if len(self._groups) == 1:
            process = self._groups[0][0]
            processed = process(logits, self._seen)
        else:
            processed = torch.empty_like(logits)
            for process, members in self._groups:
                assert members is not None
                seen = self._seen.index_select(0, members)
                processed.index_copy_(0, members, process(logits.index_select(0, members), seen))
        if self.record_logits:
            for index, row in enumerate(self.rows):
                row.logits.append(logits[index : index + 1].detach().clone())
        drawn, empty = draw(processed, [row.generator for row in self.rows])
        # A stream with nothing to sample from keeps its state (it is done).
        tokens = torch.where(empty, self._tokens, drawn)
        self._seen.scatter_(1, tokens, True)
        self._tokens = tokens
        self._steps = self._steps + (~empty).long()
        packed = torch.where(empty, -1, drawn)
        if reports is not None:
            packed = torch.cat([packed, reports], dim=1)
        result = {}
        for row, (token, *flags) in zip(self.rows, packed.tolist(), strict=True):
            self._settle(row, token, flags)
            result[row.key] = token
        return result

    def _settle(self, row: _Row, token: int, report: list[int]) -> None:
        """The host's part of a stream's step, once its token is back."""
        if token < 0:
            row.finished = True
        else:
            row.last_token = token
            row.step += 1
            if token == self.t3.hp.stop_speech_token:
                row.finished = True
        if row.guard is not None:
            row.guard.settle(report)


def _pad_left(cache: Any, columns: int) -> None:
    for layer in cache.layers:
        layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
        layer.values = F.pad(layer.values, (0, 0, columns, 0))


def _without(tensor: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """`tensor` without rows `start` to `stop` (exclusive), a new tensor."""
    return torch.cat([tensor[:start], tensor[stop:]])


def _one_hot(token: torch.Tensor, vocab: int) -> torch.Tensor:
    """(1, vocab) bool: `token` (1, 1) marked."""
    return torch.zeros(1, vocab, dtype=torch.bool, device=token.device).scatter_(1, token, True)


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
        start_token = t3.hp.start_speech_token
        start = start_token * torch.ones_like(text_tokens[:, :1])
        embeds, _ = t3.prepare_input_embeds(
            t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start, cfg_weight=0.0
        )
        # The prompt is [conditioning, text, start token].
        cond_length = embeds.shape[1] - text_tokens.shape[1] - 1
        out = self._prefill(embeds, cond_length, cond_key)
        logits = t3.speech_head(out[0][:, -1:])[:, -1, :].float()
        length = embeds.shape[1]
        row = _Row(key, params, generator, 1, position=length, last_token=start_token)
        vocab = logits.shape[-1]
        token, drawn = self._first_token(row, logits, _one_hot(start, vocab))
        # Upstream's repetition penalty never sees the start token once decoding runs.
        if token >= 0:
            self._join(row, out.past_key_values, length, drawn, _one_hot(drawn, vocab))
        else:
            seen = torch.zeros(1, vocab, dtype=torch.bool, device=start.device)
            self._join(row, out.past_key_values, length, start, seen)
        return token

    @torch.inference_mode()
    def step(self) -> dict[Hashable, int]:
        """One token for every stream: {key: token}; a stop token means the stream is done."""
        t3 = self.t3
        hidden, _, _ = self._forward(t3.speech_emb(self._tokens))
        return self._sample(t3.speech_head(hidden)[:, -1, :].float())

    def _processing(self, params: SamplingParams) -> Processing:
        return turbo_processing(params)


class OriginalBatch(T3Batch):
    def __init__(
        self,
        t3: Any,
        record_logits: bool = False,
        prefix_cache_size: int = DEFAULT_PREFIX_CACHE_SIZE,
        alignment_checks: bool = False,
    ):
        """`alignment_checks`: upstream's multilingual end-of-speech checks, per stream."""
        super().__init__(t3, record_logits, prefix_cache_size)
        self.alignment_checks = alignment_checks
        # Which cache rows each stream reads (the same twice without guidance), the stream
        # of each cache row, and each stream's guidance weight (streams, 1).
        self._cond_rows: Any = None
        self._uncond_rows: Any = None
        self._row_streams: Any = None
        self._cfg: Any = None
        self._guided: Any = None  # (streams, 1) bool
        self._widths: set[int] = set()

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
        start_token = t3.hp.start_speech_token
        bos = torch.tensor([[start_token]], dtype=torch.long, device=t3.device)
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
        length = inputs.shape[1]
        row = _Row(key, params, generator, width, position=length, last_token=start_token)
        logits = t3.speech_head(out.hidden_states[-1])[:, -1, :].float()
        if width == 2:
            cfg = torch.full((1, 1), params.cfg_weight, dtype=logits.dtype, device=logits.device)
            logits = _guide(logits[0:1], logits[1:2], cfg)
        report = None
        if self.alignment_checks:
            text_end = cond_length + text_tokens.shape[1]
            row.guard = AlignmentGuard(cond_length, text_end, t3.hp.stop_speech_token)
            # Upstream reads the two start positions' rows of the prompt's attention first.
            starts = torch.arange(length - 2, length, device=t3.device)
            attention = aligned_attention(t3, out.hidden_states, out.past_key_values, 0, 0, starts)
            logits, report = row.guard.step_on_device(attention, logits, row.last_token)
        seen = _one_hot(bos, logits.shape[-1])
        token, drawn = self._first_token(row, logits, seen, report)
        if token >= 0:
            self._join(row, out.past_key_values, length, drawn, seen.scatter(1, drawn, True))
        else:
            self._join(row, out.past_key_values, length, bos, seen)
        return token

    @torch.inference_mode()
    def step(self) -> dict[Hashable, int]:
        t3 = self.t3
        embeds = t3.speech_emb(self._tokens) + t3.speech_pos_emb.get_fixed_embedding(self._steps)
        if self._widths != {1}:
            embeds = embeds.index_select(0, self._row_streams)
        guarded = self.alignment_checks
        hidden, layer_inputs, positions = self._forward(embeds, layer_inputs=guarded)
        logits = self._guided_logits(t3.speech_head(hidden)[:, -1, :].float())
        if not guarded:
            return self._sample(logits)
        columns = self._cache.get_seq_length()
        edited, reports, offset = [], [], 0
        for index, row in enumerate(self.rows):
            assert row.guard is not None
            # The row's sequence is its last `position` columns (left padding before).
            start = columns - row.position
            here = positions[offset]
            attention = aligned_attention(t3, layer_inputs, self._cache, offset, start, here)
            row_logits = logits[index : index + 1]
            row_logits, report = row.guard.step_on_device(attention, row_logits, row.last_token)
            edited.append(row_logits)
            reports.append(report)
            offset += row.width
        return self._sample(torch.cat(edited), torch.stack(reports))

    def _processing(self, params: SamplingParams) -> Processing:
        return original_processing(params)

    def _arrange(self) -> None:
        super()._arrange()
        cond: list[int] = []
        uncond: list[int] = []
        streams: list[int] = []
        for index, row in enumerate(self.rows):
            cond.append(len(streams))
            uncond.append(len(streams) + row.width - 1)
            streams.extend([index] * row.width)
        device = self._tokens.device
        rows = torch.tensor(cond + uncond + streams, device=device)
        count = len(self.rows)
        self._cond_rows, self._uncond_rows = rows[:count], rows[count : 2 * count]
        self._row_streams = rows[2 * count :]
        self._guided = (self._uncond_rows != self._cond_rows).view(-1, 1)
        weights = [[row.params.cfg_weight] for row in self.rows]
        self._cfg = torch.tensor(weights, dtype=torch.float32, device=device)
        self._widths = {row.width for row in self.rows}

    def _guided_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Each stream's logits (streams, vocab) from its cache rows' (classifier-free
        guidance where it has two)."""
        if self._widths == {1}:
            return logits
        cond = logits.index_select(0, self._cond_rows)
        guided = _guide(cond, logits.index_select(0, self._uncond_rows), self._cfg)
        if self._widths == {2}:
            return guided
        return torch.where(self._guided, guided, cond)


def _guide(cond: torch.Tensor, uncond: torch.Tensor, cfg: torch.Tensor) -> torch.Tensor:
    return cond + cfg * (cond - uncond)
