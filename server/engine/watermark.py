"""Perth watermarking of a stream, chunk by chunk, as if the whole signal were marked at once.

Perth works on a 32 kHz STFT (2048-sample window): marking each chunk on its own would create
edge effects at every join. Each chunk is marked together with some audio before it (already
sent) and after it (the streamer's held-back tail), and only the chunk's own samples are kept.

Perth's network runs on the model's device, on the device thread, in the chunk's turn. Its
resampling to 32 kHz and back (librosa) stays on the CPU either way. The alternative, marking
on another thread (or the CPU) while the device computes the next chunk, would hide its cost
but not remove it: it competes with the device thread for the same CPU cores (all of them on a
CPU worker; on a GPU worker the few it gets: `--threads`), it adds a hand-off and a queue to
every chunk, and a chunk's marking must finish before the chunk is sent anyway. Its cost is
small next to the flow and the vocoder: on our 2-core CPU ~21 ms for a 2 s chunk (with its
0.66 s of context), ~1.4% of that chunk's token-to-wave time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from server.engine.types import SAMPLE_RATE, Audio

LEFT_CONTEXT_SAMPLES = SAMPLE_RATE // 2  # 0.5 s


def new_watermarker(device: torch.device | str = "cpu") -> Any:
    """Perth's implicit watermarker, its network on `device` (the model's); it takes and
    gives float32 numpy audio whatever the device."""
    import perth

    marker = perth.PerthImplicitWatermarker(device=str(device))
    if marker is None:  # resemble-perth degrades to None without pkg_resources
        raise RuntimeError("Perth watermarker unavailable: install setuptools<81")
    marker.perth_net.eval()
    return marker


def _apply(marker: Any, signal: Audio) -> Audio:
    # Perth runs its network with autograd on; nothing here needs gradients.
    with torch.inference_mode():
        marked = marker.apply_watermark(signal, sample_rate=SAMPLE_RATE)
    return np.asarray(marked, dtype=np.float32)


class StreamWatermarker:
    def __init__(self, marker: Any):
        self._marker = marker
        self._history = np.zeros(0, dtype=np.float32)

    def mark(self, chunk: Audio, lookahead: Audio | None) -> Audio:
        if chunk.size == 0:
            return chunk
        left = self._history[-LEFT_CONTEXT_SAMPLES:]
        right = lookahead if lookahead is not None else np.zeros(0, dtype=np.float32)
        signal = np.concatenate([left, chunk, right]).astype(np.float32)
        marked = _apply(self._marker, signal)
        self._history = np.concatenate([left, chunk])
        return marked[left.size : left.size + chunk.size].astype(np.float32)


def mark_whole(marker: Any, audio: Audio) -> Audio:
    if audio.size == 0:
        return audio
    return _apply(marker, audio)
