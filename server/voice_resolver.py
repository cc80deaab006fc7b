"""One place that turns a request's voice into engine conditionals.

A request names its voice in one of four ways: nothing or "default" (the checkpoint's built-in
voice), a saved voice's id or name, an OpenAI voice name (the built-in voice, unless a saved
voice has that name, so a deployment can give each name a voice of its own), or an uploaded
audio prompt. A saved voice made for another model than the one loaded is refused (409): its
conditionals are that model's, and its audio is not kept to make them again. Resolving happens
in two steps: everything that can refuse the request (an unknown name, a prompt that does not
decode) before the request takes a place in line, and the model work (a prompt's
conditionals, cached by content) on the device, in turn with the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from server.engine.conditionals import AudioPromptError, VoiceConditionals, audio_key
from server.engine.runners import EngineRunner
from server.engine.types import Audio
from server.errors import Conflict, FieldError
from server.voices import MAX_NAME_CHARS, SavedVoice, VoiceLibrary, VoiceNotFoundError

OPENAI_VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ]
)
BUILTIN_VOICE_NAMES = frozenset({"default", "builtin"})


@dataclass(frozen=True)
class VoiceChoice:
    """What a request said about its voice, and the field names its errors should cite."""

    name: str | None = None  # a saved voice's id or name, an OpenAI voice name, or "default"
    prompt: bytes | None = field(default=None, repr=False)  # an audio file's bytes
    name_field: str = "voice"
    prompt_field: str = "audio_prompt"


class ResolvedVoice:
    """A voice known to be usable; `conditionals()` does any model work it still needs."""

    def __init__(
        self,
        runner: EngineRunner,
        voice: VoiceConditionals | None = None,
        prompt: tuple[str, Audio] | None = None,
        prompt_field: str = "audio_prompt",
    ):
        self._runner = runner
        self._voice = voice
        self._prompt = prompt
        self._prompt_field = prompt_field

    async def conditionals(self) -> VoiceConditionals | None:
        """The voice's conditionals (None: the built-in voice)."""
        if self._prompt is None:
            return self._voice
        key, wav = self._prompt
        voices = self._runner.engine.voices
        try:
            return await self._runner.run(lambda: voices.from_decoded(key, wav))
        except AudioPromptError as exc:
            raise FieldError(self._prompt_field, str(exc)) from None


class VoiceResolver:
    def __init__(self, library: VoiceLibrary, runner: EngineRunner):
        self.library = library
        self._runner = runner

    @property
    def model_name(self) -> str:
        """The loaded model, which new voices are made for."""
        return self._runner.engine.model_name

    async def resolve(self, choice: VoiceChoice) -> ResolvedVoice:
        if choice.prompt is not None:
            if choice.name is not None:
                raise FieldError(choice.name_field, "give either a voice or an audio prompt")
            return await self._from_prompt(choice.prompt, choice.prompt_field)
        if choice.name is None or choice.name.lower() in BUILTIN_VOICE_NAMES:
            return ResolvedVoice(self._runner)
        saved = await asyncio.to_thread(self._saved, choice.name)
        if saved is not None:
            self._check_model(saved, choice.name_field)
            return ResolvedVoice(self._runner, saved.conditionals)
        if choice.name.lower() in OPENAI_VOICES:
            return ResolvedVoice(self._runner)
        raise FieldError(
            choice.name_field,
            f"unknown voice {shown_name(choice.name)}",
            "a saved voice's id or name, an OpenAI voice name, or 'default'",
        )

    async def conditionals_from_audio(self, audio: bytes, field_name: str) -> VoiceConditionals:
        """A new voice's conditionals from its audio, computed now (in turn)."""
        voice = await (await self._from_prompt(audio, field_name)).conditionals()
        assert voice is not None
        return voice

    async def _from_prompt(self, audio: bytes, field_name: str) -> ResolvedVoice:
        voices = self._runner.engine.voices
        key = audio_key(audio)
        known = voices.lookup(key)
        if known is not None:
            return ResolvedVoice(self._runner, known)
        try:
            wav = await asyncio.to_thread(voices.decode, audio)
        except AudioPromptError as exc:
            raise FieldError(field_name, str(exc)) from None
        return ResolvedVoice(self._runner, prompt=(key, wav), prompt_field=field_name)

    def _check_model(self, saved: SavedVoice, field_name: str) -> None:
        info, model = saved.info, self.model_name
        if not info.fits(model):
            raise Conflict(
                f"voice {shown_name(info.name)} ({info.id}) was made for the {info.model} model "
                f"and this worker runs {model}: save it again from its recording to use it here",
                field_name,
                "voice_model_mismatch",
            )

    def _saved(self, name: str) -> SavedVoice | None:
        """A saved voice by id, else the newest saved voice of that name that can be read
        (one damaged on disk, or deleted meanwhile, is skipped), made for the loaded model
        if there is one."""
        try:
            return self.library.load_saved(name)
        except VoiceNotFoundError:
            pass
        if len(name) > MAX_NAME_CHARS:
            return None  # no saved voice has a name that long
        named = [v for v in self.library.list() if v.name.lower() == name.lower()]
        model = self.model_name
        # Oldest first, and those that fit the model after those that do not: the last one
        # that loads wins.
        named.sort(key=lambda v: (v.fits(model), v.created_at))
        for info in reversed(named):
            try:
                return self.library.load_saved(info.id)
            except VoiceNotFoundError:
                continue
        return None


def shown_name(name: str) -> str:
    """A voice name as error messages quote it: at most `MAX_NAME_CHARS` characters of it."""
    if len(name) <= MAX_NAME_CHARS:
        return repr(name)
    return f"{name[:MAX_NAME_CHARS]!r}... ({len(name)} characters)"
