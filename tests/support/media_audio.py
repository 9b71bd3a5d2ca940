"""Test audio made by code: tones and chirps, spoken words from espeak-ng, and bad files.

Nothing here is downloaded. Every maker is deterministic for its seed (espeak-ng is
deterministic for a given voice, speed and pitch).
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

# Frequency bands (Hz) of the default tone classes: two octaves apart, so the classes
# sound different whatever the random offsets, and both fit under 8 kHz (16 kHz audio).
TONE_CLASSES = {"low": (220.0, 440.0), "high": (1760.0, 3520.0)}
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))


def encode_audio(signal: np.ndarray, sample_rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    """`signal` ((n,) or (n, channels), floats in [-1, 1]) as audio file bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, signal, sample_rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def chirp(f_start: float, f_end: float, seconds: float, sample_rate: int) -> np.ndarray:
    """A unit-amplitude sine sweeping linearly from `f_start` to `f_end` Hz."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    phase = 2 * np.pi * (f_start * t + (f_end - f_start) * t**2 / (2 * seconds))
    return np.sin(phase)


def tone_wav_bytes(freqs: float | Sequence[float], seconds: float, sample_rate: int = 16000,
                   subtype: str = "PCM_16", channels: int = 1, amplitude: float = 0.5,
                   fmt: str = "WAV") -> bytes:
    """Steady tones at `freqs`, played one after another in equal parts of `seconds`.

    With 2+ channels the extra channels carry the same tones at lower levels, so the mono
    mix is the same tune. `subtype` is a soundfile subtype: PCM_U8 (8-bit WAV), PCM_16,
    PCM_24, PCM_32, FLOAT...; `fmt` a soundfile format (WAV, FLAC, OGG, MP3).
    """
    freqs = [freqs] if np.isscalar(freqs) else list(freqs)
    total = int(round(seconds * sample_rate))
    bounds = np.linspace(0, total, len(freqs) + 1).astype(int)
    t = np.arange(total) / sample_rate
    mono = np.zeros(total)
    for f, start, end in zip(freqs, bounds[:-1], bounds[1:]):
        mono[start:end] = np.sin(2 * np.pi * f * t[start:end])
    signal = amplitude * np.stack([mono * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    return encode_audio(signal, sample_rate, subtype, fmt)


def noisy_chirp_clip(band: tuple[float, float], rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """0.6-2.2 s: a chirp inside `band` (random start, direction and span) after a random
    silence, at a random level, with random noise."""
    low, high = band
    seconds = rng.uniform(0.6, 2.2)
    f_start, f_end = rng.uniform(low, high, size=2)
    sound = chirp(f_start, f_end, seconds, sample_rate) * rng.uniform(0.1, 0.8)
    lead = np.zeros(int(rng.uniform(0.0, 0.3) * sample_rate))
    clip = np.concatenate([lead, sound])
    clip += rng.normal(0.0, rng.uniform(0.002, 0.03), size=clip.shape)
    return np.clip(clip, -1.0, 1.0)


def write_tone_dataset(root: Path, classes: dict[str, tuple[float, float]] | None = None,
                       per_class_train: int = 40, per_class_test: int = 10, seed: int = 0) -> dict[str, Path]:
    """Class folders of noisy chirp WAVs: `root/train/<class>/*.wav` and `root/test/<class>/*.wav`.

    `classes` maps a class name to its frequency band (Hz); default TONE_CLASSES.
    Returns `{"train": root/"train", "test": root/"test"}`.
    """
    rng = np.random.default_rng(seed)
    classes = TONE_CLASSES if classes is None else classes
    splits = {"train": root / "train", "test": root / "test"}
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        for name, band in classes.items():
            folder = splits[split] / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{name}_{i:03d}.wav").write_bytes(encode_audio(noisy_chirp_clip(band, rng), 16000))
    return splits


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def spoken_word_wavs(root: Path, words: Sequence[str] = ("yes", "no"), per_word: int = 30, seed: int = 0,
                     variants: Sequence[str] = ESPEAK_VARIANTS) -> dict[str, list[Path]]:
    """`per_word` spoken WAVs per word in `root/<word>/`, by espeak-ng (22.05 kHz, 16-bit).

    Each file has its own voice (English with a random one of `variants`, by default
    m1..m7 and f1..f5), speed (120-200 words per minute) and pitch (20-80). Disjoint
    `variants` give a test set spoken by voices the model never heard. Needs the
    `espeak-ng` program (Debian package espeak-ng).

    Returns:
        word -> the paths written.
    """
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for word in words:
        folder = root / word
        folder.mkdir(parents=True, exist_ok=True)
        written[word] = []
        for i in range(per_word):
            variant = variants[int(rng.integers(len(variants)))]
            speed, pitch = int(rng.integers(120, 201)), int(rng.integers(20, 81))
            path = folder / f"{word}_{i:03d}.wav"
            subprocess.run(["espeak-ng", "-v", f"en+{variant}", "-s", str(speed), "-p", str(pitch),
                            "-w", str(path), word], check=True, capture_output=True, timeout=30)
            written[word].append(path)
    return written


# --- bad audio -------------------------------------------------------------------------------


def header_only_wav_bytes(sample_rate: int = 16000) -> bytes:
    """A valid 16-bit WAV header whose data chunk is empty: no samples at all."""
    return encode_audio(np.zeros((0, 1), np.int16), sample_rate)


def truncated_wav_bytes() -> bytes:
    """The 44-byte header of a 1 s WAV without its data, like an interrupted upload."""
    return tone_wav_bytes(440.0, 1.0)[:44]


def corrupt_wav_bytes() -> bytes:
    """A RIFF/WAVE file whose fmt chunk names an unknown sample encoding (0x7777)."""
    fmt = struct.pack("<HHIIHH", 0x7777, 1, 16000, 32000, 2, 16)
    data = np.random.default_rng(0).integers(-2000, 2000, 16000, dtype=np.int16).tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def text_as_wav_bytes() -> bytes:
    """Plain text, for a file named .wav that is not audio at all."""
    return b"This is a transcript, not a recording.\nSpeaker 1: yes\nSpeaker 2: no\n" * 4


def mp4_header_bytes() -> bytes:
    """The start of an MP4 file (an `ftyp` box) followed by junk, for a video named .mp3."""
    return struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 4
