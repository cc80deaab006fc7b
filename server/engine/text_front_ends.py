"""The multilingual model's per-language text front-ends, loaded from local files only.

Upstream 0.1.7 (`chatterbox/models/tokenizers/tokenizer.py`) rewrites the text of five
languages before tokenising it: Chinese into Cangjie codes after word segmentation
(spacy-pkuseg), Japanese kanji into hiragana (pykakasi), Korean syllables into jamo, Hebrew
with diacritics (dicta_onnx), Russian with stress marks (russian_text_stresser). It fetches
what these need on first use (the Cangjie table from the Hugging Face hub, pkuseg's model from
GitHub), and when a step cannot run it logs a warning and passes the text through unchanged:
the model then reads text unlike what it was trained on. Here every step loads from local
files, never the network, and a language whose step cannot run is unavailable, with the
reason, instead of silently mangled.

Upstream's own functions are used where they run offline (Korean, Japanese); the Cangjie
converter is mirrored because upstream's downloads its table in its constructor (parity:
tests/engine/test_multilingual_text.py).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from unicodedata import category

logger = logging.getLogger(__name__)

FrontEnd = Callable[[str], str]

CANGJIE_FILE: Final = "Cangjie5_TC.json"
# The segmentation model spacy-pkuseg's `pkuseg()` loads by default (upstream calls it so). It
# is not in the wheel: spacy-pkuseg downloads it from GitHub into $PKUSEG_HOME (~/.pkuseg) on
# first use. We look for it there, or beside the checkpoint, and never download it.
SEGMENTER_MODEL: Final = "spacy_ontonotes"
SEGMENTER_FILES: Final = ("features.msgpack", "weights.npz")


class FrontEndUnavailable(Exception):
    """A language's front-end cannot run here; the message says why and what would fix it."""


@dataclass(frozen=True)
class FrontEnds:
    """The steps that could be loaded, by language, and why the others could not."""

    steps: dict[str, FrontEnd] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


# --- Chinese --------------------------------------------------------------------------------


class CangjieTable:
    """Chinese characters to Cangjie codes: upstream's `ChineseCangjieConverter`, whose table
    is read from a local file instead of the hub."""

    def __init__(self, entries: list[str]):
        # The file lists "glyph<TAB>code[<TAB>...]" entries; a code shared by several glyphs
        # is told apart by the glyph's place among them (upstream's encoding, kept exactly).
        self.word2cj: dict[str, str] = {}
        self.cj2word: dict[str, list[str]] = {}
        for entry in entries:
            word, code = entry.split("\t")[:2]
            self.word2cj[word] = code
            self.cj2word.setdefault(code, []).append(word)

    @classmethod
    def load(cls, path: Path) -> CangjieTable:
        with path.open(encoding="utf-8") as file:
            entries = json.load(file)
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ValueError(f"{path} is not a list of 'glyph<TAB>code' strings")
        return cls(entries)

    def code(self, glyph: str) -> str | None:
        code = self.word2cj.get(glyph)
        if code is None:  # e.g. kana
            return None
        index = self.cj2word[code].index(glyph)
        return code + (str(index) if index > 0 else "")

    def spell(self, text: str) -> str:
        """Each "Lo" character with a code as `[cj_x]...[cj_.]` tokens; the rest as is."""
        out = []
        for char in text:
            code = self.code(char) if category(char) == "Lo" else None
            if code is None:
                out.append(char)
            else:
                out.append("".join(f"[cj_{c}]" for c in code) + "[cj_.]")
        return "".join(out)


def segmenter_dirs(ckpt_dir: Path) -> list[Path]:
    """Where pkuseg's model may be: beside the checkpoint, then where spacy-pkuseg keeps it."""
    home = Path(os.path.expanduser(os.getenv("PKUSEG_HOME", "~/.pkuseg")))
    return [ckpt_dir / SEGMENTER_MODEL, home / SEGMENTER_MODEL]


def chinese_front_end(ckpt_dir: Path) -> FrontEnd:
    """Word segmentation (spaces between words), then Cangjie codes, as upstream does."""
    table_file = ckpt_dir / CANGJIE_FILE
    if not table_file.is_file():
        raise FrontEndUnavailable(f"the Cangjie table {CANGJIE_FILE} is not in {ckpt_dir}")
    table = CangjieTable.load(table_file)
    segmenter = _load_segmenter(ckpt_dir)

    def chinese(text: str) -> str:
        return table.spell(" ".join(segmenter.cut(text)))

    return chinese


def _load_segmenter(ckpt_dir: Path) -> Any:
    try:
        from spacy_pkuseg import pkuseg  # type: ignore[import-untyped]
    except ImportError:
        raise FrontEndUnavailable("the spacy-pkuseg package is not installed") from None
    candidates = segmenter_dirs(ckpt_dir)
    for directory in candidates:
        if all((directory / name).is_file() for name in SEGMENTER_FILES):
            # A path (not a model name) makes pkuseg load it as it is, with no download.
            return pkuseg(model_name=str(directory))
    raise FrontEndUnavailable(
        f"spacy-pkuseg's {SEGMENTER_MODEL!r} model is not on this machine (it is not in the "
        "package; spacy-pkuseg downloads it on first use). Unzip "
        f"{SEGMENTER_MODEL}.zip from the spacy-pkuseg releases into "
        f"{' or '.join(str(d) for d in candidates)}"
    )


# --- Japanese, Korean -------------------------------------------------------------------------


def japanese_front_end() -> FrontEnd:
    """Kanji to hiragana with pykakasi (upstream's function; its dictionaries ship with it)."""
    try:
        import pykakasi  # noqa: F401
    except ImportError:
        # Upstream would log a warning and keep the kanji, which the model cannot read.
        raise FrontEndUnavailable("the pykakasi package is not installed") from None
    from chatterbox.models.tokenizers.tokenizer import hiragana_normalize

    hiragana_normalize("")  # builds its converter now, not during the first request
    return _as_front_end(hiragana_normalize)


def korean_front_end() -> FrontEnd:
    from chatterbox.models.tokenizers.tokenizer import korean_normalize

    return _as_front_end(korean_normalize)


# --- Hebrew, Russian --------------------------------------------------------------------------


def hebrew_front_end() -> FrontEnd:
    """Diacritics from dicta_onnx, created as upstream creates it. Unlike upstream's, a
    failure is an error rather than undiacritised text."""
    try:
        from dicta_onnx import Dicta  # type: ignore[import-not-found]
    except ImportError:
        raise FrontEndUnavailable(
            "Hebrew needs diacritics from the dicta_onnx package, which is not installed"
        ) from None
    try:
        dicta = Dicta()
    except Exception as exc:
        raise FrontEndUnavailable(f"dicta_onnx could not start: {exc}") from exc
    return _as_front_end(dicta.add_diacritics)


def russian_front_end() -> FrontEnd:
    """Stress marks from russian_text_stresser, created as upstream creates it."""
    try:
        from russian_text_stresser.text_stresser import (  # type: ignore[import-not-found]
            RussianTextStresser,
        )
    except ImportError:
        raise FrontEndUnavailable(
            "Russian needs stress marks from the russian_text_stresser package, which is "
            "not installed"
        ) from None
    try:
        stresser = RussianTextStresser()
    except Exception as exc:
        raise FrontEndUnavailable(f"russian_text_stresser could not start: {exc}") from exc
    return _as_front_end(stresser.stress_text)


def _as_front_end(step: Callable[[str], Any]) -> FrontEnd:
    def front_end(text: str) -> str:
        return str(step(text))

    return front_end


def load_front_ends(ckpt_dir: Path) -> FrontEnds:
    """Every language's front-end that can run here, and the reasons for the others."""
    loaders: dict[str, Callable[[], FrontEnd]] = {
        "zh": lambda: chinese_front_end(ckpt_dir),
        "ja": japanese_front_end,
        "ko": korean_front_end,
        "he": hebrew_front_end,
        "ru": russian_front_end,
    }
    loaded = FrontEnds()
    for language, load in loaders.items():
        try:
            loaded.steps[language] = load()
        except FrontEndUnavailable as exc:
            loaded.unavailable[language] = str(exc)
            logger.warning("language %s is unavailable: %s", language, exc)
    return loaded
