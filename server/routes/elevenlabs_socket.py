"""ElevenLabs' text-in WebSockets: `/v1/text-to-speech/{voice_id}/stream-input` (one utterance
per socket) and `/multi-stream-input` (up to `--max-socket-contexts` contexts on one socket).

Each context is one text-in stream of the engine: its text is pushed as it arrives and is
generated a segment at a time (`TextFeed`); its audio is encoded in the socket's
`output_format` and sent as `{"audio": base64, "isFinal": false, "contextId", "context_id"}`,
then `{"isFinal": true, ...}` alone once the context is over. Chatterbox produces no alignment,
so none is sent. An extension that stock clients ignore: `segmentStarts`, the sample offsets
(at the output rate, from the context's start) where each text segment's audio begins, on the
message whose audio reaches them.

What the clients do, and what we do for them:
- `{"text": " ", "voice_settings", "generation_config", "context_id"}` opens a context; text
  messages add to it, `flush: true` generates what is buffered.
- `close_context` right after the input was ended with an empty flush (a flush with no text
  since the last text: LiveKit's `{"text": "", "flush": true}`, pipecat's `{"flush": true}`,
  both plugins' end of a turn) lets the rest of the text finish, then `isFinal`. Any other
  `close_context` is an interruption: generation stops at once, no more audio comes for the
  context, `isFinal` follows. That covers text sent with its own flush (LiveKit's default auto
  mode flushes every sentence and, interrupted, sends only `close_context`), text not flushed
  (pipecat mid-turn), and a second `close_context` (pipecat closes every turn's context as its
  text ends, and closes it again when the user interrupts the audio still coming). So no audio
  is made that nobody will hear.
- `{"text": ""}` ends the input on `stream-input` (then `isFinal`, then the server closes the
  socket); on `multi-stream-input` it is a keep-alive (ElevenLabs' documented meaning, pipecat's
  use), so it neither ends a context's input nor undoes an end. `close_socket` ends the socket
  gracefully: contexts not closed yet finish their flushed text (unflushed text is dropped, as
  for an interruption), then the server closes the socket (1000).
- The query's `language_code` (ISO 639-1, any case, default `en`) is the language of every
  context on the socket.
- Errors are `{"message", "error", "code"}` (with the context's id when one context is at
  fault; the socket stays open). Protocol errors close the socket: 1003 for binary frames,
  1007 for invalid JSON, 1008 for a broken limit (`max_active_conversations`, text too long,
  `input_timeout_exceeded` after `inactivity_timeout` seconds without a message) or a bad query
  parameter (a `language_code` the model does not speak among them: `invalid_language_code`,
  the languages it speaks in the message).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from contextlib import aclosing
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.elevenlabs_input import (
    LANGUAGE_FIELD,
    StreamOptions,
    chunk_length_schedule,
    error_code,
    speech_values,
    stream_options,
)
from server.engine.text_feed import DEFAULT_CHUNK_LENGTH_SCHEDULE, TextFeed
from server.engine.types import SAMPLE_RATE
from server.errors import FieldError, ServiceError
from server.forms import parse_speech_fields
from server.synthesis import Synthesis, admit, spoken_languages
from server.websocket_sender import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNSUPPORTED_DATA,
    SocketSender,
)
from server.worker import Worker

logger = logging.getLogger("server")

SINGLE_CONTEXT = ""  # stream-input's one context
MAX_CONTEXT_ID_CHARS = 256


async def stream_input(websocket: WebSocket) -> None:
    await ElevenLabsSocket(websocket, multi=False).serve()


async def multi_stream_input(websocket: WebSocket) -> None:
    await ElevenLabsSocket(websocket, multi=True).serve()


class ProtocolError(Exception):
    """Ends the socket: `{"message", "error", "code"}`, then a close with `code`."""

    def __init__(self, message: str, error: str, code: int):
        super().__init__(message)
        self.error = error
        self.code = code


class Context:
    """One text-in stream on the socket: its feed, its synthesis and the relay of its audio."""

    def __init__(self, socket: ElevenLabsSocket, context_id: str, feed: TextFeed):
        self.socket = socket
        self.id = context_id
        self.feed = feed
        self.chars = 0
        self.unflushed = False  # text arrived since the last flush
        self.input_ended = False  # an empty flush came after the last text
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        self._segment_starts: list[int] = []  # not sent yet

    def start(self, synthesis: Synthesis) -> None:
        self.task = asyncio.create_task(self._relay(synthesis))

    def push(self, text: str, flush: bool) -> None:
        self.chars += len(text)
        if text.strip():
            self.unflushed = not flush
            self.input_ended = False
        elif flush:
            self.unflushed = False
            self.input_ended = True
        self.feed.push(text, flush=flush)

    def close(self) -> None:
        """`close_context`: finish the rest when the input was just ended, else (text or a
        flush with text last, or closed already) stop at once, as for an interruption."""
        if self.input_ended and not self.closing:
            self.finish()
        else:
            self.interrupt()

    def close_with_socket(self) -> None:
        """`close_socket`: finish what was flushed; stop at once when text was not."""
        if self.unflushed:
            self.interrupt()
        else:
            self.finish()

    def interrupt(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.finish()

    def finish(self) -> None:
        """The text is complete: generate the rest of it."""
        self.closing = True
        if not self.feed.ended:
            self.feed.end()

    async def _relay(self, synthesis: Synthesis) -> None:
        fmt = self.socket.options.output_format
        encoder = fmt.encoder()
        try:
            async with aclosing(synthesis.chunks()) as chunks:
                async for chunk in chunks:
                    rate = fmt.sample_rate / SAMPLE_RATE
                    self._segment_starts += [round(s * rate) for s in chunk.segment_starts]
                    await self._send_audio(encoder.encode(chunk.audio))
            await self._send_audio(encoder.finish())
        except asyncio.CancelledError:
            pass  # interrupted (close_context) or the socket ended: no more audio
        except ServiceError as exc:
            await self.socket.send_error(exc, self.id)
        finally:
            self.socket.forget(self)
            await self.socket.send({"isFinal": True, **self.socket.ids(self.id)})
            if not self.socket.multi:
                await self.socket.sender.close(CLOSE_NORMAL)

    async def _send_audio(self, data: bytes) -> None:
        if not data:
            return
        message: dict[str, Any] = {
            "audio": base64.b64encode(data).decode("ascii"),
            "isFinal": False,
            **self.socket.ids(self.id),
        }
        if self._segment_starts:  # our extension; stock clients ignore it
            message["segmentStarts"], self._segment_starts = self._segment_starts, []
        await self.socket.send(message)


class ElevenLabsSocket:
    def __init__(self, websocket: WebSocket, multi: bool):
        self.websocket = websocket
        self.multi = multi
        self.worker: Worker = websocket.app.state.worker
        self.sender = SocketSender(websocket)
        self.endpoint = "v1/multi-stream-input" if multi else "v1/stream-input"
        self.voice_id: str = websocket.path_params["voice_id"]
        self.options: StreamOptions
        self.contexts: dict[str, Context] = {}
        self.closer: asyncio.Task[None] | None = None  # close_socket's: closes when all finish

    async def serve(self) -> None:
        await self.websocket.accept()
        try:
            self.options = stream_options(
                self.websocket.query_params, spoken_languages(self.worker)
            )
            await self._read()
        except ProtocolError as exc:
            await self.send({"message": str(exc), "error": exc.error, "code": exc.code})
            await self.sender.close(exc.code, str(exc))
        except ServiceError as exc:  # a bad query parameter
            await self.send_error(exc)
            await self.sender.close(CLOSE_POLICY_VIOLATION, str(exc))
        except WebSocketDisconnect:
            pass
        finally:
            for context in list(self.contexts.values()):
                if context.task is not None:
                    context.task.cancel()
            await asyncio.gather(
                *(c.task for c in self.contexts.values() if c.task), return_exceptions=True
            )
            if self.closer is not None:
                await self.closer

    async def _read(self) -> None:
        while not self.sender.closed:
            try:
                frame = await asyncio.wait_for(
                    self.websocket.receive(), self.options.inactivity_timeout_s
                )
            except TimeoutError:
                if any(context.closing for context in self.contexts.values()):
                    continue  # no text is expected while closed contexts finish
                raise ProtocolError(
                    f"no text input within the timeout of {self.options.inactivity_timeout_s:g}"
                    ' seconds; send text, a keep-alive ({"text": ""}) or close the context',
                    "input_timeout_exceeded",
                    CLOSE_POLICY_VIOLATION,
                ) from None
            if frame["type"] == "websocket.disconnect":
                return
            if frame.get("text") is None:
                raise ProtocolError(
                    "send JSON text messages, not binary frames",
                    "invalid_message",
                    CLOSE_UNSUPPORTED_DATA,
                )
            try:
                message = json.loads(frame["text"])
            except ValueError:
                message = None
            if not isinstance(message, dict):
                raise ProtocolError(
                    "each message must be a JSON object", "invalid_message", CLOSE_INVALID_PAYLOAD
                )
            try:
                await self._handle(message)
            except ServiceError as exc:
                named = message.get("context_id")
                await self.send_error(exc, named if isinstance(named, str) else None)

    async def _handle(self, message: dict[str, Any]) -> None:
        if self.closer is not None:
            return  # after close_socket: nothing more opens or changes
        if message.get("close_socket") is True:
            for context in list(self.contexts.values()):
                if not context.closing:  # those closing already finish
                    context.close_with_socket()
            # Reading goes on meanwhile, so that a client that leaves first (pipecat waits 2 s
            # for the close) stops the generation nobody would hear.
            self.closer = asyncio.create_task(self._close_when_finished())
            return
        context_id = _context_id(message) if self.multi else SINGLE_CONTEXT
        text = message.get("text")
        if text is not None and not isinstance(text, str):
            raise FieldError("text", "text must be a string")
        flush = message.get("flush") is True
        known = self.contexts.get(context_id) if context_id is not None else None
        if message.get("close_context") is True:
            if known is None:
                raise FieldError("context_id", f"no open context {context_id!r}")
            known.close()
            return
        if not text and not flush and (context_id is None or known is None):
            return  # a keep-alive
        if context_id is None:
            raise FieldError("context_id", "context_id is required on multi-stream-input")
        if known is None:
            context = await self._open(context_id, message)
        elif known.closing:
            raise FieldError("context_id", f"context {context_id!r} is closing")
        elif "voice_settings" in message or "generation_config" in message:
            raise FieldError(
                "context_id",
                f"context {context_id!r} is already open: settings apply when a context opens",
            )
        else:
            context = known
        self._push(context, text or "", flush)
        if text == "" and not self.multi and not flush:
            context.finish()  # stream-input: the end of the text

    async def _open(self, context_id: str, message: dict[str, Any]) -> Context:
        if len(self.contexts) >= self.worker.config.max_socket_contexts:
            raise ProtocolError(
                "Maximum simultaneous contexts per WebSocket connection exceeded "
                f"({self.worker.config.max_socket_contexts}). Please close an existing context "
                "before opening a new one.",
                "max_active_conversations",
                CLOSE_POLICY_VIOLATION,
            )
        schedule = chunk_length_schedule(message.get("generation_config"))
        feed = TextFeed(schedule or DEFAULT_CHUNK_LENGTH_SCHEDULE)
        options = self.options
        values = speech_values(
            self.voice_id, message.get("voice_settings"), options.seed, options.language
        )
        config = self.worker.config
        fields = parse_speech_fields(
            values,
            variant=config.model,
            max_text_chars=config.max_text_chars,
            text_feed=feed,
            languages=spoken_languages(self.worker),
            language_field=LANGUAGE_FIELD,
        )
        synthesis = await admit(self.worker, self.endpoint, fields)
        context = Context(self, context_id, feed)
        self.contexts[context_id] = context
        context.start(synthesis)
        return context

    def _push(self, context: Context, text: str, flush: bool) -> None:
        config = self.worker.config
        if len(text) > config.max_text_chars:
            raise ProtocolError(
                f"a message's text is limited to {config.max_text_chars} characters",
                "message_too_long",
                CLOSE_POLICY_VIOLATION,
            )
        if context.chars + len(text) > config.max_context_chars:
            raise ProtocolError(
                f"a context's text is limited to {config.max_context_chars} characters",
                "context_too_long",
                CLOSE_POLICY_VIOLATION,
            )
        context.push(text, flush)

    async def _close_when_finished(self) -> None:
        tasks = [c.task for c in self.contexts.values() if c.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sender.close(CLOSE_NORMAL)

    def forget(self, context: Context) -> None:
        if self.contexts.get(context.id) is context:
            del self.contexts[context.id]

    def ids(self, context_id: str) -> dict[str, str]:
        """How the context is named in server messages: both spellings (pipecat reads
        `contextId`, LiveKit either); none on stream-input."""
        return {"contextId": context_id, "context_id": context_id} if self.multi else {}

    async def send(self, payload: dict[str, Any]) -> None:
        await self.sender.json(payload)

    async def send_error(self, exc: ServiceError, context_id: str | None = None) -> None:
        payload: dict[str, Any] = {
            "message": str(exc),
            "error": error_code(exc),
            "code": exc.status,
        }
        if exc.field is not None:
            payload["field"] = exc.field
        if exc.retry_after is not None:
            payload["retry_after"] = exc.retry_after
        if context_id is not None and self.multi:
            payload |= self.ids(context_id)
        await self.send(payload)


def _context_id(message: dict[str, Any]) -> str | None:
    context_id = message.get("context_id")
    if context_id is None:
        return None
    if not isinstance(context_id, str) or not 0 < len(context_id) <= MAX_CONTEXT_ID_CHARS:
        raise FieldError(
            "context_id", f"context_id must be a string of 1-{MAX_CONTEXT_ID_CHARS} characters"
        )
    return context_id
