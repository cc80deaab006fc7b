"""The multilingual model's text tokens: upstream 0.1.7's `MTLTokenizer`, offline.

Text is lower-cased and NFKD-normalised, rewritten by its language's front-end
(`text_front_ends.py`), prefixed with the language's token (`[de]`), its spaces spelled
`[SPACE]`, and encoded with the checkpoint's grapheme tokenizer, exactly as upstream does.
Upstream's constructor downloads the Cangjie table (and pkuseg's model) even for a local
checkpoint; this one reads everything from the checkpoint directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from unicodedata import normalize

import torch

from server.engine.text_front_ends import FrontEnds, load_front_ends

TOKENIZER_FILE: Final = "grapheme_mtl_merged_expanded_v1.json"
START_TEXT: Final = "[START]"
STOP_TEXT: Final = "[STOP]"
SPACE: Final = "[SPACE]"

# Upstream's SUPPORTED_LANGUAGES (chatterbox/mtl_tts.py), ISO 639-1 code -> name.
MULTILINGUAL_LANGUAGES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ar": "Arabic",
        "da": "Danish",
        "de": "German",
        "el": "Greek",
        "en": "English",
        "es": "Spanish",
        "fi": "Finnish",
        "fr": "French",
        "he": "Hebrew",
        "hi": "Hindi",
        "it": "Italian",
        "ja": "Japanese",
        "ko": "Korean",
        "ms": "Malay",
        "nl": "Dutch",
        "no": "Norwegian",
        "pl": "Polish",
        "pt": "Portuguese",
        "ru": "Russian",
        "sv": "Swedish",
        "sw": "Swahili",
        "tr": "Turkish",
        "zh": "Chinese",
    }
)


class UnsupportedLanguageError(ValueError):
    """The model does not speak the request's language, or cannot here (its text front-end is
    missing): the message says which, and is meant for the client."""


def language_token(language: str) -> str:
    return f"[{language}]"


class MultilingualTokenizer:
    def __init__(self, tokenizer: Any, front_ends: FrontEnds):
        """`tokenizer`: a `tokenizers.Tokenizer` over graphemes, language and Cangjie tokens."""
        vocab = tokenizer.get_vocab()
        for token in (START_TEXT, STOP_TEXT):
            if token not in vocab:
                raise ValueError(f"the text tokenizer has no {token} token")
        self._tokenizer = tokenizer
        self._steps = dict(front_ends.steps)
        unavailable = dict(front_ends.unavailable)
        for language in MULTILINGUAL_LANGUAGES:
            if language_token(language) not in vocab:
                unavailable[language] = f"the text tokenizer has no {language_token(language)}"
        self._unavailable = unavailable

    @classmethod
    def from_dir(cls, ckpt_dir: Path) -> MultilingualTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(ckpt_dir / TOKENIZER_FILE)), load_front_ends(ckpt_dir))

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language the model speaks (some may be unavailable here)."""
        return tuple(MULTILINGUAL_LANGUAGES)

    @property
    def unavailable(self) -> Mapping[str, str]:
        """Languages whose text cannot be prepared here, with the reason."""
        return MappingProxyType(self._unavailable)

    def check(self, language: str) -> None:
        """Raises `UnsupportedLanguageError` unless `language` can be spoken here."""
        if language not in MULTILINGUAL_LANGUAGES:
            raise UnsupportedLanguageError(
                f"the multilingual model does not speak {language!r}; it speaks "
                + ", ".join(MULTILINGUAL_LANGUAGES)
            )
        reason = self._unavailable.get(language)
        if reason is not None:
            name = MULTILINGUAL_LANGUAGES[language]
            raise UnsupportedLanguageError(f"{name} ({language}) is not available here: {reason}")

    def prepare(self, text: str, language: str) -> str:
        """The text the grapheme tokenizer encodes (upstream's `encode`, before encoding)."""
        self.check(language)
        text = normalize("NFKD", text.lower())
        step = self._steps.get(language)
        if step is not None:
            text = step(text)
        return (language_token(language) + text).replace(" ", SPACE)

    def encode(self, text: str, language: str) -> list[int]:
        ids: list[int] = self._tokenizer.encode(self.prepare(text, language)).ids
        return ids

    def text_to_tokens(self, text: str, language: str) -> torch.Tensor:
        """(1, n) int32 token ids, as upstream's `text_to_tokens` returns them."""
        return torch.tensor(self.encode(text, language), dtype=torch.int32).unsqueeze(0)


def normalize_punctuation(text: str) -> str:
    """Upstream multilingual `punc_norm`: the English one, with CJK sentence ends."""
    from chatterbox.mtl_tts import punc_norm

    return str(punc_norm(text))
