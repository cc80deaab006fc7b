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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from server.engine.cpu_kernels import pack_linears, packing_available, use_native_transposed_convs

logger = logging.getLogger(__name__)


class ModelVariant(StrEnum):
    TURBO = "turbo"
    ORIGINAL = "original"


@dataclass(frozen=True)
class CheckpointLayout:
    """File names of one variant's official checkpoint directory."""

    hub_repo: str
    t3_file: str
    s3gen_file: str
    tokenizer_files: tuple[str, ...]
    ve_file: str = "ve.safetensors"
    builtin_voice_file: str = "conds.pt"

    @property
    def required_files(self) -> tuple[str, ...]:
        return (self.ve_file, self.t3_file, self.s3gen_file, *self.tokenizer_files)


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
}

TURBO_TEXT_VOCAB_SIZE = 50276


class CheckpointNotFoundError(RuntimeError):
    """No usable checkpoint: the message says how to provide one."""


@dataclass
class LoadedModel:
    """The modules of one Chatterbox model, ready for inference on `device`."""

    variant: ModelVariant
    device: torch.device
    t3: Any  # chatterbox.models.t3.T3
    s3gen: Any  # chatterbox.models.s3gen.S3Gen
    voice_encoder: Any  # chatterbox.models.voice_encoder.VoiceEncoder
    text_to_tokens: Callable[[str], torch.Tensor]
    builtin_conds: Any | None  # chatterbox.tts_turbo.Conditionals
    ckpt_dir: Path
    load_seconds: float

    @property
    def meanflow(self) -> bool:
        return self.variant is ModelVariant.TURBO

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


def missing_files(variant: ModelVariant, ckpt_dir: Path) -> list[str]:
    return [f for f in LAYOUTS[variant].required_files if not (ckpt_dir / f).is_file()]


def resolve_checkpoint_dir(variant: ModelVariant, ckpt_dir: Path | None) -> Path:
    """A local directory in the official layout: the given one, or the hub's (cached) snapshot."""
    layout = LAYOUTS[variant]
    if ckpt_dir is not None:
        missing = missing_files(variant, ckpt_dir)
        if missing:
            raise CheckpointNotFoundError(
                f"{ckpt_dir} is not a {variant} checkpoint directory: missing {', '.join(missing)}"
            )
        return ckpt_dir
    return _hub_snapshot(layout)


def _hub_snapshot(layout: CheckpointLayout) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.safetensors", "*.json", "*.txt", "*.pt", "*.model"]
    hint = (
        f"Could not get the checkpoint {layout.hub_repo} from the Hugging Face hub or its cache. "
        "Pass --ckpt-dir DIR (env CKPT_DIR) pointing to a directory in the official layout "
        f"({', '.join(layout.required_files)}, {layout.builtin_voice_file}), or run once with "
        "network access (and HF_TOKEN if needed) to fill the hub cache."
    )
    try:
        return Path(
            snapshot_download(layout.hub_repo, allow_patterns=patterns, local_files_only=True)
        )
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
) -> LoadedModel:
    """Load a model from `ckpt_dir` (or the hub) onto `device`, skipping random initialisation.

    `cpu_kernels`: on the CPU, swap layers for the faster kernels of `cpu_kernels.py` (results
    equal up to float summation order). False keeps upstream's modules exactly, e.g. to compare
    parameters or tokens bit for bit with upstream.
    """
    # Importing chatterbox costs seconds of its own (torch, transformers, diffusers, librosa);
    # it is paid once per process and not counted as loading (tts_turbo imports the modules).
    from chatterbox.tts_turbo import Conditionals
    from transformers.initialization import no_init_weights

    device = torch.device(device)
    ckpt_dir = resolve_checkpoint_dir(variant, ckpt_dir)
    layout = LAYOUTS[variant]
    started = time.perf_counter()
    # safetensors places tensors straight on the target device; no CPU round trip on CUDA.
    map_location = str(device)
    with no_init_weights():
        voice_encoder, t3, s3gen = build_modules(variant)

    # On CUDA the loaded tensors are fresh allocations and are adopted as they are. On the CPU
    # safetensors hands out views of the memory-mapped file at unaligned offsets, which makes
    # every matmul several times slower: there they are copied into the (aligned) parameters.
    assign = device.type != "cpu"

    swap_kernels = cpu_kernels and packing_available(device)

    def load_weights(module: torch.nn.Module, file: str, strict: bool = True) -> None:
        state = load_file(ckpt_dir / file, device=map_location)
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
            pool.submit(load_weights, s3gen, layout.s3gen_file, variant is ModelVariant.TURBO),
        ]
        tokenizer_job = pool.submit(_load_text_tokenizer, variant, ckpt_dir, device)
        for job in jobs:
            job.result()
        text_to_tokens = tokenizer_job.result()
    if variant is ModelVariant.TURBO:
        del t3.tfmr.wte  # unused: T3 feeds its own embeddings (as upstream does)
    for module in (voice_encoder, t3, s3gen):
        module.to(device).eval()

    builtin_conds = None
    voice_file = ckpt_dir / layout.builtin_voice_file
    if voice_file.is_file():
        builtin_conds = Conditionals.load(voice_file, map_location="cpu").to(device)
    seconds = time.perf_counter() - started
    logger.info(
        "loaded %s from %s on %s in %.2f s%s",
        variant,
        ckpt_dir,
        device,
        seconds,
        " (oneDNN CPU kernels)" if swap_kernels else "",
    )
    return LoadedModel(
        variant=variant,
        device=device,
        t3=t3,
        s3gen=s3gen,
        voice_encoder=voice_encoder,
        text_to_tokens=text_to_tokens,
        builtin_conds=builtin_conds,
        ckpt_dir=ckpt_dir,
        load_seconds=seconds,
    )


def _assign(
    module: torch.nn.Module, state: dict[str, torch.Tensor], assign: bool, *, strict: bool = True
) -> None:
    result = module.load_state_dict(state, strict=strict, assign=assign)
    if not strict and result.unexpected_keys:
        logger.warning("unexpected keys in checkpoint: %s", result.unexpected_keys[:5])


def _load_text_tokenizer(
    variant: ModelVariant, ckpt_dir: Path, device: torch.device
) -> Callable[[str], torch.Tensor]:
    """Normalised text to a (1, n) tensor of T3 text tokens, as upstream tokenises it."""
    if variant is ModelVariant.TURBO:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(ckpt_dir)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if len(tokenizer) != TURBO_TEXT_VOCAB_SIZE:
            logger.warning("tokenizer has %d entries, expected 50276", len(tokenizer))

        def turbo_tokens(text: str) -> torch.Tensor:
            ids: torch.Tensor = tokenizer(
                text, return_tensors="pt", padding=True, truncation=True
            ).input_ids
            return ids.to(device)

        return turbo_tokens

    from chatterbox.models.tokenizers import EnTokenizer

    en_tokenizer = EnTokenizer(str(ckpt_dir / "tokenizer.json"))

    def original_tokens(text: str) -> torch.Tensor:
        ids: torch.Tensor = en_tokenizer.text_to_tokens(text)
        return ids.to(device)

    return original_tokens
