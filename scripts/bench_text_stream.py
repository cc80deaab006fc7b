"""Text arriving as a language model writes it, three ways, side by side in one run:

(a) text-in over ElevenLabs' multi-stream-input WebSocket: each word sent as it is "written";
(b) the whole text at once to `/synthesize-stream`, once the model has finished writing;
(c) one `/synthesize-stream` request per sentence, each sent when its sentence is complete
    (what agent frameworks do with a plain HTTP TTS), played one after another;
and, as the reference for (a)'s goal, the first sentence alone to `/synthesize-stream`.

Figures: time from the first text piece to the first audio; per sentence, time from its last
text piece to its first audio ((a): from the server's `segmentStarts`; (c): its request's first
audio); total time to the last audio; playback gaps on an audio clock that starts with the
first audio; and, for (a), the join energy at sentence boundaries against joins inside a
sentence (RMS of the 20 ms after a join over the 20 ms before it: a dropout or fade gives ~0).

    python scripts/bench_text_stream.py [--ckpt-dir DIR] [--words-per-second 15] [--json F]
        [--plot F]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_server import free_port, process  # noqa: E402
from scripts.bench_streaming import report  # noqa: E402
from server.engine.types import SAMPLE_RATE, Audio  # noqa: E402

SENTENCES = (
    "The train leaves at nine.",
    "Bring a warm coat, please.",
    "I will meet you there.",
)
SEED = 7
RATE = SAMPLE_RATE  # pcm_24000: the engine's own rate
JOIN_WINDOW = RATE // 50  # 20 ms
GAP_THRESHOLD_S = 0.010


@dataclass
class Arrivals:
    """Audio as it arrived: (seconds since the first text piece, samples) per message."""

    times: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    pcm: list[Audio] = field(default_factory=list)
    segment_starts: list[int] = field(default_factory=list)  # samples, (a) only

    def add(self, at: float, pcm: Audio) -> None:
        self.times.append(at)
        self.samples.append(int(pcm.size))
        self.pcm.append(pcm)

    def time_of_sample(self, sample: int) -> float:
        """When the message holding `sample` arrived."""
        total = 0
        for at, count in zip(self.times, self.samples, strict=True):
            total += count
            if sample < total:
                return at
        return self.times[-1]


def playback(arrivals: list[Arrivals]) -> dict[str, float]:
    """Gaps on an audio clock that starts with the first audio and plays every message
    (of each stream in turn) as soon as it has arrived and the one before has played."""
    clock, gaps, gap_s, first = None, 0, 0.0, True
    for stream in arrivals:
        for at, count in zip(stream.times, stream.samples, strict=True):
            if clock is None:
                clock = at
            late = at - clock
            if late > GAP_THRESHOLD_S and not first:
                gaps, gap_s = gaps + 1, gap_s + late
            clock = max(clock, at) + count / RATE
            first = False
    return {"gaps": gaps, "gap_s": round(gap_s, 3), "playback_end_s": round(clock or 0.0, 3)}


def join_energy(audio: Audio, joins: list[int]) -> float:
    """Median RMS of the 20 ms after each join over the 20 ms before it."""
    ratios = []
    for at in joins:
        if JOIN_WINDOW <= at <= audio.size - JOIN_WINDOW:
            before = float(np.sqrt(np.mean(audio[at - JOIN_WINDOW : at] ** 2)))
            after = float(np.sqrt(np.mean(audio[at : at + JOIN_WINDOW] ** 2)))
            if before > 0:
                ratios.append(after / before)
    return round(statistics.median(ratios), 3) if ratios else float("nan")


def words() -> list[tuple[int, str]]:
    """(sentence index, word with its trailing space), in writing order."""
    return [(i, word + " ") for i, sentence in enumerate(SENTENCES) for word in sentence.split()]


async def writer(pace: float, send: Any) -> list[float]:
    """Sends the words at `pace` words a second; returns each sentence's last-piece time."""
    last_piece = [0.0] * len(SENTENCES)
    started = time.perf_counter()
    for n, (sentence, word) in enumerate(words()):
        await asyncio.sleep(max(0.0, started + n / pace - time.perf_counter()))
        await send(sentence, word)
        last_piece[sentence] = time.perf_counter()
    return last_piece


async def text_in(ws_url: str, pace: float) -> tuple[Arrivals, list[float], float]:
    arrivals = Arrivals()
    async with websockets.connect(ws_url, max_size=None) as socket:
        await socket.send(json.dumps({"text": " ", "context_id": "bench"}))
        t0 = time.perf_counter()

        async def receive() -> None:
            while True:
                message = json.loads(await socket.recv())
                if message.get("isFinal"):
                    return
                assert "audio" in message, message
                pcm = np.frombuffer(base64.b64decode(message["audio"]), "<i2")
                arrivals.segment_starts += message.get("segmentStarts", [])
                arrivals.add(time.perf_counter() - t0, pcm.astype(np.float32) / 32768)

        async def send(_: int, word: str) -> None:
            await socket.send(json.dumps({"text": word, "context_id": "bench"}))

        receiving = asyncio.create_task(receive())
        last_piece = await writer(pace, send)
        await socket.send(json.dumps({"text": "", "context_id": "bench", "flush": True}))
        await socket.send(json.dumps({"context_id": "bench", "close_context": True}))
        await receiving
    return arrivals, [t - t0 for t in last_piece], t0


async def sse_stream(client: httpx.AsyncClient, url: str, text: str, t0: float) -> Arrivals:
    arrivals = Arrivals()
    form = {"text": text, "seed": str(SEED)}
    async with client.stream("POST", f"{url}/synthesize-stream", data=form) as response:
        lines = []
        async for line in response.aiter_lines():
            lines.append(line)
            if line == "" and lines:
                event = _event(lines)
                lines = []
                if event and event[0] == "audio_chunk":
                    pcm = np.frombuffer(base64.b64decode(event[1]["audio_chunk"]), "<i2")
                    arrivals.add(time.perf_counter() - t0, pcm.astype(np.float32) / 32768)
                elif event and event[0] == "error":
                    raise RuntimeError(event[1])
    return arrivals


def _event(lines: list[str]) -> tuple[str, dict[str, Any]] | None:
    name, data = "message", []
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return (name, json.loads("\n".join(data))) if data else None


async def whole_text(client: httpx.AsyncClient, url: str, pace: float) -> tuple[Arrivals, float]:
    """(b): the model writes for len(words)/pace seconds, then the whole text goes at once."""
    t0 = time.perf_counter()
    writing = (len(words()) - 1) / pace
    await asyncio.sleep(writing)
    return await sse_stream(client, url, " ".join(SENTENCES), t0), writing


async def per_sentence(
    client: httpx.AsyncClient, url: str, pace: float
) -> tuple[list[Arrivals], list[float]]:
    """(c): each sentence's request goes as soon as its last word is written."""
    t0 = time.perf_counter()
    requests: list[asyncio.Task[Arrivals]] = []

    async def send(sentence: int, _: str) -> None:
        if len(requests) == sentence and _ends(sentence):
            requests.append(asyncio.create_task(sse_stream(client, url, SENTENCES[sentence], t0)))

    sent_words = [0] * len(SENTENCES)

    def _ends(sentence: int) -> bool:
        sent_words[sentence] += 1
        return sent_words[sentence] == len(SENTENCES[sentence].split())

    last_piece = await writer(pace, send)
    return list(await asyncio.gather(*requests)), [t - t0 for t in last_piece]


async def run(url: str, pace: float) -> dict[str, Any]:
    ws_url = url.replace("http://", "ws://")
    ws_url += f"/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000&seed={SEED}"
    figures: dict[str, Any] = {"words_per_second": pace, "sentences": len(SENTENCES)}
    async with httpx.AsyncClient(timeout=600) as client:
        await sse_stream(client, url, "Warming up.", time.perf_counter())  # kernels, caches
        alone = await sse_stream(client, url, SENTENCES[0], time.perf_counter())
        figures["reference_sentence1_alone_ttfa_s"] = round(alone.times[0], 3)

        a, a_last, _ = await text_in(ws_url, pace)
        assert len(a.segment_starts) == len(SENTENCES), a.segment_starts
        starts = [a.time_of_sample(s) for s in a.segment_starts]
        figures["a_first_audio_s"] = round(a.times[0], 3)
        for i, (start, last) in enumerate(zip(starts, a_last, strict=True), 1):
            figures[f"a_sentence{i}_last_piece_to_audio_s"] = round(start - last, 3)
        figures["a_total_s"] = round(a.times[-1], 3)
        figures |= {f"a_{k}": v for k, v in playback([a]).items()}
        audio = np.concatenate(a.pcm)
        sentence_joins = a.segment_starts[1:]
        chunk_joins = [int(x) for x in np.cumsum(a.samples)[:-1]]
        inside = [j for j in chunk_joins if all(abs(j - s) > RATE // 5 for s in sentence_joins)]
        figures["a_join_energy_sentences"] = join_energy(audio, sentence_joins)
        figures["a_join_energy_inside"] = join_energy(audio, inside)

        b, writing = await whole_text(client, url, pace)
        figures["b_first_audio_s"] = round(b.times[0], 3)
        figures["b_sentence1_last_piece_to_audio_s"] = round(b.times[0] - a_last[0], 3)
        figures["b_last_piece_to_audio_s"] = round(b.times[0] - writing, 3)
        figures["b_total_s"] = round(b.times[-1], 3)
        figures |= {f"b_{k}": v for k, v in playback([b]).items()}

        c, c_last = await per_sentence(client, url, pace)
        figures["c_first_audio_s"] = round(c[0].times[0], 3)
        for i, (stream, last) in enumerate(zip(c, c_last, strict=True), 1):
            figures[f"c_sentence{i}_last_piece_to_audio_s"] = round(stream.times[0] - last, 3)
        figures["c_total_s"] = round(max(s.times[-1] for s in c), 3)
        figures |= {f"c_{k}": v for k, v in playback(c).items()}

    reference = figures["reference_sentence1_alone_ttfa_s"]
    figures["goal_a_sentence1_within_50ms_of_alone"] = (
        figures["a_sentence1_last_piece_to_audio_s"] <= reference + 0.050
    )
    figures["goal_a_finishes_first"] = figures["a_total_s"] < min(
        figures["b_total_s"], figures["c_total_s"]
    )
    figures["goal_a_sentence_joins_clean"] = figures["a_join_energy_sentences"] >= 0.9
    return figures


def plot(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [("a", "text-in WebSocket"), ("b", "whole text after writing"), ("c", "per sentence")]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for row, (key, _) in enumerate(modes):
        first, total = figures[f"{key}_first_audio_s"], figures[f"{key}_total_s"]
        ax.barh(row, total - first, left=first, color=f"C{row}", alpha=0.6)
        ax.plot([first], [row], "k|", markersize=18)
        ax.text(total + 0.1, row, f"first audio {first:.2f} s, done {total:.2f} s", va="center")
    ax.axvline((len(words()) - 1) / figures["words_per_second"], color="grey", ls="--")
    ax.set_yticks(range(len(modes)), [label for _, label in modes])
    ax.set_xlabel("seconds from the first text piece (dashed: the last piece written)")
    ax.set_xlim(0, max(figures[f"{k}_total_s"] for k, _ in modes) * 1.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt-dir", type=Path)
    parser.add_argument("--words-per-second", type=float, default=15.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    weights = ["--ckpt-dir", str(args.ckpt_dir)] if args.ckpt_dir else ["--random-weights"]
    worker = [sys.executable, "-m", "server", "--port", str(port), "--host", "127.0.0.1"]
    with process([*worker, *weights], url):
        figures = asyncio.run(run(url, args.words_per_second))
    report(figures, args.json)
    if args.plot:
        plot(figures, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
