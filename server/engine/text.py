"""Text preparation: upstream's punctuation clean-up and sentence-level splitting of long texts."""

from __future__ import annotations

import re

# T3 was trained on utterances of a few sentences; beyond a few hundred characters it tends to
# skip or repeat words, so longer texts are synthesised sentence group by sentence group.
DEFAULT_MAX_SEGMENT_CHARS = 300

_SENTENCE_END = re.compile(r"(?<=[.!?;…])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,:—–-])\s+")


def split_into_segments(text: str, max_chars: int = DEFAULT_MAX_SEGMENT_CHARS) -> list[str]:
    """Split at sentence ends (then clause ends, then spaces) into segments of at most
    `max_chars`, merging short sentences so each segment is as long as allowed."""
    text = " ".join(text.split())
    if not text:
        return []
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces.extend(_split_long(sentence.strip(), max_chars))
    return _merge(pieces, max_chars)


def _merge(pieces: list[str], max_chars: int) -> list[str]:
    """Join consecutive pieces with spaces as long as the result stays within `max_chars`."""
    merged: list[str] = []
    for piece in filter(None, pieces):
        if merged and len(merged[-1]) + 1 + len(piece) <= max_chars:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        while len(clause) > max_chars:
            cut = clause.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            parts.append(clause[:cut].strip())
            clause = clause[cut:].strip()
        parts.append(clause)
    return _merge(parts, max_chars)


def normalize_punctuation(text: str) -> str:
    """Upstream's `punc_norm` (identical in tts.py and tts_turbo.py)."""
    from chatterbox.tts_turbo import punc_norm

    return str(punc_norm(text))


# Speech runs at roughly 10-20 characters per second and S3 tokens at 25 per second; 2.5
# tokens per character plus a margin covers slow, expressive speech, and ends a stream whose
# model never says EOS (a hallucinating tail, or random test weights) in bounded time.
TOKENS_PER_CHAR = 2.5
TOKEN_MARGIN = 40


def default_token_cap(
    segment: str,
    model_max: int,
    tokens_per_char: float = TOKENS_PER_CHAR,
    margin: int = TOKEN_MARGIN,
) -> int:
    return min(model_max, int(len(segment) * tokens_per_char) + margin)
