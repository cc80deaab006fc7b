"""Loading Chatterbox checkpoints fast, from a local directory or the Hugging Face hub.

Upstream `from_local` builds every module with PyTorch's random initialisation and then
overwrites it with the checkpoint: 11-16 s on a CPU, almost all of it thrown away. We build
the same modules with initialisation switched off and assign the checkpoint tensors directly,
so the parameters are identical and loading is bounded by reading the files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file

from server.engine.cpu_kernels import pack_linears, packing_available, use_native_transposed_convs
from server.engine.multilingual_text import (
    MULTILINGUAL_LANGUAGES,
    TOKENIZER_FILE,
    MultilingualTokenizer,
    UnsupportedLanguageError,
)
from server.engine.text_front_ends import CANGJIE_FILE

logger = logging.getLogger(__name__)


class ModelVariant(StrEnum):
    TURBO = "turbo"
    ORIGINAL = "original"
    MULTILINGUAL = "multilingual"


class ModelDtype(StrEnum):
    """What T3 and the S3Gen flow compute in (the worker's `--dtype`); see `set_dtypes`."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"

    @property
    def torch_dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self]


_TORCH_DTYPES = {
    ModelDtype.FLOAT32: torch.float32,
    ModelDtype.BFLOAT16: torch.bfloat16,
    ModelDtype.FLOAT16: torch.float16,
}
# On the CPU, float32: the packed oneDNN kernels that make a CPU worker fast are float32 only
# (cpu_kernels.py), and the CPU's bfloat16 support varies from one machine to the next.
CPU_DTYPE = ModelDtype.FLOAT32
# On CUDA, bfloat16: a T3 decode step of a few rows mostly reads weights, which it halves, and
# the flow's matrix products run on tensor cores; float32's exponent range, so nothing
# overflows as float16 can. Chosen, not yet measured: the GPU check (bench_streaming.py and
# bench_concurrency.py with --dtype bfloat16 and float32) is to confirm it.
CUDA_DTYPE = ModelDtype.BFLOAT16


def default_dtype(device: torch.device | str) -> ModelDtype:
    """The dtype a worker on `device` uses unless told otherwise."""
    return CUDA_DTYPE if torch.device(device).type == "cuda" else CPU_DTYPE


@dataclass(frozen=True)
class CheckpointLayout:
    """File names of one variant's official checkpoint directory."""

    hub_repo: str
    t3_file: str
    s3gen_file: str
    tokenizer_files: tuple[str, ...]
    ve_file: str = "ve.safetensors"
    builtin_voice_file: str = "conds.pt"
    # Files some features need (without them those features are off, with a warning).
    optional_files: tuple[str, ...] = ()

    @property
    def required_files(self) -> tuple[str, ...]:
        return (self.ve_file, self.t3_file, self.s3gen_file, *self.tokenizer_files)

    def hub_patterns(self) -> list[str]:
        """What to fetch from the hub. The original and multilingual models share a repository
        that holds both (and more): each takes only its own files. Turbo's tokenizer files
        are whatever AutoTokenizer finds, hence patterns."""
        if not self.tokenizer_files:
            return ["*.safetensors", "*.json", "*.txt", "*.pt", "*.model"]
        return [*self.required_files, *self.optional_files, self.builtin_voice_file]


LAYOUTS: dict[ModelVariant, CheckpointLayout] = {
    ModelVariant.TURBO: CheckpointLayout(
        hub_repo="ResembleAI/chatterbox-turbo",
        t3_file="t3_turbo_v1.safetensors",
        s3gen_file="s3gen_meanflow.safetensors",
        # A Hugging Face tokenizer: tokenizer.json or vocab.json + merges.txt; AutoTokenizer
        # says precisely what is missing, so no file is required up front.
        tokenizer_files=(),
    ),
    ModelVariant.ORIGINAL: CheckpointLayout(
        hub_repo="ResembleAI/chatterbox",
        t3_file="t3_cfg.safetensors",
        s3gen_file="s3gen.safetensors",
        tokenizer_files=("tokenizer.json",),
    ),
    # What upstream's ChatterboxMultilingualTTS.from_pretrained fetches: torch files for the
    # voice encoder and S3Gen, and the Cangjie table (Chinese only) beside the tokenizer.
    ModelVariant.MULTILINGUAL: CheckpointLayout(
        hub_repo="ResembleAI/chatterbox",
        t3_file="t3_mtl23ls_v2.safetensors",
        s3gen_file="s3gen.pt",
        tokenizer_files=(TOKENIZER_FILE,),
        ve_file="ve.pt",
        optional_files=(CANGJIE_FILE,),
    ),
}

TURBO_TEXT_VOCAB_SIZE = 50276
ENGLISH = "en"  # what the English-only models speak (ISO 639-1)


class CheckpointNotFoundError(RuntimeError):
    """No usable checkpoint: the message says how to provide one."""


class TextToTokens(Protocol):
    def __call__(self, text: str, language: str = ENGLISH) -> torch.Tensor:
        """Normalised text in `language` to a (1, n) tensor of T3 text tokens, as upstream
        tokenises it; raises `UnsupportedLanguageError` for a language it cannot prepare."""
        ...


@dataclass
class LoadedModel:
    """The modules of one Chatterbox model, ready for inference on `device`."""

    variant: ModelVariant
    device: torch.device
    t3: Any  # chatterbox.models.t3.T3
    s3gen: Any  # chatterbox.models.s3gen.S3Gen
    voice_encoder: Any  # chatterbox.models.voice_encoder.VoiceEncoder
    text_to_tokens: TextToTokens
    builtin_conds: Any | None  # chatterbox.tts_turbo.Conditionals
    ckpt_dir: Path
    load_seconds: float
    languages: tuple[str, ...] = (ENGLISH,)
    # Languages the model speaks that cannot be prepared here, with the reason.
    unavailable_languages: Mapping[str, str] = field(default_factory=dict)
    # T3's and the S3Gen flow's; the rest is float32 (`set_dtypes`).
    dtype: torch.dtype = torch.float32

    @property
    def meanflow(self) -> bool:
        return self.variant is ModelVariant.TURBO

    @property
    def guided(self) -> bool:
        """Llama T3 with classifier-free guidance and start/stop text tokens (not Turbo)."""
        return self.variant is not ModelVariant.TURBO

    def check_language(self, language: str) -> None:
        """Raises `UnsupportedLanguageError` unless the model can speak `language` here."""
        reason = self.unavailable_languages.get(language)
        if language not in self.languages:
            raise UnsupportedLanguageError(
                f"the {self.variant} model does not speak {language!r}; it speaks "
                + ", ".join(self.languages)
            )
        if reason is not None:
            name = MULTILINGUAL_LANGUAGES.get(language, language)
            raise UnsupportedLanguageError(f"{name} ({language}) is not available here: {reason}")

    @property
    def flow_timesteps(self) -> int:
        """Upstream's default: 2 meanflow steps (Turbo), 10 flow-matching steps (original)."""
        return 2 if self.meanflow else 10


def turbo_t3_config() -> Any:
    """The T3 hyper-parameters upstream `ChatterboxTurboTTS.from_local` uses."""
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config(text_tokens_dict_size=TURBO_TEXT_VOCAB_SIZE)
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


def t3_config(variant: ModelVariant) -> Any:
    """The T3 hyper-parameters of `variant`, as upstream's `from_local` sets them up."""
    if variant is ModelVariant.TURBO:
        return turbo_t3_config()
    from chatterbox.models.t3.modules.t3_config import T3Config

    if variant is ModelVariant.MULTILINGUAL:
        return T3Config.multilingual()
    return T3Config.english_only()  # what a bare T3() uses


def build_modules(variant: ModelVariant) -> tuple[Any, Any, Any]:
    """`variant`'s voice encoder, T3 and S3Gen, constructed in that order as upstream does.

    Their weights are PyTorch's random initialisation unless built under `no_init_weights`.
    `load_model` fills them from a checkpoint; `random_checkpoint` saves them as one.
    """
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.voice_encoder import VoiceEncoder

    voice_encoder = VoiceEncoder()
    t3 = T3(t3_config(variant))
    s3gen = S3Gen(meanflow=variant is ModelVariant.TURBO)
    return voice_encoder, t3, s3gen


def set_dtypes(voice_encoder: Any, t3: Any, s3gen: Any, dtype: torch.dtype) -> None:
    """Give the modules of a model their dtypes: T3 and the S3Gen flow (its encoder and its
    flow-matching or mean-flow decoder) in `dtype`; the rest in float32, whatever the device
    and whatever dtypes the tensors had before (a checkpoint's own, on CUDA).

    The large matrix products are in T3 and the flow, which is where a 16-bit dtype pays. The
    vocoder (HiFT) stays float32: its sine source is a cumulative sum of phase over every
    sample, whose fraction of a cycle 16 bits lose after a few hundred cycles, and it ends in
    an inverse STFT. The voice encoder, S3Gen's speaker encoder and speech tokenizer run once
    per new voice and cost little; float32 there keeps a voice's conditionals the same whatever
    the dtype (they are cast where they are used). Buffers a module computes at construction,
    not in the checkpoint (the Llama T3's rotary frequencies), stay float32: 16 bits would
    misplace distant positions.
    """
    if dtype not in _TORCH_DTYPES.values():
        raise ValueError(f"unsupported dtype {dtype}; one of {', '.join(ModelDtype)}")
    voice_encoder.to(torch.float32)
    s3gen.to(torch.float32)
    for module in (t3, s3gen.flow):
        _cast_keeping_computed_buffers(module, dtype)


def _cast_keeping_computed_buffers(module: torch.nn.Module, dtype: torch.dtype) -> None:
    in_checkpoint = set(module.state_dict())
    computed = [name for name, _ in module.named_buffers() if name not in in_checkpoint]
    module.to(dtype)
    for name in computed:
        owner_path, _, attribute = name.rpartition(".")
        owner = module.get_submodule(owner_path)
        buffer = getattr(owner, attribute)
        if buffer.is_floating_point() and buffer.dtype != torch.float32:
            setattr(owner, attribute, buffer.to(torch.float32))


def adopts_loaded_tensors(device: torch.device) -> bool:
    """Whether the loader adopts the checkpoint's tensors as the parameters (keeping their
    dtypes until `set_dtypes`) rather than copying them into the parameters (converting).

    On CUDA the loaded tensors are fresh allocations and are adopted as they are. On the CPU
    safetensors hands out views of the memory-mapped file at unaligned offsets, which makes
    every matmul several times slower: there they are copied into the (aligned) parameters."""
    return device.type != "cpu"


def read_state(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """A checkpoint file's tensors on `device`: safetensors, or a torch state dict (`.pt`)."""
    if path.suffix == ".safetensors":
        # safetensors places tensors straight on the target device; no CPU round trip on CUDA.
        return load_file(path, device=str(device))
    # Memory-mapped on the CPU, so the file is read once, by the copy into the parameters.
    state: dict[str, torch.Tensor] = torch.load(
        path, map_location=device, weights_only=True, mmap=device.type == "cpu"
    )
    return state


def missing_files(variant: ModelVariant, ckpt_dir: Path) -> list[str]:
    return [f for f in LAYOUTS[variant].required_files if not (ckpt_dir / f).is_file()]


def resolve_checkpoint_dir(variant: ModelVariant, ckpt_dir: Path | None) -> Path:
    """A local directory in the official layout: the given one, or the hub's (cached) snapshot."""
    if ckpt_dir is not None:
        missing = missing_files(variant, ckpt_dir)
        if missing:
            raise CheckpointNotFoundError(
                f"{ckpt_dir} is not a {variant} checkpoint directory: missing {', '.join(missing)}"
            )
        return ckpt_dir
    return _hub_snapshot(variant)


def _hub_snapshot(variant: ModelVariant) -> Path:
    from huggingface_hub import snapshot_download

    layout = LAYOUTS[variant]
    patterns = layout.hub_patterns()
    hint = (
        f"Could not get the checkpoint {layout.hub_repo} from the Hugging Face hub or its cache. "
        "Pass --ckpt-dir DIR (env CKPT_DIR) pointing to a directory in the official layout "
        f"({', '.join(layout.required_files)}, {layout.builtin_voice_file}), or run once with "
        "network access (and HF_TOKEN if needed) to fill the hub cache."
    )
    try:
        cached = Path(
            snapshot_download(layout.hub_repo, allow_patterns=patterns, local_files_only=True)
        )
        # The cache may hold another variant's files of the same repository only.
        if not missing_files(variant, cached):
            return cached
    except Exception:
        pass  # not cached yet: try the network unless the user said offline
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise CheckpointNotFoundError(hint + " (HF_HUB_OFFLINE is set)")
    # huggingface_hub retries for a long time by default; one short attempt tells us enough.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return Path(
            snapshot_download(
                layout.hub_repo, allow_patterns=patterns, token=os.getenv("HF_TOKEN") or None
            )
        )
    except Exception as exc:
        raise CheckpointNotFoundError(f"{hint} ({type(exc).__name__}: {exc})") from exc


def load_model(
    variant: ModelVariant,
    ckpt_dir: Path | None,
    device: torch.device | str,
    *,
    cpu_kernels: bool = True,
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load a model from `ckpt_dir` (or the hub) onto `device`, skipping random initialisation.

    `cpu_kernels`: on the CPU, swap layers for the faster kernels of `cpu_kernels.py` (results
    equal up to float summation order). False keeps upstream's modules exactly, e.g. to compare
    parameters or tokens bit for bit with upstream. `dtype`: T3's and the S3Gen flow's (the
    rest is float32: `set_dtypes`); float32 by default on every device, as upstream loads (the
    worker's default depends on the device: `default_dtype`).
    """
    # Importing chatterbox costs seconds of its own (torch, transformers, diffusers, librosa);
    # it is paid once per process and not counted as loading (tts_turbo imports the modules).
    from chatterbox.tts_turbo import Conditionals
    from transformers.initialization import no_init_weights

    device = torch.device(device)
    ckpt_dir = resolve_checkpoint_dir(variant, ckpt_dir)
    layout = LAYOUTS[variant]
    started = time.perf_counter()
    with no_init_weights():
        voice_encoder, t3, s3gen = build_modules(variant)
    assign = adopts_loaded_tensors(device)
    if not assign:
        # Before copying the checkpoint into the parameters, so that the copy converts it (and
        # the packed kernels see which layers stay float32). Adopted tensors keep the file's
        # dtypes until `set_dtypes` below, which decides on every path.
        set_dtypes(voice_encoder, t3, s3gen, dtype)

    swap_kernels = cpu_kernels and packing_available(device)
    if swap_kernels and dtype != torch.float32:
        logger.info(
            "oneDNN packed linears are float32 only: T3 and the S3Gen flow (%s) keep "
            "PyTorch's kernels",
            dtype,
        )

    def load_weights(module: torch.nn.Module, file: str, strict: bool = True) -> None:
        state = read_state(ckpt_dir / file, device)
        if swap_kernels:
            # Linear weights are packed from the file's tensors directly, never copied into
            # parameters first (that copy would be thrown away).
            pack_linears(module, state)
        _assign(module, state, assign, strict=strict)
        if swap_kernels:
            use_native_transposed_convs(module)

    # The copies are memory-bound page-fault work that releases the GIL: two threads overlap
    # them, and the text tokenizer's JSON parsing runs alongside.
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [
            pool.submit(load_weights, voice_encoder, layout.ve_file),
            pool.submit(load_weights, t3, layout.t3_file),
            # Upstream loads the original S3Gen non-strictly: the tokenizer's mel filters and
            # window are buffers computed at construction, absent from the file.
            pool.submit(
                load_weights, s3gen, layout.s3gen_file, variant is not ModelVariant.ORIGINAL
            ),
        ]
        tokenizer_job = pool.submit(_load_text_tokenizer, variant, ckpt_dir, device)
        for job in jobs:
            job.result()
        text = tokenizer_job.result()
    if variant is ModelVariant.TURBO:
        del t3.tfmr.wte  # unused: T3 feeds its own embeddings (as upstream does)
    for module in (voice_encoder, t3, s3gen):
        module.to(device).eval()
    set_dtypes(voice_encoder, t3, s3gen, dtype)

    builtin_conds = None
    voice_file = ckpt_dir / layout.builtin_voice_file
    if voice_file.is_file():
        builtin_conds = Conditionals.load(voice_file, map_location="cpu").to(device)
    seconds = time.perf_counter() - started
    logger.info(
        "loaded %s from %s on %s (%s) in %.2f s%s",
        variant,
        ckpt_dir,
        device,
        dtype,
        seconds,
        " (oneDNN CPU kernels)" if swap_kernels else "",
    )
    return LoadedModel(
        variant=variant,
        device=device,
        t3=t3,
        s3gen=s3gen,
        voice_encoder=voice_encoder,
        text_to_tokens=text.text_to_tokens,
        builtin_conds=builtin_conds,
        ckpt_dir=ckpt_dir,
        load_seconds=seconds,
        languages=text.languages,
        unavailable_languages=text.unavailable,
        dtype=dtype,
    )


def _assign(
    module: torch.nn.Module, state: dict[str, torch.Tensor], assign: bool, *, strict: bool = True
) -> None:
    result = module.load_state_dict(state, strict=strict, assign=assign)
    if not strict and result.unexpected_keys:
        logger.warning("unexpected keys in checkpoint: %s", result.unexpected_keys[:5])


@dataclass(frozen=True)
class _Text:
    text_to_tokens: TextToTokens
    languages: tuple[str, ...] = (ENGLISH,)
    unavailable: Mapping[str, str] = field(default_factory=dict)


def _load_text_tokenizer(variant: ModelVariant, ckpt_dir: Path, device: torch.device) -> _Text:
    """Normalised text to a (1, n) tensor of T3 text tokens, as upstream tokenises it."""
    if variant is ModelVariant.MULTILINGUAL:
        tokenizer = MultilingualTokenizer.from_dir(ckpt_dir)

        def multilingual_tokens(text: str, language: str = ENGLISH) -> torch.Tensor:
            return tokenizer.text_to_tokens(text, language).to(device)

        return _Text(multilingual_tokens, tokenizer.languages, tokenizer.unavailable)

    if variant is ModelVariant.TURBO:
        from transformers import AutoTokenizer

        auto_tokenizer = AutoTokenizer.from_pretrained(ckpt_dir)
        if auto_tokenizer.pad_token is None:
            auto_tokenizer.pad_token = auto_tokenizer.eos_token
        if len(auto_tokenizer) != TURBO_TEXT_VOCAB_SIZE:
            logger.warning("tokenizer has %d entries, expected 50276", len(auto_tokenizer))

        def turbo_tokens(text: str, language: str = ENGLISH) -> torch.Tensor:
            ids: torch.Tensor = auto_tokenizer(
                text, return_tensors="pt", padding=True, truncation=True
            ).input_ids
            return ids.to(device)

        return _Text(turbo_tokens)

    from chatterbox.models.tokenizers import EnTokenizer

    en_tokenizer = EnTokenizer(str(ckpt_dir / "tokenizer.json"))

    def original_tokens(text: str, language: str = ENGLISH) -> torch.Tensor:
        ids: torch.Tensor = en_tokenizer.text_to_tokens(text)
        return ids.to(device)

    return _Text(original_tokens)
