"""The multilingual text front-end tokenises as upstream's `MTLTokenizer`, offline.

Runs on the synthetic text files of the random checkpoint (written here to a temporary
directory: no weights needed), against upstream's tokenizer started under `upstream_offline`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from server.engine.multilingual_text import (
    MULTILINGUAL_LANGUAGES,
    TOKENIZER_FILE,
    MultilingualTokenizer,
    UnsupportedLanguageError,
    normalize_punctuation,
)
from server.engine.random_multilingual_text import upstream_offline, write_text_files
from server.engine.text_front_ends import (
    CANGJIE_FILE,
    SEGMENTER_MODEL,
    CangjieTable,
    FrontEnds,
    load_front_ends,
)
from tests.engine.conftest import forbid_network

# One sentence per language, with each script's particulars: accents that NFKD splits off,
# kanji, katakana and a "は" reading (Japanese), hangul syllables, Chinese words to segment.
SENTENCES = {
    "ar": "مرحبا، كيف حالك اليوم؟",
    "da": "Hej, hvordan går det i dag? Rødgrød med fløde.",
    "de": "Guten Morgen, wie geht es Ihnen heute? Schöne Grüße.",
    "el": "Καλημέρα, πώς είσαι σήμερα;",
    "en": "Hello there, how are you doing today?",
    "es": "Hola, ¿cómo estás hoy? Mañana será mejor.",
    "fi": "Hyvää huomenta, miten voit tänään?",
    "fr": "Bonjour, comment ça va aujourd'hui ? Très bien.",
    "he": "שלום, מה שלומך היום?",
    "hi": "नमस्ते, आज आप कैसे हैं?",
    "it": "Buongiorno, come stai oggi? Più tardi andiamo.",
    "ja": "今日はいい天気ですね。東京へ行きます。ハンバーガーを食べます。",
    "ko": "안녕하세요, 오늘 기분이 어떠세요?",
    "ms": "Selamat pagi, apa khabar hari ini?",
    "nl": "Goedemorgen, hoe gaat het vandaag?",
    "no": "God morgen, hvordan har du det i dag?",
    "pl": "Dzień dobry, jak się dziś masz? Łódź jest piękna.",
    "pt": "Bom dia, como você está hoje? Não sei.",
    "ru": "Доброе утро, как у вас дела сегодня? Всё хорошо.",
    "sv": "God morgon, hur mår du idag? Det är bra.",
    "sw": "Habari za asubuhi, hujambo leo?",
    "tr": "Günaydın, bugün nasılsınız? İstanbul çok güzel.",
    "zh": "你好，今天天气很好。我们一起去公园散步吧！",
}


class _Marker:
    """Stands in for dicta_onnx / russian_text_stresser, which are not installed: both sides
    get the same rewrite, so their parity covers where the step runs."""

    def add_diacritics(self, text: str) -> str:
        return text.replace("ש", "שׁ")

    def stress_text(self, text: str) -> str:
        return text.replace("о", "о́", 1)


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("multilingual-text")
    write_text_files(directory)
    return directory


@pytest.fixture(scope="module")
def upstream_tokenizer(text_dir: Path) -> Iterator[Any]:
    from chatterbox.models.tokenizers import MTLTokenizer
    from chatterbox.models.tokenizers import tokenizer as upstream_module

    with upstream_offline(text_dir):
        tokenizer = MTLTokenizer(str(text_dir / TOKENIZER_FILE))
    assert tokenizer.cangjie_converter.segmenter is not None
    assert tokenizer.cangjie_converter.word2cj  # the table was read
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(upstream_module, "_dicta", _Marker())
        patch.setattr(upstream_module, "_russian_stresser", _Marker())
        yield tokenizer


@pytest.fixture(scope="module")
def ours(text_dir: Path) -> MultilingualTokenizer:
    from tokenizers import Tokenizer

    loaded = load_front_ends(text_dir)
    marker = _Marker()
    steps = {**loaded.steps, "he": marker.add_diacritics, "ru": marker.stress_text}
    return MultilingualTokenizer(
        Tokenizer.from_file(str(text_dir / TOKENIZER_FILE)), FrontEnds(steps)
    )


def test_the_languages_are_upstreams() -> None:
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

    assert dict(MULTILINGUAL_LANGUAGES) == SUPPORTED_LANGUAGES
    assert set(SENTENCES) == set(SUPPORTED_LANGUAGES)


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_tokens_equal_upstream_mtl_tokenizer(
    language: str, ours: MultilingualTokenizer, upstream_tokenizer: Any
) -> None:
    from chatterbox.mtl_tts import punc_norm

    text = SENTENCES[language]
    assert normalize_punctuation(text) == punc_norm(text)
    expected = upstream_tokenizer.text_to_tokens(punc_norm(text), language_id=language)
    got = ours.text_to_tokens(normalize_punctuation(text), language)
    assert got.dtype == expected.dtype and torch.equal(got, expected)
    # The synthetic vocabulary covers every grapheme of the sentence: nothing is unknown.
    vocab = upstream_tokenizer.tokenizer.get_vocab()
    assert vocab["[UNK]"] not in got[0].tolist()
    assert got[0, 0] == vocab[f"[{language}]"]


def test_chinese_is_segmented_and_spelled_in_cangjie(ours: MultilingualTokenizer) -> None:
    prepared = ours.prepare("我们一起去公园", "zh")
    # Words are separated ([SPACE]) and every character is spelled as codes ending in [cj_.].
    assert prepared.startswith("[zh][cj_") and "[SPACE]" in prepared
    assert prepared.count("[cj_.]") == 7


def test_cangjie_codes_equal_upstreams_for_every_glyph(
    text_dir: Path, upstream_tokenizer: Any
) -> None:
    table = CangjieTable.load(text_dir / CANGJIE_FILE)
    converter = upstream_tokenizer.cangjie_converter
    codes = {glyph: table.code(glyph) for glyph in converter.word2cj}
    assert codes == {glyph: converter._cangjie_encode(glyph) for glyph in converter.word2cj}
    # The table exercises upstream's index suffix (codes shared by several glyphs).
    assert any(code is not None and code[-1].isdigit() for code in codes.values())


def test_front_ends_load_offline(
    text_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PKUSEG_HOME", str(tmp_path))  # no model there: the checkpoint's is used
    with forbid_network() as attempts:
        tokenizer = MultilingualTokenizer.from_dir(text_dir)
        tokenizer.encode(SENTENCES["zh"], "zh")
        tokenizer.encode(SENTENCES["ja"], "ja")
    assert attempts == []
    assert "zh" not in tokenizer.unavailable and "ja" not in tokenizer.unavailable


def test_chinese_without_the_segmenter_model_is_refused_not_downloaded(
    text_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "checkpoint"
    bare.mkdir()
    for name in (TOKENIZER_FILE, CANGJIE_FILE):
        (bare / name).write_bytes((text_dir / name).read_bytes())
    monkeypatch.setenv("PKUSEG_HOME", str(tmp_path / "pkuseg-home"))
    with forbid_network() as attempts:
        tokenizer = MultilingualTokenizer.from_dir(bare)
    assert attempts == []
    with pytest.raises(UnsupportedLanguageError, match=f"Chinese.*{SEGMENTER_MODEL}"):
        tokenizer.encode(SENTENCES["zh"], "zh")
    assert tokenizer.encode(SENTENCES["de"], "de")  # the other languages are unaffected


def test_languages_whose_front_end_is_missing_are_refused(
    text_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dicta_onnx", None)  # importing it fails
    monkeypatch.setitem(sys.modules, "russian_text_stresser", None)
    tokenizer = MultilingualTokenizer.from_dir(text_dir)
    assert set(tokenizer.unavailable) == {"he", "ru"}
    with pytest.raises(UnsupportedLanguageError, match=r"Hebrew \(he\).*dicta_onnx"):
        tokenizer.encode(SENTENCES["he"], "he")
    with pytest.raises(UnsupportedLanguageError, match=r"Russian \(ru\).*russian_text_stresser"):
        tokenizer.encode(SENTENCES["ru"], "ru")
    with pytest.raises(UnsupportedLanguageError, match="does not speak 'xx'"):
        tokenizer.encode("Hello", "xx")
