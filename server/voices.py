"""The voice library: named voices stored as precomputed conditionals in a directory.

Workers of one host share the directory, so a voice saved through any of them is usable by all
(each reads the file when it changes). Ids are generated (`[a-z0-9-]`), never taken from paths.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from server.engine.conditionals import VoiceConditionals, load_conditionals, save_conditionals

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_NAME_CHARS = 64
VOICE_FILE = "voice.pt"
META_FILE = "meta.json"


class VoiceNotFoundError(KeyError):
    pass


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    created_at: float
    prompt_sha256: str


def voice_id_for(name: str, prompt_sha256: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "voice"
    return f"{slug}-{prompt_sha256[:8]}"


def valid_voice_id(voice_id: str) -> bool:
    return bool(ID_PATTERN.fullmatch(voice_id))


class VoiceLibrary:
    def __init__(self, root: Path, device: torch.device):
        self.root = root
        self.device = device
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, tuple[int, VoiceConditionals]] = {}
        self._lock = threading.Lock()

    def save(self, name: str, voice: VoiceConditionals) -> VoiceInfo:
        info = VoiceInfo(voice_id_for(name, voice.key), name, time.time(), voice.key)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        try:
            save_conditionals(voice, staging / VOICE_FILE)
            (staging / META_FILE).write_text(json.dumps(asdict(info)))
            target = self.root / info.id
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)  # atomic: other workers never see half a voice
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return info

    def list(self) -> list[VoiceInfo]:
        voices = []
        for meta in sorted(self.root.glob(f"*/{META_FILE}")):
            if meta.parent.name.startswith("."):
                continue
            try:
                voices.append(VoiceInfo(**json.loads(meta.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # being replaced, or not ours
        return sorted(voices, key=lambda v: v.created_at)

    def load(self, voice_id: str) -> VoiceConditionals:
        path = self._path(voice_id) / VOICE_FILE
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            raise VoiceNotFoundError(voice_id) from None
        with self._lock:
            cached = self._cache.get(voice_id)
            if cached and cached[0] == stamp:
                return cached[1]
        voice = load_conditionals(path, self.device)
        with self._lock:
            self._cache[voice_id] = (stamp, voice)
        return voice

    def delete(self, voice_id: str) -> None:
        target = self._path(voice_id)
        if not target.is_dir():
            raise VoiceNotFoundError(voice_id)
        shutil.rmtree(target)
        with self._lock:
            self._cache.pop(voice_id, None)

    def _path(self, voice_id: str) -> Path:
        if not valid_voice_id(voice_id):
            raise VoiceNotFoundError(voice_id)
        return self.root / voice_id
