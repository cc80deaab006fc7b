"""Text preparation: upstream's punctuation clean-up and sentence-level splitting of long texts."""

from __future__ import annotations

import re

# T3 was trained on utterances of a few sentences; beyond a few hundred characters it tends to
# skip or repeat words, so longer texts are synthesised sentence group by sentence group.
DEFAULT_MAX_SEGMENT_CHARS = 300

# Where sentences end, in every script the models speak. Stops of scripts written with spaces
# need white space after them ("3.5", "e.g." and "Node.js" go on); Chinese and Japanese put
# none, so their full-width stops end a sentence by themselves.
_CLOSERS = "\"'”’)\\]»›」』）】》〉〕］｝"
_SPACED_STOPS = ".!?;…‼⁇⁈⁉\u037e؟؛۔।॥"  # U+037E: the Greek question mark
_WIDE_STOPS = "。！？｡；"
# The full-width full stop also ends a Japanese sentence unspaced, but is a decimal point
# between full-width digits (３．５).
_WIDE_POINT = "．"
_STOPS = _SPACED_STOPS + _WIDE_STOPS + _WIDE_POINT
_DIGITS = "0-9０-９"
# Ideographs and kana: a stop typed half-width right before them ("你好!我很好") still ends
# the sentence.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"

SENTENCE_END = re.compile(
    # A run of stops (the text goes on after the match's end), possibly closed by quotes or
    # brackets, then white space.
    rf"[{_STOPS}]*[{_WIDE_STOPS}][{_STOPS}]*[{_CLOSERS}]*\s*"
    rf"|[{_STOPS}]*{_WIDE_POINT}[{_STOPS}]*[{_CLOSERS}]*(?:\s+|(?=[^\s{_DIGITS}]))"
    rf"|[{_STOPS}]+[{_CLOSERS}]*(?:\s+|(?=[{_CJK}]))"
)
_CLAUSE_END = re.compile(r"[,:—–\-،]\s+|[，、：]\s*")


def split_into_segments(text: str, max_chars: int = DEFAULT_MAX_SEGMENT_CHARS) -> list[str]:
    """Split at sentence ends (then clause ends, then spaces) into segments of at most
    `max_chars`, merging short sentences so each segment is as long as allowed. The text
    between two segments' ends is kept as it was (one space, or none between Chinese or
    Japanese sentences)."""
    text = " ".join(text.split())
    if not text:
        return []
    pieces: list[str] = []  # each with the white space after it: together they are `text`
    for sentence in _cut(text, SENTENCE_END):
        pieces.extend(_split_long(sentence, max_chars))
    return [segment.strip() for segment in _merge(pieces, max_chars)]


def split_into_sentences(text: str) -> list[str]:
    """The sentences of `text`, as `split_into_segments` sees them."""
    return [s.strip() for s in _cut(" ".join(text.split()), SENTENCE_END)]


def _cut(text: str, ends: re.Pattern[str]) -> list[str]:
    """`text` cut after each match of `ends`; the pieces joined give `text` again."""
    pieces, start = [], 0
    for end in ends.finditer(text):
        if end.end() > start:
            pieces.append(text[start : end.end()])
            start = end.end()
    return [*pieces, text[start:]] if start < len(text) else pieces


def _merge(pieces: list[str], max_chars: int) -> list[str]:
    """Join consecutive pieces as long as the result stays within `max_chars`."""
    merged: list[str] = []
    for piece in pieces:
        if merged and (not piece.strip() or len((merged[-1] + piece).strip()) <= max_chars):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence.strip()) <= max_chars:
        return [sentence]
    parts: list[str] = []
    for clause in _cut(sentence, _CLAUSE_END):
        while len(clause.strip()) > max_chars:
            cut = clause.rfind(" ", 0, max_chars + 1)
            cut = cut + 1 if cut > 0 else max_chars  # no space (Chinese, Japanese): anywhere
            parts.append(clause[:cut])
            clause = clause[cut:]
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
