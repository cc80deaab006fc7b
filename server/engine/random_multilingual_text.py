"""Synthetic text files for a random multilingual checkpoint, in the real files' formats.

The real grapheme tokenizer, Cangjie table and pkuseg model are not reachable here. These
stand-ins have the same formats, so upstream's `MTLTokenizer` and our front-ends read them as
they read the real ones and every code path runs:

- the tokenizer (`tokenizers` JSON): special tokens where T3 expects them ([STOP] = 0,
  [START] = 255), the 23 language tokens, Cangjie code tokens, and a character for every
  grapheme of the model's scripts after lower-casing and NFKD (Latin with combining marks,
  Greek, Cyrillic, Hebrew, Arabic, Devanagari, Hangul jamo, kana, CJK punctuation);
- the Cangjie table (a JSON list of "glyph<TAB>code"): a made-up code for every CJK unified
  ideograph, short codes shared by several glyphs (the index suffix path) and a few glyphs
  listed twice, as in the real table;
- pkuseg's model directory (features.msgpack, weights.npz): trained by spacy-pkuseg itself on
  a few segmented sentences.

`upstream_offline` lets upstream's tokenizer start on them without the network.

Their ids and codes are made up: they tokenise like the real files, never as the real files.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from unittest import mock

from server.engine.multilingual_text import (
    MULTILINGUAL_LANGUAGES,
    SPACE,
    START_TEXT,
    STOP_TEXT,
    TOKENIZER_FILE,
    language_token,
)
from server.engine.text_front_ends import CANGJIE_FILE, SEGMENTER_MODEL

# T3Config.multilingual(): stop_text_token = 0, start_text_token = 255, 2454 text tokens.
START_TEXT_ID: Final = 255
TEXT_VOCAB_SIZE: Final = 2454
SPECIALS: Final = (STOP_TEXT, "[UNK]", SPACE, "[PAD]", "[SEP]", "[CLS]", "[MASK]")

# Unicode blocks whose characters the tokenizer knows, as (first, last) code points.
GRAPHEME_RANGES: Final = (
    (0x21, 0x7E),  # ASCII printable (space is [SPACE])
    (0xA1, 0xFF),  # Latin-1 letters and signs
    (0x100, 0x17F),  # Latin Extended-A (ı, ł, œ, ...)
    (0x300, 0x36F),  # combining marks: NFKD splits accents off their letters
    (0x370, 0x3FF),  # Greek
    (0x400, 0x4FF),  # Cyrillic
    (0x591, 0x5F4),  # Hebrew letters and points
    (0x600, 0x6FF),  # Arabic
    (0x900, 0x97F),  # Devanagari
    (0x1100, 0x11FF),  # Hangul jamo (Korean text is decomposed into them)
    (0x2010, 0x2027),  # dashes, quotes, ellipsis
    (0x3000, 0x303F),  # CJK punctuation
    (0x3040, 0x309F),  # hiragana
    (0x30A0, 0x30FF),  # katakana
)
CANGJIE_SYMBOLS: Final = (*"abcdefghijklmnopqrstuvwxyz", ".", *"0123456789")
CJK_IDEOGRAPHS: Final = (0x4E00, 0x9FFF)
CANGJIE_SEED: Final = 1234

# Word-segmented Chinese for pkuseg's trainer (it needs at least ten sentences).
SEGMENTED_CHINESE: Final = (
    "你好 ， 世界 。",
    "今天 天气 很 好 。",
    "我们 一起 去 公园 散步 吧 ！",
    "我 喜欢 学习 中文 。",
    "他们 在 北京 工作 。",
    "这 是 一个 测试 。",
    "我们 明天 去 上海 。",
    "请 说 慢 一点 。",
    "谢谢 你 的 帮助 。",
    "中国 的 历史 很 长 。",
    "她 每天 早上 跑步 。",
    "电脑 和 手机 都 很 贵 。",
    "猫 在 桌子 上面 睡觉 。",
)


def grapheme_vocab() -> dict[str, int]:
    """Token -> id: specials, characters (around [START] at 255), language and Cangjie tokens."""
    characters = [chr(c) for first, last in GRAPHEME_RANGES for c in range(first, last + 1)]
    tokens = [
        *(language_token(language) for language in MULTILINGUAL_LANGUAGES),
        *(f"[cj_{symbol}]" for symbol in CANGJIE_SYMBOLS),
    ]
    ordered = [*SPECIALS, *characters[: START_TEXT_ID - len(SPECIALS)]]
    ordered += [START_TEXT, *characters[START_TEXT_ID - len(SPECIALS) :], *tokens]
    vocab = {token: index for index, token in enumerate(ordered)}
    if len(vocab) != len(ordered) or len(vocab) > TEXT_VOCAB_SIZE:
        raise RuntimeError(f"multilingual vocabulary has {len(vocab)} entries")
    if vocab[START_TEXT] != START_TEXT_ID or vocab[STOP_TEXT] != 0:
        raise RuntimeError("[START] and [STOP] are not where T3 expects them")
    return vocab


def write_tokenizer(out: Path) -> None:
    """A character-level tokenizer.json that upstream's MTLTokenizer accepts."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    vocab = grapheme_vocab()
    # A BPE model without merges splits each word into characters; unknown ones become [UNK].
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    # Added tokens are matched before pre-tokenisation, which keeps "[SPACE]", "[de]" and
    # "[cj_a]" whole; they are in the vocabulary already, so they keep the ids above.
    whole = [token for token in vocab if len(token) > 1]
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in whole])
    tokenizer.save(str(out / TOKENIZER_FILE))


def cangjie_entries(seed: int = CANGJIE_SEED) -> list[str]:
    """'glyph<TAB>code' for every CJK unified ideograph: codes of 1-5 letters, the short
    ones shared by many glyphs; every 500th glyph also has a second code."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxy"
    entries = []
    for point in range(CJK_IDEOGRAPHS[0], CJK_IDEOGRAPHS[1] + 1):
        length = rng.choices((1, 2, 3, 4, 5), weights=(1, 8, 30, 40, 21))[0]
        code = "".join(rng.choice(letters) for _ in range(length))
        entries.append(f"{chr(point)}\t{code}")
        if point % 500 == 0:
            entries.append(f"{chr(point)}\t{code}{rng.choice(letters)}")
    return entries


def write_cangjie_table(out: Path) -> None:
    with (out / CANGJIE_FILE).open("w", encoding="utf-8") as file:
        json.dump(cangjie_entries(), file, ensure_ascii=False)


def write_segmenter_model(out: Path) -> None:
    """pkuseg's model directory, trained by spacy-pkuseg on `SEGMENTED_CHINESE`."""
    import contextlib
    import io

    import spacy_pkuseg  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "segmented.txt"
        corpus.write_text("\n".join(SEGMENTED_CHINESE) + "\n", encoding="utf-8")
        # The trainer prints its progress on stdout; keep it off ours.
        with contextlib.redirect_stdout(io.StringIO()):
            spacy_pkuseg.train(str(corpus), str(corpus), str(out / SEGMENTER_MODEL), train_iter=5)


def write_text_files(out: Path) -> None:
    write_tokenizer(out)
    write_cangjie_table(out)
    write_segmenter_model(out)


@contextlib.contextmanager
def upstream_offline(ckpt_dir: Path) -> Iterator[None]:
    """Lets upstream's `MTLTokenizer` (and so `ChatterboxMultilingualTTS.from_local`) start
    without the network on a checkpoint directory that holds its text files.

    Upstream fetches the Cangjie table with `hf_hub_download` (here: the directory's copy)
    and builds `pkuseg()`, which downloads its model into $PKUSEG_HOME unless an archive of
    it is there (here: a home whose placeholder archive and model are the directory's)."""
    import spacy_pkuseg
    from chatterbox.models.tokenizers import tokenizer as upstream_tokenizer

    def local_file(repo_id: str, filename: str, **_: Any) -> str:
        return str(Path(ckpt_dir) / filename)

    with tempfile.TemporaryDirectory() as home:
        (Path(home) / f"{SEGMENTER_MODEL}.zip").write_bytes(b"")
        (Path(home) / SEGMENTER_MODEL).symlink_to(Path(ckpt_dir).resolve() / SEGMENTER_MODEL)
        with (
            mock.patch.object(upstream_tokenizer, "hf_hub_download", local_file),
            mock.patch.object(spacy_pkuseg.config, "pkuseg_home", home),
        ):
            yield
