"""Upstream 0.1.7's attention-based end-of-speech checks for the multilingual model, per stream.

The multilingual T3 learned to align speech with text in a few attention heads. Upstream's
`AlignmentStreamAnalyzer` (chatterbox/models/t3/inference/alignment_stream_analyzer.py) reads
those heads' attention over the text at every step and edits the logits: it suppresses the
stop token while the alignment is short of the text's end, and forces it on a long tail on the
last tokens, on attention returning to earlier text, or on a token repeated. Its decisions
are reproduced here exactly; how it gets the attention is not:

- upstream hooks the three layers' attention modules (new hooks on every call, never removed)
  and switches the whole backbone to eager attention, which computes every head's weights in
  every layer: here only the three heads are computed, from the layer inputs the forward
  returns anyway and the keys it cached, while the backbone keeps its fast attention kernel;
- upstream reads batch row 0 only: here each stream reads its own conditional row, so the
  checks run per stream inside a batched step;
- upstream copies each step's attention to the host and decides there: here the decisions
  are tensors on the device, and the little the host must know (whether the alignment has
  completed) comes back with the step's sampled tokens, in the batch's one transfer.

Upstream's later releases drop the checks; `EngineConfig.alignment_checks` turns them off.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import torch

logger = logging.getLogger(__name__)

# (layer, head): upstream's LLAMA_ALIGNED_HEADS, in its order (their maps are averaged).
ALIGNED_HEADS: Final = ((12, 15), (13, 11), (9, 2))
# How upstream forces or forbids a token (±2**15 is safe for every float type of 16 bits up).
FORCE: Final = 2**15
# The heuristics' thresholds, upstream's.
TEXT_END_MARGIN: Final = 3  # the alignment within this many text tokens of the end: complete
MIN_TEXT_FOR_EOS_SUPPRESSION: Final = 5  # shorter texts never have the stop token suppressed
LONG_TAIL_FRAMES: Final = 5  # attention on the last tokens after completion (5 frames: 200 ms)
REPETITION_MASS: Final = 5  # attention on earlier text after completion
RECENT_TOKENS: Final = 8
# Alignment rows allocated at first (a row per token; the buffer doubles when full).
MIN_ALIGNMENT_ROWS: Final = 64


def aligned_attention(
    t3: Any,
    hidden_states: tuple[torch.Tensor, ...],
    cache: Any,
    row: int,
    key_start: int,
    positions: torch.Tensor,
) -> torch.Tensor:
    """The aligned heads' mean attention, (queries, keys), of one cache row after a forward.

    `hidden_states`: the forward's per-layer inputs (`output_hidden_states`); its last
    `len(positions)` inputs of `row` are the queries, at those backbone positions. `cache`:
    the KV cache after the forward, whose columns from `key_start` on are this row's sequence
    (earlier ones are another stream's padding). The weights are eager attention's, causal.
    """
    backbone = t3.tfmr
    queries = positions.numel()
    maps = []
    for layer_index, head in ALIGNED_HEADS:
        layer = backbone.layers[layer_index]
        attention = layer.self_attn
        x = layer.input_layernorm(hidden_states[layer_index][row : row + 1, -queries:])
        query = attention.q_proj(x).view(1, queries, -1, attention.head_dim)[:, :, head]
        cos, sin = backbone.rotary_emb(x, positions.view(1, -1))
        query = query * cos + _rotate_half(query) * sin  # Llama's rotary embedding
        kv_head = head // attention.num_key_value_groups
        keys = cache.layers[layer_index].keys[row, kv_head, key_start:]  # (keys, head_dim)
        scores = torch.matmul(query[0], keys.transpose(0, 1)) * attention.scaling
        key_positions = torch.arange(keys.shape[0], device=keys.device)
        future = key_positions[None, :] > positions.view(-1, 1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        maps.append(torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype))
    return torch.stack(maps).mean(dim=0)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    # transformers' `rotate_half` (untyped there).
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class AlignmentGuard:
    """One stream's alignment state and upstream's logit edits (`AlignmentStreamAnalyzer.step`).

    The state that decides the edits stays on the attention's device, so a batched step can
    run every stream's checks without waiting on the device: `step_on_device` edits the logits
    and returns a report, which the caller reads back with whatever else it transfers and hands
    to `settle` before the next step. `step` does both at once (one stream on its own).
    Upstream also tracks a "false start", which no decision reads: it is left out."""

    def __init__(self, text_start: int, text_end: int, stop_token: int):
        """The text's tokens are backbone positions `text_start` to `text_end` (exclusive)."""
        self.text_start, self.text_end = text_start, text_end
        self.stop_token = stop_token
        self.frame = 0
        self.frames = 0  # rows of the alignment (the first step adds two)
        self.completed_at: int | None = None
        self.recent_tokens: list[int] = []
        # (rows, text tokens) float32 with room to spare; the first `frames` rows are used.
        self._alignment: torch.Tensor | None = None
        self._text_position: torch.Tensor | None = None  # 0-dim long
        self._token_repetition = False

    @property
    def alignment(self) -> torch.Tensor:
        """(frames, text tokens): each step's attention over the text, masked as upstream's."""
        if self._alignment is None:
            return torch.zeros(0, self.text_end - self.text_start)
        return self._alignment[: self.frames]

    def step(self, attention: torch.Tensor, logits: torch.Tensor, last_token: int) -> torch.Tensor:
        """`logits` (1, vocab) edited for the next token. `attention`: `aligned_attention` of
        the forward that produced them (the first: the start tokens' two rows); `last_token`:
        the token sampled before (the start token at first)."""
        logits, report = self.step_on_device(attention, logits, last_token)
        self.settle(report.tolist())
        return logits

    def step_on_device(
        self, attention: torch.Tensor, logits: torch.Tensor, last_token: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`step` without reading anything back: the edited logits and the step's report,
        (3,) long, for `settle`."""
        text_length = self.text_end - self.text_start
        chunk = attention[:, self.text_start : self.text_end].clone()
        chunk[:, self.frame + 1 :] = 0  # upstream's monotonic mask: no text ahead of the frame
        self._append(chunk)

        position = chunk[-1].argmax()
        if self._text_position is None:
            self._text_position = torch.zeros_like(position)
        jump = position - self._text_position  # a jump further than upstream allows is ignored
        self._text_position = torch.where((jump > -4) & (jump < 7), position, self._text_position)
        no = torch.zeros_like(position, dtype=torch.bool)
        # Whether the alignment completes on this step; `settle` records where.
        completes = no
        long_tail = alignment_repetition = no
        if self.completed_at is None:
            completes = self._text_position >= text_length - TEXT_END_MARGIN
        else:
            # The frames since completion: none yet on the step it completes on.
            since = self.alignment[self.completed_at :]
            long_tail = since[:, -3:].sum(dim=0).max() >= LONG_TAIL_FRAMES
            # Upstream crashes here on texts of 5 tokens or fewer (an empty maximum): none of
            # their text lies before the last 5, so there is nothing to return to.
            earlier = since[:, :-5]
            if earlier.shape[1] > 0:
                alignment_repetition = earlier.max(dim=1).values.sum() > REPETITION_MASS

        self.recent_tokens = [*self.recent_tokens, last_token][-RECENT_TOKENS:]
        self._token_repetition = (
            len(self.recent_tokens) >= 3 and self.recent_tokens[-1] == self.recent_tokens[-2]
        )

        if text_length > MIN_TEXT_FOR_EOS_SUPPRESSION:
            short = position < text_length - TEXT_END_MARGIN
            logits = logits.clone()
            logits[..., self.stop_token] = torch.where(
                short, -float(FORCE), logits[..., self.stop_token]
            )
        if self._token_repetition or self.completed_at is not None:
            forced = torch.full_like(logits, -float(FORCE))
            forced[..., self.stop_token] = FORCE
            if self._token_repetition:
                logits = forced
            else:
                logits = torch.where(long_tail | alignment_repetition, forced, logits)
        self.frame += 1
        return logits, torch.stack((completes, long_tail, alignment_repetition)).long()

    def settle(self, report: list[int]) -> None:
        """The report of the last `step_on_device`, read back."""
        completes, long_tail, alignment_repetition = report
        if completes and self.completed_at is None:
            self.completed_at = self.frames
        if long_tail or alignment_repetition or self._token_repetition:
            logger.debug(
                "forcing the stop token: long_tail=%s alignment_repetition=%s token_repetition=%s",
                bool(long_tail),
                bool(alignment_repetition),
                self._token_repetition,
            )

    def _append(self, chunk: torch.Tensor) -> None:
        rows = chunk.shape[0]
        needed = self.frames + rows
        if self._alignment is None or needed > self._alignment.shape[0]:
            grown = torch.empty(
                max(needed * 2, MIN_ALIGNMENT_ROWS),
                chunk.shape[1],
                dtype=torch.float32,
                device=chunk.device,
            )
            if self._alignment is not None:
                grown[: self.frames] = self._alignment[: self.frames]
            self._alignment = grown
        self._alignment[self.frames : needed] = chunk
        self.frames = needed
