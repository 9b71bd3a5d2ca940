"""A corpus of bad and unusual media, made by code, for the scoring pipelines' bad-input tests.

Each kind is one maker `(seed) -> {key: bytes}` with the outcome the pipeline must
give it: `scored` (decodable, normalised), `error` (one errors row whose reason matches
`reason`) or `partial` (examples scored and a `decode-partial` errors row). Keys are
relative to a modality's prefix. `random_corpus` draws a seeded mix of kinds under
random names, for a corpus no test was written against. Nothing is downloaded; every
maker is deterministic for its seed and small (the long audio file is the largest, 4.8 MB).
"""

from __future__ import annotations

import io
import random
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from support import media_video as mv
from support.media import corrupt_jpeg_bytes, image_bytes, text_as_jpg_bytes, truncated_jpeg_bytes
from support.media_audio import (corrupt_wav_bytes, encode_audio, header_only_wav_bytes, mp4_header_bytes,
                         text_as_wav_bytes, tone_wav_bytes, truncated_wav_bytes)

MODALITIES = ("image", "video", "audio")
# The task, architecture and task config that decode and score each modality's corpus.
TASKS = {"image": ("image-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]}),
         "video": ("video-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]}),
         "audio": ("audio-classifier", "mfcc-lstm", {"sample_rate": 16000, "n_mfcc": 13, "window_seconds": 1.0})}
SCORED, ERROR, PARTIAL = "scored", "error", "partial"
# Seconds of the long audio file: 10 min at 8 kHz, 8-bit: 4.8 MB, 600 one-second windows.
LONG_AUDIO_SECONDS = 600
# Key names that break naive URL handling: each is a real object with good media in it.
ODD_NAMES = {
    "space": "with space {n}",
    "unicode": "ünïcødé 日本語 {n}",
    "percent": "100% sure {n}",
    "percent-escape": "not%20a%20space {n}",  # must not be unquoted into spaces
    "hash": "take#{n}",  # must not be cut as a URL fragment
    "question": "what?{n}=1",  # must not be cut as a URL query
    "plus": "a+b {n}",  # '+' is a space only in form encoding
    "dots": "dir..{n}/up..{n}",  # '..' inside names (SeaweedFS refuses whole '.' and '..' segments)
    "tab": "tab\there {n}",
    "symbols": "~$@&=,;!'()[] {n}",
}


@dataclass(frozen=True)
class Kind:
    """One kind of bad or unusual object and what the pipeline must do with it."""

    name: str
    modality: str
    expect: str  # SCORED, ERROR or PARTIAL
    make: Callable[[int], dict[str, bytes]]
    reason: str = ""  # a regular expression the errors row's reason must match (ERROR, PARTIAL)


KINDS: dict[str, Kind] = {}


def kind(modality: str, expect: str, reason: str = "", name: str | None = None):
    """Register a maker as a corpus kind (its name: the function name, '_' to '-')."""

    def register(make: Callable[[int], dict[str, bytes]]) -> Callable[[int], dict[str, bytes]]:
        kind_name = name or make.__name__.strip("_").replace("_", "-")
        KINDS[kind_name] = Kind(kind_name, modality, expect, make, reason)
        return make

    return register


def corpus(modality: str | None = None, seed: int = 0) -> dict[str, tuple[Kind, bytes]]:
    """Every kind (of one modality, or all), made with `seed`: key -> (kind, bytes)."""
    out: dict[str, tuple[Kind, bytes]] = {}
    for item in KINDS.values():
        if modality in (None, item.modality):
            for key, data in item.make(seed).items():
                if key in out:
                    raise ValueError(f"kind {item.name!r} repeats key {key!r}")
                out[key] = (item, data)
    return out


# --- images -------------------------------------------------------------------------------------


def _pixels(seed: int, size: tuple[int, int] = (48, 36)) -> np.ndarray:
    """(height, width, 3) uint8 RGB: a smooth gradient with noise, so resizing has work to do."""
    rng = np.random.default_rng(seed)
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    base = rng.uniform(40, 200, 3)
    image = base + 50 * np.stack([x, y, 1 - x], axis=-1) + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@kind("image", ERROR, "empty")
def image_zero_byte(seed: int) -> dict[str, bytes]:
    return {"zero-byte.jpg": b""}


@kind("image", ERROR, "truncated JPEG")
def image_truncated_jpeg(seed: int) -> dict[str, bytes]:
    return {"truncated.jpg": truncated_jpeg_bytes(seed)}


@kind("image", ERROR, "truncated JPEG|corrupt")
def image_corrupt_jpeg(seed: int) -> dict[str, bytes]:
    return {"corrupt-scan.jpg": corrupt_jpeg_bytes(seed)}


@kind("image", ERROR, "truncated PNG")
def image_truncated_png(seed: int) -> dict[str, bytes]:
    png = image_bytes("PNG", (64, 48), seed)
    return {"truncated.png": png[: len(png) * 2 // 3]}


@kind("image", ERROR, "text")
def image_text_named_jpg(seed: int) -> dict[str, bytes]:
    return {"notes.jpg": text_as_jpg_bytes()}


@kind("image", ERROR, "MP4")
def image_mp4_named_jpg(seed: int) -> dict[str, bytes]:
    return {"clip.jpg": _video_bytes(lambda p: mv.write_video(p, "red-ball", 0.5, seed=seed))}


@kind("image", ERROR, "WAV")
def image_wav_named_png(seed: int) -> dict[str, bytes]:
    return {"sound.png": tone_wav_bytes(440.0, 0.2)}


@kind("image", SCORED)
def image_png_named_jpg(seed: int) -> dict[str, bytes]:
    return {"really-a-png.jpg": image_bytes("PNG", (40, 30), seed)}


@kind("image", SCORED)
def image_jpeg_named_txt(seed: int) -> dict[str, bytes]:
    return {"photo-without-image-extension.txt": image_bytes("JPEG", (40, 30), seed)}


@kind("image", SCORED)
def image_cmyk_jpeg(seed: int) -> dict[str, bytes]:
    # PIL writes Adobe-style (inverted) CMYK with an APP14 marker, as Photoshop does.
    return {"cmyk.jpg": _pil_bytes(Image.fromarray(_pixels(seed)).convert("CMYK"), "JPEG", quality=90)}


@kind("image", SCORED)
def image_16bit_png(seed: int) -> dict[str, bytes]:
    rgb16 = _pixels(seed).astype(np.uint16) * 257
    ok, png = cv2.imencode(".png", rgb16[..., ::-1])
    assert ok
    return {"16-bit-rgb.png": png.tobytes()}


@kind("image", SCORED)
def image_16bit_gray_png(seed: int) -> dict[str, bytes]:
    gray16 = (_pixels(seed)[..., 0].astype(np.uint16) * 257)
    ok, png = cv2.imencode(".png", gray16)
    assert ok
    return {"16-bit-gray.png": png.tobytes()}


@kind("image", SCORED)
def image_grayscale_jpeg(seed: int) -> dict[str, bytes]:
    return {"grayscale.jpg": _pil_bytes(Image.fromarray(_pixels(seed)).convert("L"), "JPEG")}


@kind("image", SCORED)
def image_grayscale_png(seed: int) -> dict[str, bytes]:
    return {"grayscale.png": _pil_bytes(Image.fromarray(_pixels(seed)).convert("L"), "PNG")}


@kind("image", SCORED)
def image_rgba_png(seed: int) -> dict[str, bytes]:
    rgba = np.dstack([_pixels(seed), np.linspace(0, 255, 48, dtype=np.uint8)[None, :].repeat(36, 0)])
    return {"rgba.png": _pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG")}


@kind("image", SCORED)
def image_gray_alpha_png(seed: int) -> dict[str, bytes]:
    return {"gray-alpha.png": _pil_bytes(Image.fromarray(_pixels(seed)).convert("LA"), "PNG")}


@kind("image", SCORED)
def image_palette_png(seed: int) -> dict[str, bytes]:
    return {"palette.png": _pil_bytes(Image.fromarray(_pixels(seed)).convert("P", palette=Image.ADAPTIVE), "PNG")}


@kind("image", SCORED)
def image_palette_transparent_png(seed: int) -> dict[str, bytes]:
    image = Image.fromarray(_pixels(seed)).convert("P", palette=Image.ADAPTIVE, colors=16)
    return {"palette-transparent.png": _pil_bytes(image, "PNG", transparency=0)}


@kind("image", SCORED)
def image_animated_gif(seed: int) -> dict[str, bytes]:
    frames = [Image.fromarray(_pixels(seed + i)).convert("P", palette=Image.ADAPTIVE) for i in range(4)]
    return {"animated.gif": _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80,
                                       loop=0)}


def exif_rotated_jpeg_bytes(seed: int = 0, orientation: int = 6) -> bytes:
    """A 48x24 JPEG, left half red and right half blue as stored, with EXIF `orientation`.

    Orientation 6 means "rotate 90 degrees clockwise to display": displayed, it is 24x48
    with red on top.
    """
    stored = np.zeros((24, 48, 3), np.uint8)
    stored[:, :24] = (220, 30, 30)
    stored[:, 24:] = (30, 30, 220)
    stored = np.clip(stored.astype(int) + np.random.default_rng(seed).integers(-5, 6, stored.shape), 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _pil_bytes(Image.fromarray(stored.astype(np.uint8)), "JPEG", quality=95, exif=exif.tobytes())


@kind("image", SCORED)
def image_exif_rotated_jpeg(seed: int) -> dict[str, bytes]:
    return {"exif-orientation-6.jpg": exif_rotated_jpeg_bytes(seed)}


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` RGB pixels (a decompression bomb's
    header, without the bomb: the data is one compressed row)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int, seed: int = 0) -> bytes:
    """A small real JPEG with its frame header (SOF0) patched to declare `width` x `height`."""
    data = bytearray(image_bytes("JPEG", (16, 16), seed))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@kind("image", ERROR, "too large")
def image_bomb_png(seed: int) -> dict[str, bytes]:
    return {"bomb-60000x60000.png": png_declaring(60000, 60000)}


@kind("image", ERROR, "too large")
def image_bomb_jpeg(seed: int) -> dict[str, bytes]:
    # 256 MP: over PIL's own refusal threshold (2 x 89.5 MP) but under OpenCV's (1 GP).
    return {"bomb-16000x16000.jpg": jpeg_declaring(16000, 16000, seed)}


@kind("image", ERROR, "too large")
def image_large_declared_jpeg(seed: int) -> dict[str, bytes]:
    # 100 MP: PIL opens it (with a warning); our own 64 MP limit refuses it.
    return {"declared-10000x10000.jpg": jpeg_declaring(10000, 10000, seed)}


@kind("image", SCORED)
def image_1x1(seed: int) -> dict[str, bytes]:
    pixel = Image.fromarray(_pixels(seed, (1, 1)))
    return {"1x1.jpg": _pil_bytes(pixel, "JPEG"), "1x1.png": _pil_bytes(pixel, "PNG")}


@kind("image", SCORED)
def image_extreme_aspect(seed: int) -> dict[str, bytes]:
    return {"strip-2000x1.png": _pil_bytes(Image.fromarray(_pixels(seed, (2000, 1))), "PNG")}


@kind("image", SCORED)
def image_progressive_jpeg(seed: int) -> dict[str, bytes]:
    return {"progressive.jpg": _pil_bytes(Image.fromarray(_pixels(seed, (96, 64))), "JPEG", progressive=True)}


@kind("image", SCORED)
def image_jpeg_trailing_data(seed: int) -> dict[str, bytes]:
    # Data after the end-of-image marker, as in "motion photos" (a JPEG, then an MP4) or
    # camera trailers: the image is whole. The trailer holds a start-of-scan marker.
    trailer = b"\x00\x00\x00\x18ftypmp42" + b"\xff\xda\x00\x08" + np.random.default_rng(seed).bytes(300)
    return {"motion-photo.jpg": image_bytes("JPEG", (40, 30), seed) + trailer}


@kind("image", SCORED)
def image_other_formats(seed: int) -> dict[str, bytes]:
    image = Image.fromarray(_pixels(seed))
    return {"other.bmp": _pil_bytes(image, "BMP"), "other.webp": _pil_bytes(image, "WEBP"),
            "other.tiff": _pil_bytes(image, "TIFF")}


@kind("image", SCORED)
def image_odd_key_names(seed: int) -> dict[str, bytes]:
    return {f"names/{pattern.format(n=seed)}.jpg": image_bytes("JPEG", (24, 24), seed + i)
            for i, pattern in enumerate(ODD_NAMES.values())}


# --- videos -------------------------------------------------------------------------------------


def _video_bytes(write: Callable[[Path], object], name: str = "v.mp4") -> bytes:
    """The bytes a media_video writer produces, made in a temporary directory."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        write(path)
        return path.read_bytes()


def _gray_video(path: Path, seconds: float = 1.0, fps: float = 10) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48), isColor=False)
    for frame in mv.video_frames("blue-box", round(seconds * fps), (64, 48)):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    writer.release()


@kind("video", SCORED)
def video_plain(seed: int) -> dict[str, bytes]:
    return {"plain.mp4": _video_bytes(lambda p: mv.write_video(p, "red-ball", 1.5, seed=seed))}


@kind("video", ERROR, "empty")
def video_zero_byte(seed: int) -> dict[str, bytes]:
    return {"zero-byte.mp4": b""}


@kind("video", ERROR, "truncated")
def video_truncated_mp4(seed: int) -> dict[str, bytes]:
    return {"truncated.mp4": _video_bytes(lambda p: mv.write_truncated_mp4(p, seconds=2, seed=seed))}


@kind("video", PARTIAL, "stopped at frame")
def video_truncated_faststart_mp4(seed: int) -> dict[str, bytes]:
    return {"truncated-faststart.mp4": _video_bytes(
        lambda p: mv.write_truncated_faststart_mp4(p, seconds=3, keep=0.5, seed=seed))}


@kind("video", ERROR, "frame")
def video_index_only_mp4(seed: int) -> dict[str, bytes]:
    return {"index-only.mp4": _video_bytes(lambda p: mv.write_index_only_mp4(p, seconds=2, seed=seed))}


@kind("video", ERROR, "zero frames")
def video_zero_frames(seed: int) -> dict[str, bytes]:
    return {"zero-frames.mp4": _video_bytes(mv.write_zero_frame_mp4)}


@kind("video", ERROR, "no video stream")
def video_audio_only_mp4(seed: int) -> dict[str, bytes]:
    return {"audio-only.mp4": _video_bytes(lambda p: mv.write_audio_only_mp4(p, seconds=1))}


@kind("video", ERROR, "text")
def video_text_named_mp4(seed: int) -> dict[str, bytes]:
    return {"notes.mp4": _video_bytes(mv.write_text_as_video)}


@kind("video", ERROR, "PNG")
def video_png_named_mp4(seed: int) -> dict[str, bytes]:
    return {"still.mp4": _video_bytes(mv.write_png_as_video)}


@kind("video", ERROR, "WAV")
def video_wav_named_mov(seed: int) -> dict[str, bytes]:
    return {"sound.mov": _video_bytes(mv.write_wav_as_video, "v.wav")}


@kind("video", SCORED)
def video_mjpeg_avi(seed: int) -> dict[str, bytes]:
    return {"mjpeg.avi": _video_bytes(lambda p: mv.write_video(p, "green-stripes", 1.0, seed=seed), "v.avi")}


@kind("video", PARTIAL, "stopped at frame")
def video_truncated_avi(seed: int) -> dict[str, bytes]:
    return {"truncated.avi": _video_bytes(lambda p: mv.write_truncated_avi(p, seconds=3, keep=0.5, seed=seed),
                                          "v.avi")}


@kind("video", SCORED)
def video_single_frame(seed: int) -> dict[str, bytes]:
    return {"one-frame.mp4": _video_bytes(lambda p: mv.write_video(p, "blue-box", 0.1, seed=seed))}


@kind("video", SCORED)
def video_odd_size(seed: int) -> dict[str, bytes]:
    return {"odd-size-35x17.mp4": _video_bytes(
        lambda p: mv.write_video(p, "red-ball", 1.0, size=(35, 17), seed=seed))}


@kind("video", SCORED)
def video_grayscale(seed: int) -> dict[str, bytes]:
    return {"grayscale.mp4": _video_bytes(_gray_video)}


@kind("video", SCORED)
def video_mp4_named_mov(seed: int) -> dict[str, bytes]:
    return {"really-an-mp4.mov": _video_bytes(lambda p: mv.write_video(p, "blue-box", 1.0, seed=seed))}


@kind("video", SCORED)
def video_odd_key_names(seed: int) -> dict[str, bytes]:
    clip = _video_bytes(lambda p: mv.write_video(p, "green-stripes", 0.5, seed=seed))
    names = ("space", "unicode", "percent", "hash", "dots")
    return {f"names/{ODD_NAMES[n].format(n=seed)}.mp4": clip for n in names} | {
        f"names/clip%03d {seed}.mp4": clip}  # an image-sequence pattern to FFmpeg's image2 reader


# --- audio --------------------------------------------------------------------------------------


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


# --- a random corpus ----------------------------------------------------------------------------

_NAME_PIECES = ("clip", "IMG_", "Scan", "ü", "日本", "é", " ", "%", "%2F", "#", "+", "=", "&", "?", "(1)",
                "[x]", "'", "..", "~", "$", "@", ",", ";", "!", "—", "😀")


def random_name(rng: random.Random) -> str:
    """A random key stem built of characters that trouble URL and path handling."""
    pieces = [rng.choice(_NAME_PIECES) for _ in range(rng.randint(1, 5))]
    folder = rng.choice(["", "", "sub/", "a b/", "x..y/", "ü/"])
    stem = "".join(pieces).strip() or "blank"
    return folder + ("n" + stem if stem.startswith(".") else stem)  # a leading dot would hide it


def random_corpus(seed: int, count: int = 24) -> dict[str, dict[str, tuple[Kind, bytes]]]:
    """`count` objects of random kinds, each made with its own random seed, under random
    names, keeping each kind's own extension: modality -> {key: (kind, bytes)}."""
    rng = random.Random(seed)
    out: dict[str, dict[str, tuple[Kind, bytes]]] = {m: {} for m in MODALITIES}
    kinds = sorted(KINDS)
    while sum(len(v) for v in out.values()) < count:
        chosen = KINDS[rng.choice(kinds)]
        if chosen.name == "audio-long":
            continue  # minutes of windows: too slow for a quick random run
        made = chosen.make(rng.randrange(1 << 30))
        key, data = rng.choice(sorted(made.items()))
        suffix = Path(key).suffix
        name = f"{random_name(rng)}-{len(out[chosen.modality])}{suffix}"
        out[chosen.modality][name] = (chosen, data)
    return out
