"""Test videos made by code with OpenCV's VideoWriter: classes you can tell apart, and bad files.

Nothing is downloaded. Every maker is deterministic for its seed. Only
`write_audio_only_mp4` needs the `ffmpeg` command line tool (`FFMPEG` is None without it).
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

VIDEO_KINDS = ("red-ball", "blue-box", "green-stripes")
FFMPEG = shutil.which("ffmpeg")
_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _fourcc_for(path: Path) -> str:
    return "MJPG" if path.suffix.lower() == ".avi" else "mp4v"


def video_frames(kind: str, count: int, size: tuple[int, int] = (96, 72), seed: int = 0):
    """Yields `count` BGR frames (`size` is width, height) of one class.

    red-ball: a red disc moving over a dark background; blue-box: a blue square moving;
    green-stripes: scrolling green stripes. Start, speed and background noise are random.
    """
    if kind not in VIDEO_KINDS:
        raise ValueError(f"unknown video kind {kind!r}; valid: {', '.join(VIDEO_KINDS)}")
    rng = np.random.default_rng(seed)
    width, height = size
    background = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    position = rng.uniform([0.2 * width, 0.2 * height], [0.8 * width, 0.8 * height])
    velocity = rng.uniform(1.0, 3.0, 2) * rng.choice([-1, 1], 2)
    radius = int(rng.integers(height // 8, height // 5 + 1))
    period = int(rng.integers(8, 16))
    for _ in range(count):
        frame = background.copy()
        x, y = (int(v) for v in position)
        if kind == "red-ball":
            cv2.circle(frame, (x, y), radius, (30, 30, 230), -1)
        elif kind == "blue-box":
            cv2.rectangle(frame, (x - radius, y - radius), (x + radius, y + radius), (230, 60, 30), -1)
        else:
            stripes = ((np.arange(width) + int(position[0])) // (period // 2)) % 2 == 0
            frame[:, stripes] = (40, 210, 40)
        noise = rng.integers(-12, 13, frame.shape)
        yield np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        position += velocity
        for axis, limit in enumerate((width, height)):
            if not radius <= position[axis] <= limit - radius:
                velocity[axis] = -velocity[axis]
                position[axis] = min(max(position[axis], radius), limit - radius)


def write_video(path: Path, kind: str, seconds: float, fps: float = 10, size: tuple[int, int] = (96, 72),
                seed: int = 0) -> Path:
    """A real video file of `kind` (see `video_frames`): mp4v in .mp4/.mov, MJPG in .avi."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*_fourcc_for(path)), fps, size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    for frame in video_frames(kind, round(seconds * fps), size, seed):
        writer.write(frame)
    writer.release()
    return path


def write_video_dataset(root: Path, classes: tuple[str, ...] = VIDEO_KINDS, per_class_train: int = 4,
                        per_class_test: int = 2, seed: int = 0, seconds: float = 2.0) -> dict[str, list[Path]]:
    """`root/train/<class>/<n>.mp4` and `root/test/<class>/<n>.mp4`, each with its own seed."""
    written: dict[str, list[Path]] = {"train": [], "test": []}
    for c, kind in enumerate(classes):
        for split, count in (("train", per_class_train), ("test", per_class_test)):
            for n in range(count):
                video_seed = seed * 100_003 + c * 1_009 + n * 2 + (split == "test")
                written[split].append(write_video(Path(root) / split / kind / f"{n:03d}.mp4", kind, seconds,
                                                  seed=video_seed))
    return written


# --- bad and unusual files -------------------------------------------------------------------


def video_bytes(write: Callable[[Path], object], name: str = "v.mp4") -> bytes:
    """The bytes a writer of this module produces (`write(path)`), made in a temporary directory."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        write(path)
        return path.read_bytes()


def _boxes(data: bytes | bytearray, start: int, end: int):
    """(type, box start, payload start, box end) of the ISO-BMFF boxes in data[start:end]."""
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        payload = position + 8
        if size == 1:
            size, payload = struct.unpack(">Q", data[position + 8:position + 16])[0], position + 16
        elif size == 0:
            size = end - position
        yield kind, position, payload, position + size
        position += size


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, delta: int) -> None:
    for kind, _, payload, stop in _boxes(moov, start, end):
        if kind in _CONTAINER_BOXES:
            _shift_chunk_offsets(moov, payload, stop, delta)
        elif kind in (b"stco", b"co64"):
            (entries,) = struct.unpack(">I", moov[payload + 4:payload + 8])
            width, fmt = (4, ">I") if kind == b"stco" else (8, ">Q")
            for i in range(entries):
                at = payload + 8 + i * width
                (offset,) = struct.unpack(fmt, moov[at:at + width])
                moov[at:at + width] = struct.pack(fmt, offset + delta)


def faststart_mp4(source: Path, destination: Path) -> Path:
    """A copy of an MP4 with its 'moov' index moved right after 'ftyp' (what
    `ffmpeg -movflags faststart` does), chunk offsets adjusted. A prefix of such a file
    still decodes up to the cut."""
    data = Path(source).read_bytes()
    top = list(_boxes(data, 0, len(data)))
    moov = next((bytearray(data[s:e]) for kind, s, _, e in top if kind == b"moov"), None)
    if moov is None or top[0][0] != b"ftyp":
        raise ValueError(f"{source} is not an MP4 starting with ftyp and holding a moov box")
    _shift_chunk_offsets(moov, 8, len(moov), len(moov))
    rest = b"".join(data[s:e] for kind, s, _, e in top[1:] if kind != b"moov")
    Path(destination).write_bytes(data[top[0][1]:top[0][3]] + bytes(moov) + rest)
    return Path(destination)


def _truncate(path: Path, data: bytes, keep: float) -> Path:
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def _full_video(kind: str, suffix: str, seconds: float, seed: int, faststart: bool = False) -> bytes:
    """The bytes of a complete video, made in a temporary directory (not next to the test files)."""
    with tempfile.TemporaryDirectory() as scratch:
        full = write_video(Path(scratch) / f"full{suffix}", kind, seconds, seed=seed)
        if faststart:
            full = faststart_mp4(full, Path(scratch) / f"faststart{suffix}")
        return full.read_bytes()


def write_truncated_mp4(path: Path, seconds: float = 5, seed: int = 0) -> Path:
    """Half of an mp4v MP4 as VideoWriter writes it (index at the end): nothing decodes."""
    return _truncate(path, _full_video("red-ball", ".mp4", seconds, seed), 0.5)


def write_truncated_faststart_mp4(path: Path, seconds: float = 5, keep: float = 0.5, seed: int = 0) -> Path:
    """A prefix of a faststart MP4 (index first): the frames before the cut decode."""
    return _truncate(path, _full_video("blue-box", ".mp4", seconds, seed, faststart=True), keep)


def write_index_only_mp4(path: Path, seconds: float = 5, seed: int = 0) -> Path:
    """A faststart MP4 cut right after its index: it declares frames but holds none."""
    data = _full_video("blue-box", ".mp4", seconds, seed, faststart=True)
    moov_end = next(end for kind, _, _, end in _boxes(data, 0, len(data)) if kind == b"moov")
    Path(path).write_bytes(data[: moov_end + 16])
    return Path(path)


def write_truncated_avi(path: Path, seconds: float = 5, keep: float = 0.5, seed: int = 0) -> Path:
    """A prefix of an MJPG AVI: the frames before the cut decode."""
    return _truncate(path, _full_video("green-stripes", ".avi", seconds, seed), keep)


def write_zero_frame_mp4(path: Path) -> Path:
    """An MP4 from a VideoWriter that was given no frame (a 'moov' box with no tracks)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 72))
    writer.release()
    return Path(path)


def write_audio_only_mp4(path: Path, seconds: float = 2) -> Path:
    """An MP4 with one AAC audio track (a sine tone) and no video; needs ffmpeg."""
    if FFMPEG is None:
        raise RuntimeError("ffmpeg is not installed")
    subprocess.run([FFMPEG, "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-c:a", "aac", str(path)], check=True)
    return Path(path)


def write_empty_file(path: Path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def write_text_as_video(path: Path) -> Path:
    Path(path).write_text("this is a shopping list, not a video\neggs\nmilk\n")
    return Path(path)


def write_png_as_video(path: Path) -> Path:
    ok, png = cv2.imencode(".png", np.full((24, 32, 3), 128, np.uint8))
    Path(path).write_bytes(png.tobytes())
    return Path(path)


def write_wav_as_video(path: Path, seconds: float = 0.5, rate: int = 8000) -> Path:
    """A real WAV file (a sine tone) under a video name."""
    samples = (np.sin(2 * math.pi * 440 * np.arange(int(seconds * rate)) / rate) * 20000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return Path(path)
