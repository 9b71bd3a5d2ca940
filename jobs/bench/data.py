"""The benchmark's own media, made by code and stored in S3 once per size.

Photo-like JPEGs (224-400 px a side, smooth gradients, discs and sensor noise: what a
JPEG decoder meets in an archive, ~35 KB each) in ten class folders, MP4 videos and WAV
clips. A set is reused when its `.complete.json` marker says it was fully written with
the same generator version, so a second `mediajobs bench` starts measuring at once.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

VERSION = 1  # bump when a generator changes what it writes
CLASSES = tuple(f"class{i}" for i in range(10))
MARKER_SUFFIX = ".complete.json"


@dataclass(frozen=True)
class BenchSizes:
    images: int  # all images; memory is measured at images // 5 (N) and images (5N)
    videos: int
    video_seconds: float
    clips: int
    clip_seconds: float
    train_batch: int  # global batch size of both training runs (they train on the N images)
    epochs: int
    repeats: int  # each throughput figure is the median of this many runs
    seed_loop_images: int  # the seeds' one-predict-per-image loop is timed on this many

    @classmethod
    def for_mode(cls, quick: bool) -> BenchSizes:
        if quick:
            return cls(images=500, videos=4, video_seconds=4, clips=60, clip_seconds=2, train_batch=32,
                       epochs=2, repeats=1, seed_loop_images=20)
        return cls(images=15_000, videos=120, video_seconds=45, clips=3_000, clip_seconds=3, train_batch=128,
                   epochs=6, repeats=2, seed_loop_images=200)


@dataclass(frozen=True)
class BenchData:
    root: str  # s3://bucket/bench-v1/
    images: str  # all image parts: <images>part-K/classC/NNNNN.jpg
    images_n: str  # one fifth of them (part-0): the N of the memory measurement
    videos: str
    clips: str


def prepare(bucket_uri: str, sizes: BenchSizes, echo=print) -> BenchData:
    """The benchmark data under `bucket_uri`, written now unless a complete copy is there."""
    from jobs.storage.checks import ensure_bucket
    from jobs.storage.objects import parse_uri

    root = parse_uri(bucket_uri).as_prefix().join(f"bench-v{VERSION}").as_prefix()
    ensure_bucket(root.uri)
    per_part = sizes.images // 5
    data = BenchData(root.uri, root.join(f"images-{sizes.images}").uri + "/",
                     root.join(f"images-{sizes.images}", "part-0").uri + "/",
                     root.join(f"videos-{sizes.videos}x{sizes.video_seconds:g}s").uri + "/",
                     root.join(f"clips-{sizes.clips}x{sizes.clip_seconds:g}s").uri + "/")
    _ensure(data.images, sizes.images, echo, "JPEG images",
            [(data.images, part, per_part) for part in range(5)], _write_image_part)
    _ensure(data.videos, sizes.videos, echo, f"{sizes.video_seconds:g} s MP4 videos",
            [(data.videos, i, sizes.video_seconds) for i in range(sizes.videos)], _write_video)
    chunks = [(data.clips, start, min(500, sizes.clips - start), sizes.clip_seconds)
              for start in range(0, sizes.clips, 500)]
    _ensure(data.clips, sizes.clips, echo, f"{sizes.clip_seconds:g} s WAV clips", chunks, _write_clips)
    return data


def _ensure(prefix: str, count: int, echo, what: str, jobs: list[tuple], writer) -> None:
    from jobs.storage.objects import exists, parse_uri, write_bytes

    # Beside the set, not in it: every object under the prefix is media the runs score.
    marker = parse_uri(prefix.rstrip("/") + MARKER_SUFFIX).uri
    if exists(marker):
        return
    echo(f"making {count:,} {what} under {prefix}")
    # Generation is CPU work (drawing, JPEG/MP4 encoding): one process per core. Spawned,
    # not forked: a forked child would share this process's S3 connections (seen: BadDigest).
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        written = sum(pool.map(writer, *zip(*jobs)))
    write_bytes(marker, json.dumps({"version": VERSION, "objects": written}).encode())


def photo(rng: np.random.Generator, width: int, height: int, hue: float) -> np.ndarray:
    """A photo-like RGB picture: a gradient, a few discs and sensor noise; `hue` tints it."""
    import cv2

    tint = np.array([np.cos(hue), np.cos(hue + 2.1), np.cos(hue + 4.2)], np.float32) * 70 + 128
    across = 50 * np.sin(np.arange(width, dtype=np.float32) / rng.uniform(20, 80) + rng.uniform(0, 6))
    down = 50 * np.cos(np.arange(height, dtype=np.float32) / rng.uniform(20, 80))
    image = np.clip(tint + (down[:, None] + across[None, :])[..., None], 0, 255).astype(np.uint8)
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(10, width // 3)), [int(v) for v in rng.integers(0, 256, 3)], -1)
    # Sensor noise, cut from a tile made once per process (drawing fresh noise costs more
    # than the rest of the picture).
    noise = _noise_tile()
    top, left = int(rng.integers(0, noise.shape[0] - height)), int(rng.integers(0, noise.shape[1] - width))
    return np.clip(image.astype(np.int16) + noise[top:top + height, left:left + width], 0, 255).astype(np.uint8)


_NOISE: list[np.ndarray] = []


def _noise_tile() -> np.ndarray:
    if not _NOISE:
        _NOISE.append(np.random.default_rng(0).normal(0, 12, (600, 600, 3)).astype(np.int16))
    return _NOISE[0]


def _write_image_part(prefix: str, part: int, count: int) -> int:
    import cv2

    from jobs.storage.objects import parse_uri, s3_client

    location = parse_uri(prefix)
    client = s3_client()

    def put(i: int) -> None:
        label = i % len(CLASSES)
        local = np.random.default_rng((part, i))
        width, height = (int(v) for v in local.integers(224, 401, 2))
        pixels = photo(local, width, height, hue=label * 2 * np.pi / len(CLASSES))
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        key = location.join(f"part-{part}", CLASSES[label], f"{part}-{i:05d}.jpg").key
        client.put_object(Bucket=location.bucket, Key=key, Body=encoded.tobytes(), ContentType="image/jpeg")

    with ThreadPoolExecutor(max_workers=8) as uploads:
        list(uploads.map(put, range(count)))
    return count


def _write_video(prefix: str, index: int, seconds: float) -> int:
    """A 320x240, 30 fps mp4v video of moving discs over a noisy background."""
    import cv2

    from jobs.storage.objects import parse_uri, upload_file

    rng = np.random.default_rng(index)
    width, height, fps = 320, 240, 30
    background = photo(rng, width, height, hue=index)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"video-{index:03d}.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
        position, velocity = rng.uniform(40, 200, 2), rng.uniform(-4, 4, 2)
        for _ in range(int(seconds * fps)):
            frame = background.copy()
            cv2.circle(frame, (int(position[0]) % width, int(position[1]) % height), 30, (230, 40, 40), -1)
            writer.write(frame)
            position += velocity
        writer.release()
        upload_file(path, parse_uri(prefix).join(f"video-{index:03d}.mp4").uri)
    return 1


def _write_clips(prefix: str, start: int, count: int, seconds: float) -> int:
    """16 kHz mono WAV clips: a chirp over noise."""
    import soundfile as sf

    from jobs.storage.objects import parse_uri, s3_client

    location = parse_uri(prefix)
    client = s3_client()
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate

    def put(i: int) -> None:
        rng = np.random.default_rng(i)
        f0, f1 = rng.uniform(200, 3000, 2)
        signal = 0.4 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))) + rng.normal(0, 0.05, t.size)
        buffer = io.BytesIO()
        sf.write(buffer, signal.astype(np.float32), rate, subtype="PCM_16", format="WAV")
        client.put_object(Bucket=location.bucket, Key=location.join(f"clip-{i:05d}.wav").key,
                          Body=buffer.getvalue(), ContentType="audio/wav")

    with ThreadPoolExecutor(max_workers=8) as uploads:
        list(uploads.map(put, range(start, start + count)))
    return count
