"""The corpus's audio kinds: broken, truncated, disguised and unusual audio, and one long file."""

from __future__ import annotations

import numpy as np

from support.badmedia.kinds import ERROR, LONG_AUDIO_SECONDS, ODD_NAMES, PARTIAL, SCORED, kind
from support.media import image_bytes
from support.media_audio import (corrupt_wav_bytes, encode_audio, header_only_wav_bytes, mp4_header_bytes,
                                 text_as_wav_bytes, truncated_wav_bytes)


def _tone(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(n, channels) float64 in [-0.6, 0.6]: a tone plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    freq = rng.uniform(200, 1200)
    mono = 0.5 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.02, t.shape)
    return np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1).clip(-0.6, 0.6)


@kind("audio", SCORED)
def audio_plain(seed: int) -> dict[str, bytes]:
    return {"plain.wav": encode_audio(_tone(1.5, 16000, seed=seed), 16000)}


@kind("audio", ERROR, "empty")
def audio_zero_byte(seed: int) -> dict[str, bytes]:
    return {"zero-byte.wav": b""}


@kind("audio", ERROR, "no audio samples")
def audio_header_only_wav(seed: int) -> dict[str, bytes]:
    return {"header-only.wav": header_only_wav_bytes()}


@kind("audio", ERROR, "no audio samples")
def audio_truncated_header_wav(seed: int) -> dict[str, bytes]:
    return {"header-of-1s.wav": truncated_wav_bytes()}


@kind("audio", PARTIAL, "truncated")
def audio_truncated_wav(seed: int) -> dict[str, bytes]:
    # An interrupted upload: the header declares 3 s, the data stops after about 1.5 s.
    wav = encode_audio(_tone(3.0, 16000, seed=seed), 16000)
    return {"truncated.wav": wav[: 44 + 16000 * 2 * 3 // 2]}


@kind("audio", ERROR, "not decodable audio")
def audio_unknown_encoding_wav(seed: int) -> dict[str, bytes]:
    return {"unknown-encoding.wav": corrupt_wav_bytes()}


@kind("audio", ERROR, "text")
def audio_text_named_wav(seed: int) -> dict[str, bytes]:
    return {"transcript.wav": text_as_wav_bytes()}


@kind("audio", ERROR, "JPEG")
def audio_jpeg_named_wav(seed: int) -> dict[str, bytes]:
    return {"cover-art.wav": image_bytes("JPEG", (32, 32), seed)}


@kind("audio", ERROR, "MP4")
def audio_mp4_named_mp3(seed: int) -> dict[str, bytes]:
    return {"movie.mp3": mp4_header_bytes()}


@kind("audio", ERROR, "not decodable audio")
def audio_random_bytes_wav(seed: int) -> dict[str, bytes]:
    return {"noise-bytes.wav": np.random.default_rng(seed).bytes(4096)}


@kind("audio", SCORED)
def audio_8bit_unsigned_wav(seed: int) -> dict[str, bytes]:
    return {"8-bit-unsigned.wav": encode_audio(_tone(1.2, 16000, seed=seed), 16000, "PCM_U8")}


@kind("audio", SCORED)
def audio_24bit_wav(seed: int) -> dict[str, bytes]:
    return {"24-bit.wav": encode_audio(_tone(1.2, 16000, seed=seed), 16000, "PCM_24")}


@kind("audio", SCORED)
def audio_32bit_int_wav(seed: int) -> dict[str, bytes]:
    return {"32-bit-int.wav": encode_audio(_tone(1.2, 16000, seed=seed), 16000, "PCM_32")}


@kind("audio", SCORED)
def audio_float_wav(seed: int) -> dict[str, bytes]:
    # 32-bit float beyond full scale (clipped when decoded), and 64-bit float.
    loud = _tone(1.2, 16000, seed=seed) * 3.0
    return {"float32-loud.wav": encode_audio(loud, 16000, "FLOAT"),
            "float64.wav": encode_audio(_tone(1.2, 16000, seed=seed), 16000, "DOUBLE")}


@kind("audio", SCORED)
def audio_float_nan_wav(seed: int) -> dict[str, bytes]:
    signal = _tone(1.2, 16000, seed=seed).astype(np.float32)
    signal[::97] = np.nan
    return {"float-with-nan.wav": encode_audio(signal, 16000, "FLOAT")}


@kind("audio", SCORED)
def audio_stereo_wav(seed: int) -> dict[str, bytes]:
    return {"stereo.wav": encode_audio(_tone(1.2, 16000, channels=2, seed=seed), 16000)}


@kind("audio", SCORED)
def audio_six_channel_wav(seed: int) -> dict[str, bytes]:
    return {"5.1-surround.wav": encode_audio(_tone(1.2, 48000, channels=6, seed=seed), 48000)}


@kind("audio", SCORED)
def audio_odd_sample_rates(seed: int) -> dict[str, bytes]:
    return {f"rate-{rate}.wav": encode_audio(_tone(1.3, rate, seed=seed), rate)
            for rate in (8000, 11025, 22050, 44100, 96000)}


@kind("audio", SCORED)
def audio_other_formats(seed: int) -> dict[str, bytes]:
    signal = _tone(1.2, 22050, seed=seed)
    return {"flac.flac": encode_audio(signal, 22050, "PCM_16", "FLAC"),
            "vorbis.ogg": encode_audio(signal, 22050, "VORBIS", "OGG"),
            "mpeg.mp3": encode_audio(signal, 22050, "MPEG_LAYER_III", "MP3")}


@kind("audio", SCORED)
def audio_very_short(seed: int) -> dict[str, bytes]:
    return {"50-ms.wav": encode_audio(_tone(0.05, 16000, seed=seed), 16000),
            "one-sample.wav": encode_audio(np.full((1, 1), 0.25), 16000)}


@kind("audio", SCORED)
def audio_long(seed: int) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 0.1, (LONG_AUDIO_SECONDS * 8000, 1)).clip(-1, 1)
    return {"long-10-min.wav": encode_audio(signal, 8000, "PCM_U8")}


@kind("audio", SCORED)
def audio_odd_key_names(seed: int) -> dict[str, bytes]:
    clip = encode_audio(_tone(1.0, 16000, seed=seed), 16000)
    return {f"names/{pattern.format(n=seed)}.wav": clip for pattern in ODD_NAMES.values()}
