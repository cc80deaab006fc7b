"""The voice library: named voices stored as precomputed conditionals in a directory.

Conditionals are the model's own (each model conditions on a voice in its own way), and the
audio they came from is not kept: a voice records the model it was made for (`model`, the
engine's `model_name`) and is only used with that model. Voices saved before models were
recorded have none (`model` null): they are used with any, as they always were.

Workers of one host share the directory, so a voice saved through any of them is usable by all
(each reads the file when it changes). Ids are generated (`[a-z0-9-]`), never taken from paths.

Nothing is ever half-written where a reader looks: a voice is written and flushed to disk in a
staging directory, then renamed into place, and a voice that exists already (the same name and
audio give the same id) has its files replaced one by one, each by a rename. Files damaged on
disk (a crash, a full disk, someone's editor) are skipped with a warning naming them, never an
error for the whole library.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from server.engine.conditionals import VoiceConditionals, load_conditionals, save_conditionals

logger = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_NAME_CHARS = 64
VOICE_FILE = "voice.pt"
META_FILE = "meta.json"
STAGING_PREFIX = ".incoming-"
DELETING_PREFIX = ".deleting-"
# A save that finds its voice deleted between two steps starts over; more than a few rounds
# would mean something else keeps deleting it.
PUBLISH_ATTEMPTS = 3


class VoiceNotFoundError(KeyError):
    pass


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    created_at: float
    prompt_sha256: str
    model: str | None = None  # the model it was made for; None: saved before this was kept

    def fits(self, model: str) -> bool:
        """Whether the voice can be used with `model`."""
        return self.model is None or self.model == model


# Fields a voice's metadata may lack: those added since voices were first saved.
OPTIONAL_INFO_FIELDS = frozenset({"model"})


@dataclass(frozen=True)
class SavedVoice:
    info: VoiceInfo
    conditionals: VoiceConditionals


def voice_id_for(name: str, prompt_sha256: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "voice"
    return f"{slug}-{prompt_sha256[:8]}"


def valid_voice_id(voice_id: str) -> bool:
    return bool(ID_PATTERN.fullmatch(voice_id))


def parse_info(raw: Any, voice_id: str) -> VoiceInfo:
    """A voice's metadata as read from its directory `voice_id`; ValueError if it is not ours."""
    required = set(VoiceInfo.__dataclass_fields__) - OPTIONAL_INFO_FIELDS
    if not isinstance(raw, dict) or not required <= set(raw):
        raise ValueError("not a voice's metadata")
    created = raw["created_at"]
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise ValueError("created_at is not a number")
    if not math.isfinite(created):
        raise ValueError("created_at is not finite")
    if not isinstance(raw["name"], str) or not isinstance(raw["prompt_sha256"], str):
        raise ValueError("name and prompt_sha256 must be strings")
    if raw["id"] != voice_id:
        raise ValueError(f"its id {raw['id']!r} is not its directory's name")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError("model must be a string")
    return VoiceInfo(voice_id, raw["name"], float(created), raw["prompt_sha256"], model)


class VoiceLibrary:
    def __init__(self, root: Path, device: torch.device):
        self.root = root
        self.device = device
        self.root.mkdir(parents=True, exist_ok=True)
        # By id: the voice with its files' modification times when it was read.
        self._cache: dict[str, tuple[tuple[int, int], SavedVoice]] = {}
        self._lock = threading.Lock()
        self._reported: set[tuple[Path, int]] = set()  # damaged files warned about

    def save(self, name: str, voice: VoiceConditionals, model: str) -> VoiceInfo:
        """Save `voice`, made by `model`, under `name`. The same name and audio give the same
        id whatever the model: saving it again with another model replaces it."""
        info = VoiceInfo(voice_id_for(name, voice.key), name, time.time(), voice.key, model)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        try:
            save_conditionals(voice, staging / VOICE_FILE)
            _fsync(staging / VOICE_FILE)
            (staging / META_FILE).write_text(json.dumps(asdict(info)))
            _fsync(staging / META_FILE)
            self._publish(staging, self.root / info.id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return info

    def _publish(self, staging: Path, target: Path) -> None:
        for _ in range(PUBLISH_ATTEMPTS):
            try:
                os.rename(staging, target)  # atomic: other workers never see half a voice
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            # The id exists (the same name and audio, saved before or right now by another
            # request): replace its files, each by a rename, the voice file first, so both are
            # whole at every moment and the last save's name wins.
            try:
                for file in (VOICE_FILE, META_FILE):
                    os.replace(staging / file, target / file)
                break
            except FileNotFoundError:
                continue  # deleted meanwhile: publish it anew
        else:
            raise OSError(f"could not save voice {target.name}: it keeps being deleted")
        _fsync(target)
        _fsync(self.root)  # the rename itself survives a power cut
        with self._lock:
            self._cache.pop(target.name, None)

    def list(self) -> list[VoiceInfo]:
        voices = []
        for meta in sorted(self.root.glob(f"*/{META_FILE}")):
            if meta.parent.name.startswith("."):
                continue  # being saved or deleted
            info = self._read_info(meta)
            if info is not None:
                voices.append(info)
        return sorted(voices, key=lambda v: v.created_at)

    def _read_info(self, meta: Path) -> VoiceInfo | None:
        voice_id = meta.parent.name
        try:
            info = parse_info(json.loads(meta.read_bytes()), voice_id)
            if not valid_voice_id(voice_id):
                raise ValueError("its directory's name is not a voice id")
            voice = meta.parent / VOICE_FILE
            if not voice.is_file():
                raise ValueError(f"it has no {VOICE_FILE}")
            damaged = (voice, voice.stat().st_mtime_ns) in self._reported
        except FileNotFoundError:
            return None  # deleted meanwhile
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeError included
            self._report(meta, exc)
            return None
        return None if damaged else info

    def load(self, voice_id: str) -> VoiceConditionals:
        return self.load_saved(voice_id).conditionals

    def load_saved(self, voice_id: str) -> SavedVoice:
        """A voice's conditionals with its metadata (the model it was made for)."""
        path = self._path(voice_id) / VOICE_FILE
        meta = path.parent / META_FILE
        try:
            # Both files: a save replaces them one at a time (another worker's, too).
            stamps = (path.stat().st_mtime_ns, meta.stat().st_mtime_ns)
        except OSError:
            raise VoiceNotFoundError(voice_id) from None
        with self._lock:
            cached = self._cache.get(voice_id)
            if cached and cached[0] == stamps:
                return cached[1]
            if (path, stamps[0]) in self._reported:
                raise VoiceNotFoundError(voice_id)  # damaged, and not rewritten since
        info = self._read_info(meta)
        if info is None:
            raise VoiceNotFoundError(voice_id)  # deleted meanwhile, or damaged (reported)
        try:
            voice = SavedVoice(info, load_conditionals(path, self.device))
        except FileNotFoundError:
            raise VoiceNotFoundError(voice_id) from None
        except Exception as exc:  # torch.load raises many types for a damaged file
            self._report(path, exc)
            raise VoiceNotFoundError(voice_id) from None
        with self._lock:
            self._cache[voice_id] = (stamps, voice)
        return voice

    def check(self) -> int:
        """Read every voice once (on the CPU), warn about each damaged file and log how many
        voices are whole: meant for a worker's start, so damage shows in its log at once."""
        whole = 0
        try:
            voices = self.list()
        except OSError as exc:
            logger.warning("voice library: %s could not be read (%s)", self.root, exc)
            return 0
        for info in voices:
            path = self.root / info.id / VOICE_FILE
            try:
                load_conditionals(path, torch.device("cpu"))
            except FileNotFoundError:
                continue  # deleted meanwhile
            except Exception as exc:
                self._report(path, exc)
                continue
            whole += 1
        logger.info("voice library: %d voice(s) in %s", whole, self.root)
        return whole

    def delete(self, voice_id: str) -> None:
        target = self._path(voice_id)
        if not target.is_dir():
            raise VoiceNotFoundError(voice_id)
        # Renamed away first, so readers see the whole voice or none of it.
        doomed = Path(tempfile.mkdtemp(prefix=DELETING_PREFIX, dir=self.root))
        try:
            os.replace(target, doomed)
        except FileNotFoundError:
            raise VoiceNotFoundError(voice_id) from None
        finally:
            shutil.rmtree(doomed, ignore_errors=True)
        with self._lock:
            self._cache.pop(voice_id, None)

    def _path(self, voice_id: str) -> Path:
        if not valid_voice_id(voice_id):
            raise VoiceNotFoundError(voice_id)
        return self.root / voice_id

    def _report(self, path: Path, exc: Exception) -> None:
        """Warn once per damaged file (per version of it: a rewrite that fails again warns
        again)."""
        try:
            key = (path, path.stat().st_mtime_ns)
        except OSError:
            key = (path, 0)
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
        logger.warning("voice library: skipping damaged %s (%s: %s)", path, type(exc).__name__, exc)


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
