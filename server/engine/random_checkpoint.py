"""Full-size Chatterbox checkpoints with random weights, in the official on-disk layout.

The real weights live on the Hugging Face hub, which this project's test machines cannot reach.
A random checkpoint has the same shapes, so it costs the same compute and memory as the real model
and loads through upstream's own `ChatterboxTurboTTS.from_local` / `ChatterboxTTS.from_local`
unchanged (`ChatterboxMultilingualTTS.from_local` too, under `upstream_offline`: upstream's
multilingual tokenizer goes online even for a local checkpoint). It speaks noise: use it to
test plumbing, timing and streaming, never quality.

The modules, their hyper-parameters and the file names come from `loading.py`, the same place
the loader takes them from, so a checkpoint written here is one `load_model` reads.
`random_checkpoint(variant)` builds one (once) into the cache that `--random-weights` uses;
`scripts/make_random_checkpoint.py` is the command line over this module.

An existing directory that carries the marker file is reused as a cache unless forced.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from server.engine.loading import (
    LAYOUTS,
    TURBO_TEXT_VOCAB_SIZE,
    ModelVariant,
    build_modules,
    t3_config,
)
from server.engine.random_multilingual_text import upstream_offline, write_text_files
from server.engine.types import SAMPLE_RATE

VARIANTS: Final = tuple(variant.value for variant in ModelVariant)
MARKER_FILE: Final = "RANDOM_WEIGHTS_README.txt"
DEFAULT_SEED: Final = 0

# Where `random_checkpoint` keeps its checkpoints (and the tests theirs): one directory per variant.
RANDOM_CHECKPOINTS: Final = (
    Path(os.environ.get("CHATTERBOX_TEST_CACHE", Path.home() / ".cache" / "chatterbox-streaming"))
    / "checkpoints"
)

# Turbo: GPT-2 medium backbone and GPT-2's tokenizer layout. GPT-2 has 50256 byte-level BPE tokens,
# then <|endoftext|> at 50256; Turbo's text embedding has TURBO_TEXT_VOCAB_SIZE (50276) rows, so
# its tokenizer adds 19.
TURBO_BPE_VOCAB_SIZE: Final = 50256
TURBO_EOS: Final = "<|endoftext|>"
# Turbo's model card advertises these paralinguistic tags. Giving each a single id makes tagged text
# tokenize the way the real tokenizer presumably does; the real ids are unknown and do not matter.
TURBO_TAGS: Final = (
    "[clear throat]",
    "[sigh]",
    "[shush]",
    "[cough]",
    "[groan]",
    "[sniff]",
    "[gasp]",
    "[chuckle]",
    "[laugh]",
)
# The tokenizer corpus does not depend on the seed, so token ids are identical across seeds.
TOKENIZER_CORPUS_SEED: Final = 1234
PSEUDO_WORD_COUNT: Final = 60_000

# Original: EnTokenizer hard-codes [STOP] and [START] (T3Config's stop_text_token=0 and
# start_text_token=255) and replaces " " with [SPACE]; every id must stay below the number of rows
# of T3's text embedding (text_tokens_dict_size, 704).
ORIGINAL_SPECIALS: Final = ("[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]")

# What each variant's tokenizer writer saves (the loader requires only some of them up front).
TOKENIZER_FILES: Final = {
    ModelVariant.TURBO: ("tokenizer.json", "tokenizer_config.json"),
    ModelVariant.ORIGINAL: ("tokenizer.json",),
    ModelVariant.MULTILINGUAL: LAYOUTS[ModelVariant.MULTILINGUAL].optional_files,
}

VOICE_SECONDS: Final = 10.0  # prepare_conditionals needs > 5 s; S3Gen warns above 10 s
VOICE_SAMPLE_RATE: Final = SAMPLE_RATE  # S3GEN_SR, what prepare_conditionals loads at

CHECK_TEXT: Final = "Hello there, this is a quick test of 42 random weights."

ENGLISH_SENTENCES: Final = (
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs!",
    "How vexingly quick daft zebras jump?",
    "Sphinx of black quartz, judge my vow.",
    "Hello there, how are you doing today? I'm fine, thanks for asking.",
    "She sells seashells by the seashore, and the shells she sells are surely seashells.",
    "It was the best of times, it was the worst of times; it was the age of wisdom.",
    "Please call me back at 555-0123 before 6:30 pm on Monday, March 3rd, 2025.",
    "We don't know what you've heard, but they'll be here soon, won't they?",
    "The rain in Spain stays mainly in the plain.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1,000 3.14 50% $20.",
    'He said, "Streaming speech should start quickly," and everyone agreed.',
    "Is this the real life? Is this just fantasy? (Caught in a landslide...)",
    "A journey of a thousand miles begins with a single step.",
    "Email support@example.com or visit https://example.com/help for more information.",
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _variant(variant: str) -> ModelVariant:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    return ModelVariant(variant)


def expected_files(variant: str) -> tuple[str, ...]:
    """Files a complete checkpoint directory of `variant` holds (besides the marker)."""
    model_variant = _variant(variant)
    layout = LAYOUTS[model_variant]
    required = layout.required_files
    tokenizer = tuple(f for f in TOKENIZER_FILES[model_variant] if f not in required)
    return (*required, *tokenizer, layout.builtin_voice_file)


def is_random_checkpoint(path: Path) -> bool:
    """Whether `path` is a finished random checkpoint (the marker is written last, then renamed)."""
    return (path / MARKER_FILE).is_file()


def random_checkpoint_variant(path: Path) -> str | None:
    """The variant recorded in the marker of the random checkpoint at `path`, if any."""
    if not is_random_checkpoint(path):
        return None
    for line in (path / MARKER_FILE).read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key == "variant":
            return value.strip()
    return None


# --- tokenizers -----------------------------------------------------------------------------------


def _tokenizer_corpus() -> Iterator[str]:
    """English sentences, then pseudo-words.

    The sentences give the BPE merges of real English words and punctuation. They hold far too
    few distinct pairs to reach GPT-2's 50256 tokens, so pronounceable pseudo-words supply enough
    distinct merges to fill the vocabulary with ordinary BPE tokens instead of placeholders.
    """
    for _ in range(50):
        yield from ENGLISH_SENTENCES
    rng = random.Random(TOKENIZER_CORPUS_SEED)
    onsets = [*"bcdfghjklmnprstvwz", "th", "sh", "ch", "str", "qu", "bl", "gr"]
    syllables = [onset + vowel for onset in onsets for vowel in "aeiouy"]
    words: set[str] = set()
    while len(words) < PSEUDO_WORD_COUNT:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)  # a set's order varies between runs; the corpus must not
    for start in range(0, len(ordered), 20):
        yield " ".join(ordered[start : start + 20])


def write_turbo_tokenizer(out: Path) -> None:
    """A GPT-2-style byte-level BPE tokenizer of length 50276, saved for AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # Same pipeline as GPT-2's tokenizer.json: byte-level pre-tokenizer with its regex split, no
    # prefix space, byte-level decoder and post-processor, no BOS/EOS added on encode.
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TURBO_BPE_VOCAB_SIZE,
        # every byte gets a token, so any input text encodes without an unknown token
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tokenizer_corpus(), trainer)
    tokenizer.add_special_tokens([TURBO_EOS])
    tokenizer.add_tokens(list(TURBO_TAGS))
    # If the corpus ever yields fewer merges than asked for, placeholders still fill the table to
    # the exact size upstream checks (it only warns, but the T3 text embedding has 50276 rows).
    missing = TURBO_TEXT_VOCAB_SIZE - tokenizer.get_vocab_size(with_added_tokens=True)
    tokenizer.add_special_tokens([f"<|unused_{i}|>" for i in range(missing)])

    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=TURBO_EOS,
        eos_token=TURBO_EOS,
        unk_token=TURBO_EOS,
    )
    if len(fast) != TURBO_TEXT_VOCAB_SIZE:
        raise RuntimeError(f"turbo tokenizer has {len(fast)} entries, not {TURBO_TEXT_VOCAB_SIZE}")
    fast.save_pretrained(str(out))


def _original_characters(start_id: int) -> list[str]:
    """Characters of the original tokenizer: ASCII, then Latin-1 and Latin Extended-A letters.

    They take ids 7..254, between the special tokens and [START]=255: 248 slots in all.
    """
    ascii_printable = [chr(c) for c in range(0x21, 0x7F)]  # space is [SPACE], not a character
    latin1_letters = [chr(c) for c in range(0xC0, 0x100) if c not in (0xD7, 0xF7)]  # not x and ÷
    latin_ext_a = [chr(c) for c in range(0x100, 0x180)]
    slots = start_id - len(ORIGINAL_SPECIALS)
    return [*ascii_printable, *latin1_letters, *latin_ext_a][:slots]


def write_original_tokenizer(out: Path) -> None:
    """A character-level tokenizer.json that chatterbox's EnTokenizer accepts."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    hp = t3_config(ModelVariant.ORIGINAL)
    start_id: int = hp.start_text_token
    if hp.stop_text_token != ORIGINAL_SPECIALS.index("[STOP]"):
        raise RuntimeError(f"T3 expects [STOP] at {hp.stop_text_token}, the tokenizer puts it at 0")
    vocab = {token: i for i, token in enumerate(ORIGINAL_SPECIALS)}
    for char in _original_characters(start_id):
        vocab[char] = len(vocab)
    vocab["[START]"] = start_id
    if len(vocab) != start_id + 1 or len(vocab) > hp.text_tokens_dict_size:
        raise RuntimeError(f"original tokenizer vocabulary has {len(vocab)} entries")

    # A BPE model without merges splits each word into characters; unknown ones become [UNK].
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    # Special tokens are matched before pre-tokenization, which keeps "[SPACE]" whole; they are
    # already in the vocabulary, so they keep the ids above.
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True) for token in (*ORIGINAL_SPECIALS, "[START]")]
    )
    tokenizer.save(str(out / "tokenizer.json"))


# --- weights and conditionals ---------------------------------------------------------------------


def _save_state_dict(module: torch.nn.Module, path: Path) -> None:
    """Save every entry of `module.state_dict()` with safetensors.

    safetensors refuses tensors that share storage or are views into a larger one; neither occurs
    in these modules today, but copying such tensors keeps that an implementation detail.
    """
    from safetensors.torch import save_file

    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, value in module.state_dict().items():
        tensor = value.detach().contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    save_file(tensors, str(path), metadata={"format": "pt"})


def synthetic_voice(seed: int) -> npt.NDArray[np.float32]:
    """10 s of a voice-like signal at 24 kHz: a gliding harmonic tone in syllable-rate bursts.

    Random networks would accept silence or white noise, but loudness normalisation needs a
    measurable level, and a pitched signal with pauses gives the reference mel and the speech
    prompt tokens some structure instead of a constant.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(VOICE_SECONDS * VOICE_SAMPLE_RATE)) / VOICE_SAMPLE_RATE
    f0 = 140.0 + 35.0 * np.sin(2 * np.pi * 0.25 * t) + 6.0 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / VOICE_SAMPLE_RATE
    signal = np.zeros_like(t)
    for k in range(1, int(VOICE_SAMPLE_RATE / 2 / f0.max())):  # harmonics below Nyquist
        signal += np.sin(k * phase) / k
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t), 0.0, None) ** 0.5
    phrases = (np.sin(2 * np.pi * 0.4 * t) > -0.7).astype(np.float64)  # short pauses
    wav: npt.NDArray[np.float64] = signal * syllables * phrases
    wav = wav + 0.01 * rng.standard_normal(t.size)
    wav = 0.5 * wav / np.abs(wav).max()
    return wav.astype(np.float32)


def _write_conds(tts: Any, path: Path, seed: int) -> None:
    """conds.pt through the package's own prepare_conditionals, from a synthetic voice file."""
    import soundfile

    with tempfile.TemporaryDirectory() as scratch:
        wav_path = Path(scratch) / "voice.wav"
        soundfile.write(str(wav_path), synthetic_voice(seed), VOICE_SAMPLE_RATE)
        tts.prepare_conditionals(str(wav_path))
    tts.conds.save(path)


def _build_modules(variant: ModelVariant, seed: int) -> tuple[Any, Any, Any]:
    """The loader's modules with PyTorch's random initialisation; the weights depend on `seed`.

    One seed, then the loader's fixed construction order (voice encoder, T3, S3Gen).
    """
    torch.manual_seed(seed)
    started = time.perf_counter()
    ve, t3, s3gen = build_modules(variant)
    ve.eval()
    t3.eval()
    s3gen.eval()
    _log(f"  built modules in {time.perf_counter() - started:.1f} s")
    return ve, t3, s3gen


def _build_turbo(out: Path, seed: int) -> None:
    from chatterbox.tts_turbo import ChatterboxTurboTTS
    from transformers import AutoTokenizer

    layout = LAYOUTS[ModelVariant.TURBO]
    ve, t3, s3gen = _build_modules(ModelVariant.TURBO, seed)

    started = time.perf_counter()
    _save_state_dict(ve, out / layout.ve_file)
    # With tfmr.wte: from_local loads this file strictly and only then deletes the GPT-2 token
    # embedding (T3 feeds its own text/speech embeddings as inputs_embeds).
    _save_state_dict(t3, out / layout.t3_file)
    # Every key, buffers included: Turbo loads S3Gen with strict=True.
    _save_state_dict(s3gen, out / layout.s3gen_file)
    _log(f"  saved weights in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    write_turbo_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    _log(f"  trained tokenizer in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    # The model wants the wte-less T3 it would get from from_local; nothing here touches wte.
    tts = ChatterboxTurboTTS(t3, s3gen, ve, tokenizer, "cpu")
    _write_conds(tts, out / layout.builtin_voice_file, seed)
    _log(f"  wrote conds.pt in {time.perf_counter() - started:.1f} s")


def _build_original(out: Path, seed: int) -> None:
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.tts import ChatterboxTTS

    layout = LAYOUTS[ModelVariant.ORIGINAL]
    ve, t3, s3gen = _build_modules(ModelVariant.ORIGINAL, seed)

    started = time.perf_counter()
    _save_state_dict(ve, out / layout.ve_file)
    # The Llama backbone's embed_tokens is unused too, but the original from_local loads strictly
    # and keeps it, so it stays in the file.
    _save_state_dict(t3, out / layout.t3_file)
    # Upstream loads this one with strict=False (the official file lacks the S3 tokenizer's mel
    # filters and window); writing every key is a superset that loads either way.
    _save_state_dict(s3gen, out / layout.s3gen_file)
    _log(f"  saved weights in {time.perf_counter() - started:.1f} s")

    write_original_tokenizer(out)
    tokenizer = EnTokenizer(str(out / "tokenizer.json"))

    started = time.perf_counter()
    tts = ChatterboxTTS(t3, s3gen, ve, tokenizer, "cpu")
    _write_conds(tts, out / layout.builtin_voice_file, seed)
    _log(f"  wrote conds.pt in {time.perf_counter() - started:.1f} s")


def _build_multilingual(out: Path, seed: int) -> None:
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    layout = LAYOUTS[ModelVariant.MULTILINGUAL]
    ve, t3, s3gen = _build_modules(ModelVariant.MULTILINGUAL, seed)

    started = time.perf_counter()
    # The official voice encoder and S3Gen files are torch state dicts; from_local loads all
    # three files strictly, so every key (buffers included) is written.
    torch.save(ve.state_dict(), out / layout.ve_file)
    _save_state_dict(t3, out / layout.t3_file)
    torch.save(s3gen.state_dict(), out / layout.s3gen_file)
    _log(f"  saved weights in {time.perf_counter() - started:.1f} s")

    # The grapheme tokenizer, the Cangjie table and (beside them, where our loader looks for it)
    # pkuseg's segmentation model.
    write_text_files(out)

    started = time.perf_counter()
    # prepare_conditionals never reads the tokenizer, whose upstream constructor goes online.
    tts = ChatterboxMultilingualTTS(t3, s3gen, ve, None, "cpu")
    _write_conds(tts, out / layout.builtin_voice_file, seed)
    _log(f"  wrote conds.pt in {time.perf_counter() - started:.1f} s")


def _write_marker(out: Path, variant: str, seed: int) -> None:
    # Unchanged since the builder lived in scripts/ only: cached checkpoints stay byte-identical.
    (out / MARKER_FILE).write_text(
        "RANDOM WEIGHTS - NOT A REAL MODEL\n"
        "\n"
        "Every weight in this directory is random noise, written by\n"
        "scripts/make_random_checkpoint.py in the official Chatterbox layout so that upstream\n"
        "from_local() loads it. It has the real model's shapes and compute cost but produces\n"
        "noise, not speech. Use it for tests and benchmarks only.\n"
        "\n"
        f"variant: {variant}\n"
        f"seed: {seed}\n",
        encoding="utf-8",
    )


# --- public entry points --------------------------------------------------------------------------


def random_checkpoint(variant: ModelVariant) -> Path:
    """Build (once) and return a full-size random-weight checkpoint: it speaks noise.

    It lives in RANDOM_CHECKPOINTS ($CHATTERBOX_TEST_CACHE/checkpoints, by default
    ~/.cache/chatterbox-streaming/checkpoints), shared with the tests.
    """
    return build_random_checkpoint(variant.value, RANDOM_CHECKPOINTS / variant.value)


def build_random_checkpoint(
    variant: str, out: Path, seed: int = DEFAULT_SEED, force: bool = False
) -> Path:
    """Write a random `variant` checkpoint to `out` and return `out`.

    An existing random checkpoint of `variant` at `out` is kept, whatever its seed, unless `force`;
    one of the other variant raises FileExistsError. The build goes to a sibling
    temporary directory renamed into place at the end, so `out` is either absent or complete even
    if the build is killed or two builds race.
    """
    model_variant = _variant(variant)
    variant = model_variant.value
    out = Path(out)
    if out.exists():
        if is_random_checkpoint(out) and not force:
            found = random_checkpoint_variant(out)
            if found != variant:
                raise FileExistsError(f"{out} holds a random {found} checkpoint, not {variant}")
            return out
        # Never delete what may be a real checkpoint: only a random one or an empty directory.
        if not out.is_dir() or not (is_random_checkpoint(out) or not any(out.iterdir())):
            raise FileExistsError(
                f"{out} exists and is not a random checkpoint made by this builder; "
                "not replacing it"
            )

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        started = time.perf_counter()
        _log(f"building random {variant} checkpoint (seed {seed}) in {staging}")
        builders = {
            ModelVariant.TURBO: _build_turbo,
            ModelVariant.ORIGINAL: _build_original,
            ModelVariant.MULTILINGUAL: _build_multilingual,
        }
        builders[model_variant](staging, seed)
        missing = [name for name in expected_files(variant) if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(f"build did not produce {', '.join(missing)}")
        _write_marker(staging, variant, seed)
        _install(staging, out, replace=force)
        _log(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _install(staging: Path, out: Path, replace: bool) -> None:
    """Rename the finished `staging` directory to `out`.

    rename() is atomic and also replaces an empty directory. A previous random checkpoint is moved
    aside only when `replace`: without it, a checkpoint that appeared meanwhile was installed by a
    concurrent build, and readers may already be using it.
    """
    retired: Path | None = None
    if replace and is_random_checkpoint(out):
        retired = out.with_name(f"{out.name}.old-{os.getpid()}")
        out.rename(retired)
    try:
        staging.rename(out)
    except OSError:
        # A concurrent build won the race; the same seed gives the same files, so keep its copy.
        if not is_random_checkpoint(out):
            raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)


def check_checkpoint(variant: str, ckpt_dir: Path, seed: int = DEFAULT_SEED) -> int:
    """Load `ckpt_dir` with upstream from_local, synthesize a few tokens and check the audio.

    Returns the number of audio samples; raises if loading fails or the audio is not finite.
    Generation is capped at a handful of tokens: with random weights the stop token practically
    never comes, and upstream's generate() would run to its 1000-token limit.
    """
    import torch.nn.functional as F
    from chatterbox.models.s3gen.const import S3GEN_SIL
    from chatterbox.models.s3tokenizer import drop_invalid_tokens

    model_variant = _variant(variant)
    torch.manual_seed(seed)
    started = time.perf_counter()
    # T3 and S3Gen inference run under torch.inference_mode themselves; loading must not.
    if model_variant is ModelVariant.TURBO:
        from chatterbox.tts_turbo import ChatterboxTurboTTS, punc_norm

        turbo = ChatterboxTurboTTS.from_local(str(ckpt_dir), "cpu")
        _log(f"  from_local in {time.perf_counter() - started:.1f} s")
        text_tokens = turbo.tokenizer(punc_norm(CHECK_TEXT), return_tensors="pt").input_ids
        speech_tokens = turbo.t3.inference_turbo(
            t3_cond=turbo.conds.t3, text_tokens=text_tokens, max_gen_len=5
        )[0]
        s3gen, conds, n_cfm_timesteps = turbo.s3gen, turbo.conds, 2
    elif model_variant is ModelVariant.MULTILINGUAL:
        from chatterbox.mtl_tts import ChatterboxMultilingualTTS
        from chatterbox.mtl_tts import punc_norm as mtl_punc_norm

        with upstream_offline(ckpt_dir):
            multilingual = ChatterboxMultilingualTTS.from_local(str(ckpt_dir), "cpu")
        _log(f"  from_local in {time.perf_counter() - started:.1f} s")
        text_tokens = multilingual.tokenizer.text_to_tokens(
            mtl_punc_norm(CHECK_TEXT), language_id="en"
        )
        text_tokens = torch.cat([text_tokens, text_tokens], dim=0)
        text_tokens = F.pad(text_tokens, (1, 0), value=multilingual.t3.hp.start_text_token)
        text_tokens = F.pad(text_tokens, (0, 1), value=multilingual.t3.hp.stop_text_token)
        speech_tokens = multilingual.t3.inference(
            t3_cond=multilingual.conds.t3, text_tokens=text_tokens, max_new_tokens=5
        )[0]
        speech_tokens = drop_invalid_tokens(speech_tokens)
        s3gen, conds, n_cfm_timesteps = multilingual.s3gen, multilingual.conds, None
    else:
        from chatterbox.tts import ChatterboxTTS, punc_norm

        original = ChatterboxTTS.from_local(str(ckpt_dir), "cpu")
        _log(f"  from_local in {time.perf_counter() - started:.1f} s")
        text_tokens = original.tokenizer.text_to_tokens(punc_norm(CHECK_TEXT))
        # T3.inference always runs classifier-free guidance as a batch of two.
        text_tokens = torch.cat([text_tokens, text_tokens], dim=0)
        text_tokens = F.pad(text_tokens, (1, 0), value=original.t3.hp.start_text_token)
        text_tokens = F.pad(text_tokens, (0, 1), value=original.t3.hp.stop_text_token)
        speech_tokens = original.t3.inference(
            t3_cond=original.conds.t3, text_tokens=text_tokens, max_new_tokens=5, cfg_weight=0.5
        )[0]
        speech_tokens = drop_invalid_tokens(speech_tokens)
        s3gen, conds, n_cfm_timesteps = original.s3gen, original.conds, None

    # As generate() does: drop start/stop ids, end on silence (which also keeps it non-empty).
    speech_tokens = speech_tokens[speech_tokens < 6561]
    silence = torch.tensor([S3GEN_SIL] * 3, dtype=torch.long)
    speech_tokens = torch.cat([speech_tokens.long(), silence])
    wav, _ = s3gen.inference(
        speech_tokens=speech_tokens, ref_dict=conds.gen, n_cfm_timesteps=n_cfm_timesteps
    )
    if wav.numel() == 0 or not bool(torch.isfinite(wav).all()):
        raise RuntimeError(f"{variant} checkpoint at {ckpt_dir} produced empty or non-finite audio")
    samples = int(wav.numel())
    _log(
        f"check passed: {len(speech_tokens)} tokens -> {samples} finite samples, "
        f"peak {float(wav.abs().max()):.3f}, in {time.perf_counter() - started:.1f} s"
    )
    return samples
