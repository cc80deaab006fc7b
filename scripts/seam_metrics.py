"""How audible the joins of a streamed signal are, against offline decoding of the same tokens.

- log-mel spectral distance (dB) in +-40 ms around each join vs everywhere else: a seam shows
  up as extra distance at the joins;
- join energy ratio: RMS of the 20 ms after each join over the offline RMS there (a dropout,
  e.g. upstream's start trim applied at every chunk, gives ~0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.engine.types import SAMPLE_RATE, Audio

HOP = 240  # 10 ms frames
N_FFT = 1024
SEAM_HALF_WIDTH = int(0.040 * SAMPLE_RATE)
JOIN_RMS_WINDOW = int(0.020 * SAMPLE_RATE)


@dataclass(frozen=True)
class SeamFigures:
    seam_lsd_db: float
    body_lsd_db: float
    join_energy_ratio: float

    @property
    def seam_to_body(self) -> float:
        return self.seam_lsd_db / self.body_lsd_db if self.body_lsd_db > 0 else float("inf")


def _log_mel(audio: Audio) -> Audio:
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio.astype(np.float32), sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=80
    )
    return np.asarray(10.0 * np.log10(mel + 1e-8))


def seam_figures(streamed: Audio, offline: Audio, joins: list[int]) -> SeamFigures:
    """`joins`: sample offsets where one chunk ends and the next begins."""
    length = min(streamed.size, offline.size)
    a, b = _log_mel(streamed[:length]), _log_mel(offline[:length])
    per_frame = np.sqrt(np.mean((a - b) ** 2, axis=0))
    centres = np.arange(per_frame.size) * HOP
    near = np.zeros(per_frame.size, dtype=bool)
    for join in joins:
        near |= np.abs(centres - join) <= SEAM_HALF_WIDTH
    ratios = []
    for join in joins:
        window = slice(join, min(join + JOIN_RMS_WINDOW, length))
        ref = float(np.sqrt(np.mean(offline[window] ** 2)))
        got = float(np.sqrt(np.mean(streamed[window] ** 2)))
        if ref > 1e-6:
            ratios.append(got / ref)
    return SeamFigures(
        seam_lsd_db=float(per_frame[near].mean()) if near.any() else 0.0,
        body_lsd_db=float(per_frame[~near].mean()) if (~near).any() else 0.0,
        join_energy_ratio=min(ratios) if ratios else 1.0,
    )


def join_offsets(chunk_lengths: list[int]) -> list[int]:
    """Sample offsets of the joins between consecutive chunks (empty chunks make none)."""
    offsets, position = [], 0
    for size in chunk_lengths[:-1]:
        position += size
        if size:
            offsets.append(position)
    return sorted(set(offsets))
