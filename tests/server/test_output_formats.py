"""ElevenLabs `output_format` names, and encoding the engine's 24 kHz chunks into them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import soxr
from numpy.typing import NDArray

from server.engine.types import SAMPLE_RATE, Audio
from server.errors import FieldError
from server.output_formats import (
    DEFAULT_OUTPUT_FORMAT,
    OUTPUT_FORMATS,
    OutputFormat,
    parse_output_format,
)

# ElevenLabs' published list (its Python SDK's StreamTextToSpeechRequestOutputFormat).
ELEVENLABS_FORMATS = [
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
]

TONE_HZ = 440.0
AMPLITUDE = 0.5
CHUNK = 997  # odd, so chunk joins fall at every phase of the tone
LSB = 1 / 32768

RAW = [f for f in OUTPUT_FORMATS.values() if f.codec in ("pcm", "ulaw", "alaw")]
G711 = [f for f in OUTPUT_FORMATS.values() if f.codec in ("ulaw", "alaw")]
MP3 = [f for f in OUTPUT_FORMATS.values() if f.codec == "mp3"]
OPUS = [f for f in OUTPUT_FORMATS.values() if f.codec == "opus"]
ids = lambda f: f.name  # noqa: E731


def tone(seconds: float, amplitude: float = AMPLITUDE) -> Audio:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples: Audio = (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    return samples


def encode_chunked(fmt: OutputFormat, audio: Audio, chunk: int = CHUNK) -> tuple[bytes, bytes]:
    """(what `encode` returned along the way, what `finish` returned)."""
    encoder = fmt.encoder()
    streamed = b"".join(encoder.encode(audio[i : i + chunk]) for i in range(0, len(audio), chunk))
    return streamed, encoder.finish()


def encode_whole(fmt: OutputFormat, audio: Audio) -> bytes:
    encoder = fmt.encoder()
    return encoder.encode(audio) + encoder.finish()


def decode(fmt: OutputFormat, data: bytes) -> tuple[NDArray[np.float64], int]:
    if fmt.codec == "pcm":
        return np.frombuffer(data, "<i2") / 32768, fmt.sample_rate
    if fmt.codec in ("ulaw", "alaw"):
        audio, rate = soundfile.read(
            io.BytesIO(data), samplerate=8000, channels=1, format="RAW", subtype=fmt.codec.upper()
        )
        return audio, rate
    audio, rate = soundfile.read(io.BytesIO(data))  # libsndfile decodes MP3 and Ogg Opus
    return audio, rate


def dominant_hz(audio: NDArray[np.float64], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


@pytest.mark.parametrize("name", ELEVENLABS_FORMATS)
def test_every_elevenlabs_format_parses(name: str) -> None:
    fmt = parse_output_format(name)
    codec, rate, *kbps = name.split("_")
    assert fmt.name == name and fmt.codec == codec and fmt.sample_rate == int(rate)
    assert fmt.bitrate_kbps == (int(kbps[0]) if kbps else None)
    assert fmt.media_type.startswith("audio/")


def test_exactly_elevenlabs_formats_are_accepted_and_the_default_is_theirs() -> None:
    assert list(OUTPUT_FORMATS) == ELEVENLABS_FORMATS
    default = parse_output_format(DEFAULT_OUTPUT_FORMAT)
    assert (default.codec, default.sample_rate, default.bitrate_kbps) == ("mp3", 44100, 128)
    assert default.media_type == "audio/mpeg"


# Not on ElevenLabs' text-to-speech list, or not its spelling of one.
REFUSED = ["", "mp3", "mp3_44100", "mp3_44100_320", "wav_44100", "pcm_11025", "opus_24000_32"]


@pytest.mark.parametrize("name", [*REFUSED, "PCM_16000", " pcm_16000"])
def test_unknown_names_raise_a_field_error_listing_the_accepted_ones(name: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_output_format(name)
    error = caught.value
    assert error.field == "output_format" and error.status == 422
    assert error.allowed is not None
    for accepted in ELEVENLABS_FORMATS:
        assert accepted in str(error) and accepted in error.allowed


@pytest.mark.parametrize("fmt", RAW, ids=ids)
def test_sample_count_follows_the_rate(fmt: OutputFormat) -> None:
    audio = tone(0.5)
    decoded, _ = decode(fmt, b"".join(encode_chunked(fmt, audio)))
    assert abs(len(decoded) - round(len(audio) * fmt.sample_rate / SAMPLE_RATE)) <= 2


@pytest.mark.parametrize("fmt", list(OUTPUT_FORMATS.values()), ids=ids)
def test_chunked_output_decodes_like_the_whole_signal_encoded_at_once(fmt: OutputFormat) -> None:
    audio = tone(0.5)
    chunked, chunked_rate = decode(fmt, b"".join(encode_chunked(fmt, audio)))
    whole, whole_rate = decode(fmt, encode_whole(fmt, audio))
    assert chunked_rate == whole_rate and len(chunked) == len(whole)
    assert np.max(np.abs(chunked - whole)) <= LSB


@pytest.mark.parametrize("fmt", [f for f in RAW if f.sample_rate != SAMPLE_RATE], ids=ids)
def test_no_click_at_chunk_joins(fmt: OutputFormat) -> None:
    audio = tone(0.5)
    decoded, rate = decode(fmt, b"".join(encode_chunked(fmt, audio)))
    # A tone never moves faster than this between samples; companding adds up to one step (the
    # top u/A-law segment's step is 1/32 of full scale), s16le a couple of LSBs.
    quantisation = 1 / 32 if fmt in G711 else 2 * LSB
    limit = 2 * np.pi * TONE_HZ * AMPLITUDE / rate + quantisation
    edge = rate // 50  # the stream's own start and end are not joins
    assert np.max(np.abs(np.diff(decoded[edge:-edge]))) <= limit
    # The check catches clicks: resampling each chunk on its own jumps at the joins.
    chunks = [audio[i : i + CHUNK] for i in range(0, len(audio), CHUNK)]
    per_chunk = np.concatenate([soxr.resample(c, SAMPLE_RATE, rate) for c in chunks])
    assert np.max(np.abs(np.diff(per_chunk[edge:-edge]))) > limit


@pytest.mark.parametrize("fmt", [f for f in RAW if f.codec == "pcm"], ids=ids)
def test_pcm_is_the_signal_at_that_rate_clipped(fmt: OutputFormat) -> None:
    decoded, rate = decode(fmt, b"".join(encode_chunked(fmt, tone(0.5))))
    expected = AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * np.arange(len(decoded)) / rate)
    middle = slice(rate // 20, -rate // 20)  # in time and gain, away from the edges
    assert np.max(np.abs(decoded - expected)[middle]) < 1e-3
    loud = np.frombuffer(b"".join(encode_chunked(fmt, tone(0.5, amplitude=1.5))), "<i2")
    # Clipped to full scale, never wrapped around to the other sign.
    assert loud.max() == 32767 and loud.min() == -32767
    assert np.all(np.abs(np.diff(loud[middle].astype(np.int32))) < 32767)


@pytest.mark.parametrize(
    ("name", "codes"),
    # G.711's codes for silence, full scale and minus full scale (Sun's g711.c gives the same).
    [("ulaw_8000", (0xFF, 0x80, 0x00)), ("alaw_8000", (0xD5, 0xAA, 0x2A))],
)
def test_g711_bytes_are_itu_codes(name: str, codes: tuple[int, int, int]) -> None:
    def steady_byte(level: float) -> int:
        data = encode_whole(OUTPUT_FORMATS[name], np.full(4800, level, dtype=np.float32))
        return data[len(data) // 2]

    assert (steady_byte(0.0), steady_byte(1.0), steady_byte(-1.0)) == codes


@pytest.mark.parametrize("fmt", G711, ids=ids)
def test_g711_decodes_back_to_the_signal_within_companding_error(fmt: OutputFormat) -> None:
    decoded, rate = decode(fmt, b"".join(encode_chunked(fmt, tone(0.5))))
    expected = AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * np.arange(len(decoded)) / rate)
    error = (decoded - expected)[rate // 20 : -rate // 20]
    assert np.max(np.abs(error)) < 1 / 50  # half the top segment's step is 1/64
    snr_db = 10 * np.log10(np.mean(expected**2) / np.mean(error**2))
    assert snr_db > 30  # G.711 gives about 38 dB on a loud tone


@pytest.mark.parametrize("fmt", MP3 + OPUS, ids=ids)
def test_compressed_stream_decodes_at_its_rate_with_the_tone_s_pitch(fmt: OutputFormat) -> None:
    seconds = 1.0
    decoded, rate = decode(fmt, b"".join(encode_chunked(fmt, tone(seconds))))
    assert rate == fmt.sample_rate
    # MP3 adds LAME's delay and pads to whole frames; Ogg Opus trims its own.
    assert seconds <= len(decoded) / rate <= seconds + 0.1
    assert abs(dominant_hz(decoded, rate) - TONE_HZ) < 3


@pytest.mark.parametrize("fmt", MP3, ids=ids)
def test_mp3_keeps_the_requested_constant_bitrate(fmt: OutputFormat) -> None:
    assert fmt.bitrate_kbps is not None
    data = b"".join(encode_chunked(fmt, tone(1.0)))
    decoded, rate = decode(fmt, data)
    # Without an info header nothing is trimmed: the decoded length is every frame's.
    kbps = len(data) * 8 / (len(decoded) / rate) / 1000
    assert abs(kbps - fmt.bitrate_kbps) < 0.02 * fmt.bitrate_kbps


@pytest.mark.parametrize("fmt", MP3, ids=ids)
def test_mp3_starts_with_an_audio_frame_not_lame_s_blank_info_frame(fmt: OutputFormat) -> None:
    streamed, _ = encode_chunked(fmt, tone(0.5))
    assert streamed[0] == 0xFF and streamed[1] >> 5 == 0b111  # a frame sync
    assert any(streamed[4:24])  # a blank frame is zeros after its header


@pytest.mark.parametrize("fmt", MP3, ids=ids)
def test_mp3_bytes_follow_the_input_within_300_ms(fmt: OutputFormat) -> None:
    assert fmt.bitrate_kbps is not None
    audio = tone(2.0)
    encoder = fmt.encoder()
    sent = 0
    chunk = SAMPLE_RATE // 10
    for start in range(0, len(audio), chunk):
        sent += len(encoder.encode(audio[start : start + chunk]))
        fed_s = (start + chunk) / SAMPLE_RATE
        # Constant bitrate: bytes say how much stream time went out; LAME's first 1105 samples
        # are its delay, not input.
        sent_s = sent * 8 / (fmt.bitrate_kbps * 1000) - 1105 / fmt.sample_rate
        assert fed_s - sent_s < 0.3


@pytest.mark.parametrize("fmt", OPUS, ids=ids)
def test_opus_bitrate_is_near_the_requested_one(fmt: OutputFormat) -> None:
    assert fmt.bitrate_kbps is not None
    kbps = len(b"".join(encode_chunked(fmt, tone(2.0)))) * 8 / 2.0 / 1000
    # Variable bitrate, plus Ogg headers and a page every 50 ms.
    assert 0.7 * fmt.bitrate_kbps < kbps < 1.3 * fmt.bitrate_kbps


@pytest.mark.parametrize("fmt", list(OUTPUT_FORMATS.values()), ids=ids)
def test_bytes_are_sent_as_audio_comes_not_at_finish(fmt: OutputFormat) -> None:
    streamed, tail = encode_chunked(fmt, tone(2.0), chunk=SAMPLE_RATE // 10)
    # The resampler holds back a few ms and codecs a few frames (MP3 at 32 kbps the most, about
    # 0.25 s, as its bit reservoir spans frames): what `finish` sends is under 0.3 s of the 2 s.
    assert len(tail) < 0.15 * (len(streamed) + len(tail))


def test_an_encoder_is_spent_after_finish() -> None:
    encoder = parse_output_format("pcm_16000").encoder()
    assert encoder.encode(np.zeros(0, dtype=np.float32)) == b""
    encoder.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        encoder.encode(tone(0.1))
