"""Video and audio scoring against decoding alone.

Ours is the score job (fetch, decode, model, Parquet); the alternative is the obvious
decoding code with nothing after it, one process per core: OpenCV reading every frame and
keeping the sampled ones, and librosa loading each clip and computing its MFCCs. Both
fetch from the same S3 store, so the ratio is what the pipeline and the model cost.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import tempfile
import time

from jobs.bench.image import score_job

VIDEO_EVERY_SECONDS = 1.0
VIDEO_FPS = 30  # what jobs.bench.data writes
AUDIO = {"sample_rate": 16000, "n_mfcc": 13, "n_fft": 400, "hop_length": 160}


def video_ours(videos: str, model: str, output: str) -> tuple[float, dict]:
    """Sampled frames per second of the video score job, and (`steady`) from its first
    scored frames to its last."""
    result = score_job("video-classifier", model, videos, output, frames={"every_seconds": VIDEO_EVERY_SECONDS})
    return result.examples / result.seconds, {"steady": result.steady_rows_per_s}


def video_decode_only(videos: str) -> float:
    """Sampled frames per second of OpenCV alone: download, `read()` every frame, keep one a second."""
    from jobs.storage.objects import list_objects

    uris = [o.uri for o in list_objects(videos)]
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        pool.map(_video_frames, uris[:2])  # warm up: imports in each process
        began = time.perf_counter()
        frames = sum(pool.map(_video_frames, uris, chunksize=1))
    return frames / (time.perf_counter() - began)


def _video_frames(uri: str) -> int:
    import cv2

    from jobs.storage.objects import download_file

    step = int(round(VIDEO_EVERY_SECONDS * VIDEO_FPS))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "video.mp4")
        download_file(uri, path)
        capture, kept, index = cv2.VideoCapture(path), 0, 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            kept += index % step == 0
            index += 1
        capture.release()
    return kept


def audio_ours(clips: str, model: str, output: str) -> float:
    """Clips per second of the audio score job."""
    result = score_job("audio-classifier", model, clips, output)
    return result.listed / result.seconds


def audio_decode_mfcc(clips: str, chunk: int = 64) -> float:
    """Clips per second of librosa alone: download, `librosa.load`, `librosa.feature.mfcc`."""
    from jobs.storage.objects import list_objects

    uris = [o.uri for o in list_objects(clips)]
    chunks = [uris[i:i + chunk] for i in range(0, len(uris), chunk)]
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        pool.map(_mfccs, [c[:2] for c in chunks[:2]])  # warm up: imports in each process
        began = time.perf_counter()
        done = sum(pool.map(_mfccs, chunks, chunksize=1))
    return done / (time.perf_counter() - began)


def _mfccs(uris: list[str]) -> int:
    import librosa

    from jobs.storage.objects import read_bytes

    for uri in uris:
        signal, rate = librosa.load(io.BytesIO(read_bytes(uri)), sr=AUDIO["sample_rate"])
        librosa.feature.mfcc(y=signal, sr=rate, n_mfcc=AUDIO["n_mfcc"], n_fft=AUDIO["n_fft"],
                             hop_length=AUDIO["hop_length"])
    return len(uris)
