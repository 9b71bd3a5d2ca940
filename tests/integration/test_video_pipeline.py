"""Video end to end on the real local stack: train on class folders of MP4s, score with annotation."""

from __future__ import annotations

import io

import cv2
import pytest
from PIL import Image

from jobs.datasets.ingest import ingest_folder
from jobs.runs.dispatch import run_spec
from jobs.spec.load import load_spec
from jobs.storage.objects import download_file, list_objects, read_bytes
from jobs.storage.delta import read_table
from support.media_video import (write_empty_file, write_text_as_video, write_truncated_faststart_mp4,
                         write_truncated_mp4, write_video, write_video_dataset, write_zero_frame_mp4)
from support.paths import EXAMPLES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def video_model(ray_driver, tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video_dataset(root, per_class_train=6, per_class_test=2, seed=5, seconds=4.0)
    ingest_folder(root, "s3://it-media/videos/")
    spec = load_spec(EXAMPLES / "train-video.yaml", [
        "data.train=s3://it-media/videos/train/", "data.validation=s3://it-media/videos/test/",
        "training.epochs=4", "training.batch_size=16", "output=s3://it-models/video-cnn/"])
    return run_spec(spec)


def test_video_training_learns_frames(video_model):
    assert video_model.class_names == ["blue-box", "green-stripes", "red-ball"]
    assert video_model.examples == 3 * 6 * 8  # 4 s videos sampled every 0.5 s
    assert video_model.metrics["val_accuracy"] > 0.7, video_model.metrics


def test_video_scoring_writes_frames_videos_and_annotations(video_model, tmp_path):
    spec = load_spec(EXAMPLES / "score-video.yaml", [
        "model=s3://it-models/video-cnn/", "input=s3://it-media/videos/test/", "output=s3://it-scores/videos/"])
    result = run_spec(spec)
    frames = read_table(result.tables["frames"]).to_pandas()
    videos = read_table(result.tables["videos"]).to_pandas()
    assert len(videos) == 6 and result.errors == 0
    assert len(frames) == 6 * 8
    assert sorted(frames[frames.uri == videos.uri[0]].frame_index) == [0, 5, 10, 15, 20, 25, 30, 35]
    assert {"uri", "frame_index", "timestamp_s", "label", "score"} <= set(frames.columns)
    assert set(videos.frames_scored) == {8} and all(abs(d - 4.0) < 0.2 for d in videos.duration_s)
    truth = videos.uri.str.split("/").str[-2]
    assert (videos.label == truth).mean() >= 4 / 6, videos[["uri", "label"]]
    # annotation: an MP4 per video that OpenCV reads back, and a contact sheet PNG
    annotated = sorted(o.uri for o in list_objects(result.tables["annotated"]))
    assert len([u for u in annotated if u.endswith(".mp4")]) == 6
    assert len([u for u in annotated if u.endswith(".png")]) == 6
    local = tmp_path / "a.mp4"
    download_file(next(u for u in annotated if u.endswith(".mp4")), local)
    capture = cv2.VideoCapture(str(local))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8 and capture.read()[0]
    sheet = Image.open(io.BytesIO(read_bytes(next(u for u in annotated if u.endswith(".png")))))
    assert sheet.width > 160 and sheet.height > 100


def test_bad_videos_are_accounted_for(video_model, tmp_path):
    bad = tmp_path / "bad"
    write_video(bad / "good.mp4", "red-ball", 2.0, seed=9)
    write_truncated_mp4(bad / "truncated.mp4")
    write_truncated_faststart_mp4(bad / "truncated-faststart.mp4", seconds=4, keep=0.5)
    write_zero_frame_mp4(bad / "zero-frames.mp4")
    write_empty_file(bad / "empty.mp4")
    write_text_as_video(bad / "notes.mp4")
    ingest_folder(bad, "s3://it-media/bad-videos/")
    spec = load_spec(EXAMPLES / "score-video.yaml", [
        "model=s3://it-models/video-cnn/", "input=s3://it-media/bad-videos/", "output=s3://it-scores/bad-videos/",
        "annotate=false"])
    result = run_spec(spec)
    errors = {row["uri"].rsplit("/", 1)[-1]: row for row in read_table(result.errors_uri).to_pylist()}
    videos = set(read_table(result.tables["videos"]).column("uri").to_pylist())
    assert {u.rsplit("/", 1)[-1] for u in videos} == {"good.mp4", "truncated-faststart.mp4"}
    assert errors["truncated-faststart.mp4"]["stage"] == "decode-partial"
    assert "stopped at frame" in errors["truncated-faststart.mp4"]["error"]
    for name in ("truncated.mp4", "zero-frames.mp4", "empty.mp4", "notes.mp4"):
        assert errors[name]["stage"] == "decode" and errors[name]["error"], name
    assert result.listed == 6 and result.predicted == 2 and result.errors == 4 and result.partial == 1


def test_predict_streams_batched_frame_predictions(video_model, tmp_path):
    from jobs.errors import UsageError
    from jobs.runs.predict import predict_source

    video = write_video(tmp_path / "clip.mp4", "blue-box", 3.0, seed=42)
    lines: list[str] = []
    predictions = predict_source("s3://it-models/video-cnn/", str(video), echo=lines.append, batch=4,
                                 every_n_frames=3, out=str(tmp_path / "annotated.mp4"))
    assert [p.frame_index for p in predictions] == list(range(0, 30, 3))
    assert sum(p.label == "blue-box" for p in predictions) >= 7
    assert lines[0].startswith("frame      0  t=    0.00s")
    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    with pytest.raises(UsageError, match="--show needs a display"):
        predict_source("s3://it-models/video-cnn/", str(video), echo=lines.append, show=True)


def test_video_blocks_are_small_and_stage_idempotently(video_model):
    """A few videos expand to many frames: they must still be split over many classifier
    calls (the fused stage once bundled 256 input rows, so 40 videos made one call, on one
    actor), and a block scored again (as after a lost actor) replaces its staged file
    instead of adding a second copy."""
    from jobs.models.store import read_model_metadata
    from jobs.runs.score import scoring_pipeline, stage_all
    from jobs.models.task_config import task_config_from_metadata
    from tasks import get_task

    spec = load_spec(EXAMPLES / "score-video.yaml", [
        "model=s3://it-models/video-cnn/", "input=s3://it-media/videos/test/", "output=s3://it-scores/video-blocks/"])
    task = get_task(spec.task)(**task_config_from_metadata(read_model_metadata(spec.model), spec))
    items = [{"uri": o.uri, "size": o.size} for o in list_objects(spec.input)]
    staging = "s3://it-scores/video-blocks/_staging/test/"

    def run() -> list[dict]:
        return stage_all(scoring_pipeline(items, task, spec.model, spec, "test-run", staging, objects_per_block=256))

    first = run()
    assert len(items) == 6 and sum(r["rows"] for r in first) == 6 * 8
    assert sorted(r["rows"] for r in first) == [8] * 6, first  # a call per video
    staged = sorted(o.uri for o in list_objects(staging))
    assert len(staged) == 6

    again = run()
    assert sorted(r["staged_file"] for r in again) == sorted(r["staged_file"] for r in first)
    assert sorted(o.uri for o in list_objects(staging)) == staged
