"""A poison corpus through `mediajobs run` on the local stack: decoders that abort, hang in C
or meet frames too large to decode, and 64 images of 200 MiB in one block, mixed into 1,000
good objects. The jobs exit 0 in minutes, every bad object is one errors row with its reason,
every good one is scored, the actors' memory stays bounded, and nothing a decode child sees
holds a secret (issue 18)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from support.media import image_bytes
from support.paths import ROOT

pytestmark = pytest.mark.integration
EXAMPLES = ROOT / "jobs" / "examples"
MEDIAJOBS = [sys.executable, "-m", "jobs.cli.app"]
BUCKET = "it-poison"
GOOD = 1000
HUGE, HUGE_BYTES = 64, 200 << 20
FAULT = b"MEDIAJOBS-FAULT:"  # tasks.decode_child's test hook, on with MEDIAJOBS_DECODE_FAULTS=1
# The hanging decoder is killed after this (plus decode_isolation.GRACE_SECONDS), and once more
# on its retry: the job waits it out twice. Decoding a good object here takes well under a second.
DECODE_SECONDS = 4
ACTOR_MEMORY = 4 << 30


def _bmp(width: int, height: int) -> bytes:
    """A real 24-bit BMP of that size (black), as big as its pixels: 8192x8534 is 200 MiB."""
    row = width * 3
    pixels = row * height
    header = b"BM" + struct.pack("<IHHI", 54 + pixels, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, pixels, 2835, 2835, 0, 0)
    return header + bytes(pixels)


def _mjpeg_avi(path: Path, side: int) -> bytes:
    """A two-frame Motion-JPEG AVI of side x side pixels (OpenCV's own MJPEG writer)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 2, (side, side))
    frame = np.zeros((side, side, 3), np.uint8)
    frame[::64] = 255
    for _ in range(2):
        writer.write(frame)
    writer.release()
    return path.read_bytes()


def _filer_url() -> str:
    home = Path(os.environ["MEDIAJOBS_HOME"])
    return "http://127.0.0.1:{}".format(json.loads((home / "stack.json").read_text())["ports"]["seaweedfs"]["filer"])


@pytest.fixture(scope="module")
def corpus(local_stack, tmp_path_factory):
    """s3://it-poison/images/ and videos/, the models; returns what each bad object should be."""
    import urllib3

    from jobs.bench.models import export_model
    from jobs.storage.objects import s3_client
    from support.media_video import write_video

    s3_client().create_bucket(Bucket=BUCKET)
    export_model(f"s3://{BUCKET}/image-model/", "image-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]})
    export_model(f"s3://{BUCKET}/video-model/", "video-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]})
    scratch = tmp_path_factory.mktemp("poison")
    objects: dict[str, bytes] = {f"images/good/img-{i:04d}.jpg": image_bytes("JPEG", (20, 16), i) for i in range(GOOD)}
    bad = {"images/poison/abort.jpg": ("crash", "killed by signal SIGABRT"),
           "images/poison/hang.jpg": ("timeout", f"longer than the {DECODE_SECONDS} s budget"),
           "images/poison/environ.jpg": ("decode", "environ "),
           "images/poison/huge-30000x30000.hdr": ("decode", "its size cannot be read before decoding"),
           "videos/mjpeg-8192.avi": ("decode", "video frames too large: 8192x8192"),
           "videos/mjpeg-16384.avi": ("decode", "")}
    objects.update({"images/poison/abort.jpg": FAULT + b"abort", "images/poison/hang.jpg": FAULT + b"hang",
                    "images/poison/environ.jpg": FAULT + b"environ",
                    # Radiance HDR: OpenCV decodes it, PIL cannot read its header (30000x30000 floats: 10 GB)
                    "images/poison/huge-30000x30000.hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n"
                                                          b"-Y 30000 +X 30000\n" + bytes(4096),
                    "videos/mjpeg-8192.avi": _mjpeg_avi(scratch / "a.avi", 8192),
                    "videos/mjpeg-16384.avi": _mjpeg_avi(scratch / "b.avi", 16384)})
    for i in range(3):
        objects[f"videos/good-{i}.mp4"] = write_video(scratch / f"good-{i}.mp4", "red-ball", 1.0, seed=i).read_bytes()
    huge = _bmp(8192, 8534)
    assert len(huge) >= HUGE_BYTES
    for i in range(HUGE):  # consecutive keys: one block of the plain job (batch_size 256)
        bad[f"images/poison/huge-{i:02d}.bmp"] = ("decode", "image too large: 8192x8534")

    http, url = urllib3.PoolManager(maxsize=8), f"{_filer_url()}/buckets/{BUCKET}/"

    def put(item: tuple[str, bytes]) -> None:
        key, body = item
        response = http.request("PUT", url + key, body=body, retries=urllib3.Retry(3, backoff_factor=0.2))
        assert response.status in (200, 201), (key, response.status, response.data[:300])

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, objects.items()))
        list(pool.map(put, [(f"images/poison/huge-{i:02d}.bmp", huge) for i in range(HUGE)]))
    print(f"uploaded the poison corpus ({len(objects) + HUGE} objects) in {time.monotonic() - started:.1f} s")
    yield {f"s3://{BUCKET}/{key}": expected for key, expected in bad.items()}
    from jobs.storage.objects import delete_prefix

    delete_prefix(f"s3://{BUCKET}/images/poison/")  # 12.5 GiB off the session's store


class ActorMemory:
    """Peak RSS of any scoring actor process (Ray names them `ray::MapWorker(...)`), sampled."""

    def __init__(self) -> None:
        self.peak, self.samples = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in psutil.process_iter(["name", "cmdline"]):
                try:
                    title = " ".join(process.info["cmdline"] or []) or process.info["name"] or ""
                    if "MapWorker" in title:
                        self.peak = max(self.peak, process.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.samples += 1
            self._stop.wait(0.5)

    def __enter__(self) -> "ActorMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _run(spec: str, overrides: dict[str, str]) -> tuple[float, ActorMemory]:
    env = {**os.environ, "MEDIAJOBS_DECODE_FAULTS": "1", "MEDIAJOBS_DECODE_SECONDS": str(DECODE_SECONDS)}
    args = [*MEDIAJOBS, "run", str(EXAMPLES / spec), *(a for k, v in overrides.items() for a in ("--set", f"{k}={v}"))]
    started = time.monotonic()
    with ActorMemory() as memory:
        job = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:]
    return time.monotonic() - started, memory


def _score_folder(spec: str, model: str, folder: str, example_table: str):
    """`mediajobs run` of `spec` over s3://it-poison/<folder>/ with <model>; returns the objects
    listed, those scored, the errors rows by URI, the seconds and the actors' memory."""
    from jobs.storage.delta import read_table
    from jobs.storage.objects import list_objects

    output = f"s3://{BUCKET}/out-{folder}/"
    seconds, memory = _run(spec, {"model": f"s3://{BUCKET}/{model}/", "input": f"s3://{BUCKET}/{folder}/",
                                  "output": output})
    listed = {o.uri for o in list_objects(f"s3://{BUCKET}/{folder}/")}
    scored = read_table(output + example_table + "/", columns=["uri"]).column("uri").to_pylist()
    errors = read_table(output + "errors/", columns=["uri", "stage", "error"]).to_pylist()
    assert len({e["uri"] for e in errors}) == len(errors), "an object has two errors rows"
    return listed, set(scored), {e["uri"]: e for e in errors}, seconds, memory


def _misreported(errors: dict[str, dict], expected: dict[str, tuple[str, str]]) -> list[tuple]:
    """The bad objects whose errors row has another stage, or a reason without the expected words."""
    return [(uri, errors[uri]["stage"], errors[uri]["error"][:200]) for uri, (stage, reason) in expected.items()
            if uri in errors and (errors[uri]["stage"] != stage or reason not in errors[uri]["error"])]


def _secrets(local_stack) -> dict[str, str]:
    from cluster.localstate import ray_auth_token_file

    return {"S3 secret key": local_stack.secret_key, "Ray token": ray_auth_token_file().read_text().strip()}


@pytest.mark.timeout(1200)
def test_a_poison_corpus_scores_to_exit_0_with_every_object_accounted_for(corpus, local_stack):
    listed, scored, errors, seconds, memory = _score_folder("score-demo.yaml", "image-model", "images", "predictions")
    bad = {uri: expected for uri, expected in corpus.items() if uri in listed}
    assert len(listed) == GOOD + HUGE + 4 and not scored & set(errors) and scored | set(errors) == listed
    assert set(errors) == set(bad), sorted(set(errors) ^ set(bad))[:5]
    assert not (wrong := _misreported(errors, bad)), wrong
    # What the decode child saw, from inside: no credential, no token, no file of the actor's.
    seen = errors[f"s3://{BUCKET}/images/poison/environ.jpg"]["error"]
    assert not [name for name, secret in _secrets(local_stack).items() if secret in seen]
    environment = json.loads(seen.removeprefix("environ "))["env"]
    assert not [name for name in environment if name.startswith(("AWS_", "RAY_")) or "SECRET" in name]
    assert memory.samples > 10 and memory.peak < ACTOR_MEMORY, (memory.peak, memory.samples)
    assert seconds < 600, seconds
    print(f"poison corpus: {len(listed)} objects in {seconds:.0f} s, actor peak RSS {memory.peak / 2**30:.2f} GiB")


@pytest.mark.timeout(900)
def test_video_frames_too_large_to_decode_are_refused_before_decoding(corpus, local_stack):
    listed, scored, errors, _, memory = _score_folder("score-video.yaml", "video-model", "videos", "frames")
    assert {u.rsplit("/", 1)[-1] for u in scored} == {"good-0.mp4", "good-1.mp4", "good-2.mp4"}
    assert set(errors) == {u for u in listed if "mjpeg" in u}
    assert not (wrong := _misreported(errors, corpus)), wrong
    assert memory.peak < ACTOR_MEMORY, memory.peak
