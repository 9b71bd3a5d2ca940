"""Video and audio scoring against decoding alone and against Ray Data's own readers.

Ours is the score job (fetch, decode, model, Parquet). The limits are the obvious decoding
code with nothing after it, one process per core: OpenCV (one decoder thread, as ours)
reading every frame and keeping the sampled ones, and librosa loading each clip and
computing its MFCCs; the ratio is what the pipeline and the model cost. The peers are Ray
Data as its release benchmarks write media inference (`multimodal_inference_benchmarks/`):
`read_videos` (decord) -> resize `map` -> model actors -> `write_parquet`, and
`read_audio` -> resample `map` -> MFCC `map_batches` -> model actors -> `write_parquet`.
All read the same S3 objects.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import tempfile
import time

import numpy as np

from jobs.bench.image import BATCH, INPUT_SHAPE, _cpus, _rows, score_job

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
        # One decoder thread, as ours opens its videos: with a process per core it is the
        # fastest way to decode here (docs/performance.md "Library trials").
        capture, kept, index = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1]), 0, 0
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


def video_ray_read_videos(videos: str, model_uri: str, output: str) -> float:
    """Sampled frames per second of Ray Data's video recipe: `read_videos(fps=1)` (decord
    decodes every frame, keeps one a second: the frames ours samples) -> resize `map` ->
    model actors -> `write_parquet`."""
    import ray.data

    from jobs.bench.image import _Predictor
    from jobs.storage.objects import filesystem_for, parse_uri

    began = time.perf_counter()
    source, target = parse_uri(videos), parse_uri(output)
    ds = ray.data.read_videos(source.fs_path, filesystem=filesystem_for(source), include_paths=True,
                              fps=round(1 / VIDEO_EVERY_SECONDS))
    ds = (ds.map(_resize_frame)
          # Model actors hold no CPU slot, as in the image recipe, where one that held a slot
          # deadlocked the 2-CPU cluster; Anyscale's recipes give each a GPU instead.
          .map_batches(_Predictor, fn_constructor_kwargs={"model_uri": model_uri, "key": "path"},
                       batch_size=BATCH, batch_format="numpy", num_cpus=0, concurrency=max(1, _cpus() - 1))
          .select_columns(["path", "label", "score"]))
    ds.write_parquet(target.fs_path, filesystem=filesystem_for(target))
    return _rows(target) / (time.perf_counter() - began)


def _resize_frame(row: dict) -> dict:
    from PIL import Image

    frame = row.pop("frame")
    row["image"] = np.asarray(Image.fromarray(frame).resize(INPUT_SHAPE[:2], Image.Resampling.BILINEAR))
    return row


def audio_ray_read_audio(clips: str, model_uri: str, output: str) -> float:
    """Clips per second of Ray Data's audio recipe: `read_audio` -> resample `map` -> MFCC
    `map_batches` -> model actors -> `write_parquet`, a label per clip (the mean of its
    one-second windows' probabilities, as ours labels a file)."""
    import ray.data

    from jobs.storage.objects import filesystem_for, parse_uri

    began = time.perf_counter()
    source, target = parse_uri(clips), parse_uri(output)
    ds = (ray.data.read_audio(source.fs_path, filesystem=filesystem_for(source), include_paths=True)
          .map(_resample)
          .map_batches(_mfcc_batch)
          .map_batches(ClipClassifier, fn_constructor_kwargs={"model_uri": model_uri}, batch_size=BATCH,
                       batch_format="numpy", num_cpus=0, concurrency=max(1, _cpus() - 1))
          .select_columns(["path", "label", "score"]))
    ds.write_parquet(target.fs_path, filesystem=filesystem_for(target))
    return _rows(target) / (time.perf_counter() - began)


def _resample(row: dict) -> dict:
    import librosa

    signal = row.pop("amplitude").mean(axis=0)  # (channels, samples) -> mono
    row["signal"] = librosa.resample(signal, orig_sr=int(row.pop("sample_rate")), target_sr=AUDIO["sample_rate"])
    return row


def _mfcc_batch(batch: dict) -> dict:
    signals = batch.pop("signal")
    batch["mfcc"] = np.stack([mfcc_windows(signal) for signal in signals])
    return batch


def mfcc_windows(signal: np.ndarray) -> np.ndarray:
    """(windows, frames, n_mfcc) float32: librosa's MFCCs of each whole one-second window of
    a 16 kHz signal, the examples the audio model takes (the bench's clips are whole seconds)."""
    import librosa

    window = AUDIO["sample_rate"]
    count = max(1, len(signal) // window)
    signal = np.pad(signal, (0, max(0, window - len(signal))))
    return np.stack([librosa.feature.mfcc(y=signal[i * window:(i + 1) * window], sr=AUDIO["sample_rate"],
                                          n_mfcc=AUDIO["n_mfcc"], n_fft=AUDIO["n_fft"],
                                          hop_length=AUDIO["hop_length"]).T for i in range(count)]).astype(np.float32)


class ClipClassifier:
    """A clip's label: the audio model over its windows as a graph, probabilities averaged."""

    def __init__(self, model_uri: str) -> None:
        from jobs.bench.models import graph_model

        self.predict, self.class_names = graph_model(model_uri)

    def classify(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and scores of a batch of clips, (clips, windows, frames, n_mfcc)."""
        clips, per_clip = windows.shape[:2]
        probabilities = self.predict(windows.reshape(clips * per_clip, *windows.shape[2:])).numpy()
        probabilities = probabilities.reshape(clips, per_clip, -1).mean(axis=1)
        return self.class_names[probabilities.argmax(axis=1)], probabilities.max(axis=1)

    def __call__(self, batch: dict) -> dict:
        labels, scores = self.classify(np.asarray(batch["mfcc"]))
        return {"path": batch["path"], "label": labels, "score": scores}
