"""Drives pipecat's stock ElevenLabs TTS services at a server, the way a pipecat app would, and
prints what came out of them as one JSON object.

Run in the pipecat environment (tests/server/pipecat_env.py), never in the project's:

    drive.py SERVICE URL VOICE SAMPLE_RATE TEXT [--interrupt-after S | --cancel-after S]

SERVICE is `websocket` (ElevenLabsTTSService: multi-stream-input) or `http`
(ElevenLabsHttpTTSService: stream/with-timestamps); URL the server's http:// address, which
the WebSocket service is given as ws://. The text is spoken as a `TTSSpeakFrame`; with
`--interrupt-after`, an `InterruptionFrame` follows that many seconds later, as when the user
talks over the bot; with `--cancel-after`, a `CancelFrame` stops the pipeline then, as when a
call hangs up. Output: {"audio": base64 PCM of every TTSAudioRawFrame, "sample_rates",
"frames": the names of the frames that came downstream, "errors": the ErrorFrames' texts}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from typing import Any

import aiohttp
from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    ErrorFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

API_KEY = "test-key"  # the server is open; the services insist on one


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("service", choices=["websocket", "http"])
    parser.add_argument("url")
    parser.add_argument("voice")
    parser.add_argument("sample_rate", type=int)
    parser.add_argument("text")
    then = parser.add_mutually_exclusive_group()
    then.add_argument("--interrupt-after", type=float, default=None)
    then.add_argument("--cancel-after", type=float, default=None)
    return parser.parse_args(argv)


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    frames: list[Any] = [TTSSpeakFrame(args.text)]
    if args.interrupt_after is not None:
        frames += [SleepFrame(sleep=args.interrupt_after), InterruptionFrame()]
    if args.cancel_after is not None:
        frames += [SleepFrame(sleep=args.cancel_after), CancelFrame()]
    async with aiohttp.ClientSession() as session:
        service: Any
        if args.service == "websocket":
            service = ElevenLabsTTSService(
                api_key=API_KEY,
                url=args.url.replace("http://", "ws://"),
                sample_rate=args.sample_rate,
                settings=ElevenLabsTTSService.Settings(voice=args.voice),
            )
        else:
            service = ElevenLabsHttpTTSService(
                api_key=API_KEY,
                base_url=args.url,
                aiohttp_session=session,
                sample_rate=args.sample_rate,
                settings=ElevenLabsHttpTTSService.Settings(voice=args.voice),
            )
        # The EndFrame waits behind the audio still coming (the services hold frames until
        # their contexts end); a CancelFrame ends the pipeline at once instead.
        ended = args.cancel_after is None
        down, up = await run_test(service, frames_to_send=frames, send_end_frame=ended)
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    return {
        "audio": base64.b64encode(b"".join(f.audio for f in audio)).decode("ascii"),
        "sample_rates": sorted({f.sample_rate for f in audio}),
        "frames": [type(f).__name__ for f in down],
        "errors": [f.error for f in [*down, *up] if isinstance(f, ErrorFrame)],
    }


def main() -> None:
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    print(json.dumps(asyncio.run(drive(parse_args(sys.argv[1:])))))


if __name__ == "__main__":
    main()
