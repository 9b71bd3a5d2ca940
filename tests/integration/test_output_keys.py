"""Output keys derived from input keys stay under the output prefix, end to end.

Input objects whose keys try to leave their prefix (`..` segments, `//` and leading `/`,
`%2e%2e` and `%2F`, backslashes, `?` and `#`, URLs, unicode look-alikes, control
characters, the escape character itself, a key too long to keep) go through the real CLI
on the real stack: a stylize job and a video score job with `annotate: true`. (SeaweedFS
refuses `.` and `..` segments and folds `//` and `\\` into `/`: what it keeps of such keys
goes through the jobs.) Every bucket of the store is snapshotted (keys and ETags) before
and after each job: the job may only have created objects under its output prefix,
changed nothing else, and written one distinct output per input, holding that input's
own pixels.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.cli import MediaJobsCli
from support.paths import ROOT

pytestmark = pytest.mark.integration
EXAMPLES = ROOT / "jobs" / "examples"
BUCKET = "it-output-keys"
# A bucket a key could name (`s3://it-output-keys-other/...`): it must stay empty.
OTHER_BUCKET = "it-output-keys-other"

# Relative to the input prefix; SeaweedFS keeps these keys byte for byte. Pairs that a
# lossy sanitizer maps onto one output key are here on purpose (`a b` / `a_b` / `a+b`;
# `x.jpg` / `x.jpg.png` when `.png` is appended; `a~20b`, which looks like an escaped `a b`).
VERBATIM_KEYS = (
    "plain.png",
    "%2e%2e/encoded.png",
    "%2e%2e%2f%2e%2e%2fencoded.png",
    "%2E%2E%2Fencoded.png",
    "a%2Fb.png",
    "a%252Fb.png",
    "q?x=1&y=%2e%2e%2fz.png",
    "h#../fragment.png",
    "a../b...png",
    "~/home.png",
    "$HOME/x.png",
    "é/ünïcödé.png",
    "e\u0301.png",  # the same é, decomposed: another key
    "日本語/写真.png",
    "\u202egnp.exe.png",  # right-to-left override
    "\uff0e\uff0e/fullwidth-dots.png",
    "\u2024\u2024/one-dot-leaders.png",
    "tab\there.png",
    "new\nline.png",
    "ctl\x01.png",
    "a b.png",
    "a_b.png",
    "a+b.png",
    "a%20b.png",
    "a~20b.png",
    "~/~.png",
    "x.jpg",
    "x.jpg.png",
    "long/" + "é" * 120 + ".png",  # 244 bytes of name: 724 characters escaped
    "/".join(["d" * 200] * 4) + "/deep.png",  # 800 bytes of folders
)
# Keys S3 keeps as they are but SeaweedFS does not: it refuses `.` and `..` segments (also
# when `\` separates them) with InvalidRequest and folds `//`, a leading `/` and `\` into
# single `/`s. They are uploaded all the same: whatever the store made of them goes through
# the job too. (The unit tests of `output_key_for` take them verbatim.)
STORE_ALTERED_KEYS = (
    "../escape.png",
    "../../../../etc/passwd.png",
    "a/../../b.png",
    "./dot.png",
    "a/./b.png",
    "back\\..\\..\\slash.png",
    "q?x=1&y=../../z.png",
    "a//double.png",
    "/leading.png",
    "///triple.png",
    "\\\\server\\share\\x.png",
    "C:\\windows\\x.png",
    "s3://it-output-keys-other/x.png",
    "file:///etc/x.png",
    "https://example.invalid/../x.png",
)
VIDEO_KEYS = ("v.mp4", "%2e%2e/v.mp4", "v 1.mp4", "v_1.mp4", "é.mp4", "v~201.mp4", "../v.mp4", "a//v.mp4",
              "back\\..\\v.mp4")


def _s3():
    from jobs.storage.objects import s3_client

    return s3_client()


def _all_objects() -> dict[tuple[str, str], str]:
    """Every object of every bucket in the store: (bucket, key) -> ETag."""
    client, found = _s3(), {}
    for bucket in client.list_buckets()["Buckets"]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for item in page.get("Contents", []):
                found[bucket["Name"], item["Key"]] = item["ETag"]
    return found


def _upload(prefix: str, verbatim: dict[str, bytes], altered: dict[str, bytes]) -> list[str]:
    """Put each key as it is (boto3: pyarrow refuses empty segments); the `verbatim` ones
    must be stored byte for byte. Returns the keys stored under `prefix`."""
    from botocore.exceptions import ClientError

    client = _s3()
    for key, data in {**verbatim, **altered}.items():
        try:
            client.put_object(Bucket=BUCKET, Key=prefix + key, Body=data)
        except ClientError as exc:
            assert key in altered and exc.response["Error"]["Code"] == "InvalidRequest", (key, exc)
    stored = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
              for item in page.get("Contents", [])]
    assert {prefix + key for key in verbatim} <= set(stored), sorted({prefix + key for key in verbatim} - set(stored))
    return stored


def _run_cli(cli: MediaJobsCli, spec: Path, *overrides: str) -> str:
    job = cli("run", str(spec), *(a for o in overrides for a in ("--set", o)), timeout=300)
    log = job.stdout + job.stderr
    assert job.returncode == 0, log[-3000:]
    return log


def _check_only_output_written(before: dict, after: dict, output_key_prefix: str) -> set[str]:
    """Nothing outside `BUCKET/output_key_prefix` was created, changed or deleted, not even an
    empty folder marker at a parent of the prefix (pyarrow's recursive `create_dir` makes
    those on S3, replacing an object of that key, unless told not to); the keys the job
    created are clean (no empty, `.` or `..` segment) and fit S3. Returns them."""
    created = {where for where in after if where not in before}
    changed = {where for where in before if where in after and before[where] != after[where]}
    deleted = {where for where in before if where not in after}
    outside = {where for where in created | changed | deleted
               if where[0] != BUCKET or not where[1].startswith(output_key_prefix)}
    assert not outside, sorted(outside)[:10]
    assert not changed and not deleted, sorted(changed | deleted)[:10]  # the output prefix was new
    keys = {key for _, key in created if key.startswith(output_key_prefix)}
    relative = [key[len(output_key_prefix):].rstrip("/") for key in keys]  # folder markers end in "/"
    unclean = [key for key in relative if key and {"", ".", ".."} & set(key.split("/"))]
    assert not unclean, unclean[:5]
    assert all(len(key.encode()) <= 1024 for key in keys)
    return keys


def _solid_video(path: Path, colour: tuple[int, int, int]) -> bytes:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 4, (64, 48))
    for _ in range(4):
        writer.write(np.full((48, 64, 3), colour[::-1], np.uint8))  # OpenCV writes BGR
    writer.release()
    return path.read_bytes()


def _video_colour(path: Path) -> np.ndarray:
    """The median RGB colour of the lower half of a video's first frame (below any banner)."""
    import cv2

    ok, frame = cv2.VideoCapture(str(path)).read()
    assert ok, path
    return np.median(frame[frame.shape[0] // 2:, :, ::-1].reshape(-1, 3), axis=0)


@pytest.fixture(scope="module")
def odd_inputs(local_stack, tmp_path_factory):
    """The odd keys uploaded (images: random pixels, a seed each; videos: a solid colour
    each), a style image, an identity stylizer and a seeded video model."""
    import tensorflow as tf

    from jobs.bench.models import export_model
    from support.media import image_bytes

    client = _s3()
    for bucket in (BUCKET, OTHER_BUCKET):
        client.create_bucket(Bucket=bucket)
    images = {key: image_bytes("PNG", size=(20 + i % 5, 16), seed=i)
              for i, key in enumerate(VERBATIM_KEYS + STORE_ALTERED_KEYS)}
    stored_images = _upload("in/", {k: images[k] for k in VERBATIM_KEYS}, {k: images[k] for k in STORE_ALTERED_KEYS})
    _upload("styles/", {"wave.png": image_bytes("PNG", size=(32, 32), seed=99)}, {})
    scratch = tmp_path_factory.mktemp("odd-videos")
    videos = {key: _solid_video(scratch / f"{i}.mp4", ((i * 97) % 200 + 40, (i * 53) % 200 + 40, (i * 31) % 200 + 40))
              for i, key in enumerate(VIDEO_KEYS)}
    altered = [key for key in VIDEO_KEYS if "//" in key or "\\" in key or ".." in key.split("/")]
    stored_videos = _upload("vin/", {k: v for k, v in videos.items() if k not in altered},
                            {k: videos[k] for k in altered})

    class Identity(tf.Module):  # a stylizer of the TF Hub signature that returns the content
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                      tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, content, style):
            return [content]

    stylizer = tmp_path_factory.mktemp("identity-stylizer")
    tf.saved_model.save(Identity(), str(stylizer))
    video_model = export_model(f"s3://{BUCKET}/models/video/", "video-classifier", "cifar10-cnn",
                               {"input_shape": [32, 32, 3]})
    return {"stylizer": str(stylizer), "video_model": video_model, "images": _listed(stored_images),
            "videos": _listed(stored_videos)}


def _listed(keys: list[str]) -> set[str]:
    """The URIs a job lists among `keys`: names starting with `.` are hidden."""
    return {f"s3://{BUCKET}/{key}" for key in keys if not key.rsplit("/", 1)[-1].startswith(".")}


def test_stylized_keys_stay_under_the_output_prefix_one_per_input(mediajobs_cli, odd_inputs):
    from jobs.storage.objects import read_bytes
    from jobs.storage.delta import read_table

    output_key = "out/stylized/"
    before = _all_objects()
    _run_cli(mediajobs_cli, EXAMPLES / "stylize.yaml", f"model={odd_inputs['stylizer']}", f"input=s3://{BUCKET}/in/",
             f"styles=[s3://{BUCKET}/styles/wave.png]", f"output=s3://{BUCKET}/{output_key}", "image_format=png",
             "resources.concurrency=1")
    created = _check_only_output_written(before, _all_objects(), output_key)

    results = read_table(f"s3://{BUCKET}/{output_key}results/").to_pylist()
    assert not [key for key in created if key.startswith(output_key + "errors/")], "an odd key became an error row"
    assert sorted(r["content_uri"] for r in results) == sorted(odd_inputs["images"])  # each input once (one style)
    outputs = [r["output_uri"] for r in results]
    assert len(set(outputs)) == len(outputs), "two inputs share an output key"
    images = {f"s3://{BUCKET}/{key}" for key in created if key.startswith(output_key + "images/")}
    assert images == set(outputs)  # and nothing else under images/
    for row in results:
        # The identity stylizer: the object at each output key holds its own input's pixels,
        # so no input's result was written over by another's.
        stylized = np.asarray(Image.open(io.BytesIO(read_bytes(row["output_uri"]))).convert("RGB"))
        content = np.asarray(Image.open(io.BytesIO(read_bytes(row["content_uri"]))).convert("RGB"))
        assert np.array_equal(stylized, content), (row["content_uri"], row["output_uri"])


def test_annotated_video_keys_stay_under_the_output_prefix_one_per_input(mediajobs_cli, odd_inputs, tmp_path):
    from jobs.storage.objects import download_file, read_bytes

    output_key = "out/videos/"
    before = _all_objects()
    _run_cli(mediajobs_cli, EXAMPLES / "score-video.yaml", f"model={odd_inputs['video_model']}", f"input=s3://{BUCKET}/vin/",
             f"output=s3://{BUCKET}/{output_key}", "annotate=true", "resources.concurrency=1")
    created = _check_only_output_written(before, _all_objects(), output_key)

    summary_key = next(key for key in created if key.startswith(output_key + "runs/") and key.endswith("/summary.json"))
    annotated = json.loads(read_bytes(f"s3://{BUCKET}/{summary_key}"))["annotated"]
    assert sorted(a["uri"] for a in annotated) == sorted(odd_inputs["videos"])
    assert all(a["error"] is None for a in annotated), annotated
    written = [a["video_uri"] for a in annotated] + [a["sheet_uri"] for a in annotated]
    assert len(set(written)) == len(written), "two videos share an annotated key"
    assert {f"s3://{BUCKET}/{key}" for key in created if key.startswith(output_key + "annotated/")} == set(written)
    for i, row in enumerate(annotated):
        # Each annotated MP4 shows its own video (each input is another solid colour).
        source, drawn = tmp_path / f"{i}-source.mp4", tmp_path / f"{i}-annotated.mp4"
        download_file(row["uri"], source)
        download_file(row["video_uri"], drawn)
        assert np.abs(_video_colour(drawn) - _video_colour(source)).max() < 16, row
