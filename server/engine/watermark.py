"""Perth watermarking of a stream, chunk by chunk, as if the whole signal were marked at once.

Perth works on a 32 kHz STFT (2048-sample window): marking each chunk on its own would create
edge effects at every join. Each chunk is marked together with some audio before it (already
sent) and after it (the streamer's held-back tail), and only the chunk's own samples are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from server.engine.types import SAMPLE_RATE, Audio

LEFT_CONTEXT_SAMPLES = SAMPLE_RATE // 2  # 0.5 s


def new_watermarker() -> Any:
    import perth

    marker = perth.PerthImplicitWatermarker()
    if marker is None:  # resemble-perth degrades to None without pkg_resources
        raise RuntimeError("Perth watermarker unavailable: install setuptools<81")
    return marker


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
        marked = np.asarray(self._marker.apply_watermark(signal, sample_rate=SAMPLE_RATE))
        self._history = np.concatenate([left, chunk])
        return marked[left.size : left.size + chunk.size].astype(np.float32)


def mark_whole(marker: Any, audio: Audio) -> Audio:
    if audio.size == 0:
        return audio
    return np.asarray(marker.apply_watermark(audio, sample_rate=SAMPLE_RATE), dtype=np.float32)
