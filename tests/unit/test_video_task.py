"""Fast unit tests of the video-classifier task and the annotation helpers (no Ray, no storage)."""

from __future__ import annotations

import io
import itertools
import re
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from support import media_video as mv
from tasks.annotate import contact_sheet, draw_label, write_annotated_mp4
from tasks.image_classifier import fit_to_input
from tasks.media import MediaDecodeError
from tasks.registry import DecodedMedia, Task, task_names
from tasks.video_classifier import FrameSampler, VideoClassifier, sample_frames, summarize_video

FIVE_SECONDS = [0, 10, 20, 30, 40]  # frame indices sampled every 1 s from 5 s at 10 fps


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {kind: mv.write_video(root / f"{kind}.mp4", kind, seconds=5, fps=10, seed=i)
            for i, kind in enumerate(mv.VIDEO_KINDS)}


def _indices(decoded) -> list[int]:
    return [p["frame_index"] for p in decoded.positions]


# --- the task protocol -----------------------------------------------------------------------


def test_task_declares_the_protocol():
    task = VideoClassifier()
    assert isinstance(task, Task) and VideoClassifier.name == "video-classifier"
    assert task.reads == "file"
    assert task.suffixes == (".mp4", ".mov", ".avi", ".mkv", ".webm")
    assert task.position_columns == ("frame_index", "timestamp_s")
    assert (task.example_shape, task.example_dtype) == ((32, 32, 3), "uint8")
    assert VideoClassifier(input_shape=(24, 40, 1)).example_shape == (24, 40, 1)


def test_task_is_in_the_registry():
    from tasks import get_task

    assert "video-classifier" in task_names()

    assert get_task("video-classifier") is VideoClassifier


@pytest.mark.parametrize("fields, message", [
    ({"every_seconds": None}, "set every_seconds or every_n_frames"),
    ({"every_seconds": 0.0}, "every_seconds must be > 0"),
    ({"every_n_frames": 0}, "every_n_frames must be a whole number >= 1"),
    ({"max_frames": 0}, "max_frames must be >= 1"),
    ({"max_seconds": 0}, "max_seconds must be > 0"),
])
def test_sampling_settings_are_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        VideoClassifier(**fields)


def test_build_model_is_the_image_cnn_per_frame():
    model = VideoClassifier(input_shape=(32, 32, 3)).build_model("cifar10-cnn", 3, 1e-3)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 3)


# --- sampling --------------------------------------------------------------------------------


def test_every_second_of_a_5s_10fps_video(videos):
    decoded = VideoClassifier().decode(str(videos["red-ball"]))
    assert isinstance(decoded, DecodedMedia) and decoded.warning is None
    assert _indices(decoded) == FIVE_SECONDS
    assert [p["timestamp_s"] for p in decoded.positions] == pytest.approx([0, 1, 2, 3, 4], abs=1e-6)
    assert decoded.examples.shape == (5, 32, 32, 3) and decoded.examples.dtype == np.uint8
    assert decoded.info["duration_s"] == pytest.approx(5.0)
    assert decoded.info["frames_sampled"] == 5 and decoded.info["sampling"] == "sequential"


def test_every_n_frames_wins_over_every_seconds(videos):
    decoded = VideoClassifier(every_seconds=1.0, every_n_frames=7).decode(str(videos["blue-box"]))
    assert _indices(decoded) == [0, 7, 14, 21, 28, 35, 42, 49]
    assert decoded.positions[1]["timestamp_s"] == pytest.approx(0.7)


def test_max_frames_caps_the_sample(videos):
    decoded = VideoClassifier(every_seconds=0.5, max_frames=3).decode(str(videos["red-ball"]))
    assert _indices(decoded) == [0, 5, 10]
    assert decoded.info["stopped_at_max_frames"] is True and decoded.warning is None


def test_frames_go_through_the_image_pipeline(videos):
    """Each example is exactly `fit_to_input` of the decoded frame, in RGB order."""
    capture = cv2.VideoCapture(str(videos["red-ball"]))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 10)
    ok, frame = capture.read()
    capture.release()
    assert ok
    for shape in ((32, 32, 3), (16, 20, 1)):
        decoded = VideoClassifier(input_shape=shape).decode(str(videos["red-ball"]))
        assert decoded.examples.shape == (5, *shape)
        np.testing.assert_array_equal(decoded.examples[1], fit_to_input(frame, shape))
    red = VideoClassifier().decode(str(videos["red-ball"])).examples
    assert red[..., 0].mean() > red[..., 2].mean() + 5  # a red disc: RGB, not BGR


def test_seeking_and_grabbing_sample_the_same_frames(videos):
    path = str(videos["green-stripes"])
    seeking = FrameSampler(path, every_n_frames=20, seek_min_gap=20)
    grabbing = FrameSampler(path, every_n_frames=20)
    sought, grabbed = list(seeking), list(grabbing)
    assert (seeking.info["sampling"], grabbing.info["sampling"]) == ("seek", "sequential")
    assert [(f.frame_index, f.timestamp_s) for f in sought] == [(f.frame_index, f.timestamp_s) for f in grabbed]
    assert [(f.frame_index, round(f.timestamp_s, 6)) for f in sought] == [(0, 0.0), (20, 2.0), (40, 4.0)]
    for a, b in zip(sought, grabbed):
        np.testing.assert_array_equal(a.bgr, b.bgr)


def test_sample_frames_yields_display_frames(videos):
    frames = list(sample_frames(str(videos["blue-box"]), every_seconds=2.0, display_width=320))
    assert [(i, round(t, 6)) for i, t, _ in frames] == [(0, 0.0), (20, 2.0), (40, 4.0)]
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for _, _, f in frames)  # 96x72 -> 320x240


def test_decode_returns_display_frames_from_the_same_pass(videos):
    decoded = VideoClassifier().decode(str(videos["blue-box"]), display_width=160)
    assert len(decoded.display_frames) == len(decoded.examples) == 5
    assert decoded.display_frames[0].shape == (120, 160, 3)
    assert VideoClassifier().decode(str(videos["blue-box"])).display_frames == ()


# --- bad inputs ------------------------------------------------------------------------------


BAD_VIDEOS = [
    ("empty.mp4", mv.write_empty_file, r"empty object \(0 bytes\)"),
    ("notes.mp4", mv.write_text_as_video, r"not a video \(looks like text\)"),
    ("still.mp4", mv.write_png_as_video, r"not a video \(looks like a PNG image\)"),
    ("tone.mp4", mv.write_wav_as_video, r"not a video \(looks like a WAV audio file\)"),
    ("cut.mp4", mv.write_truncated_mp4, r"truncated or unfinished MP4: no 'moov' index box"),
    ("nothing.mp4", mv.write_zero_frame_mp4, r"video has zero frames \(an MP4 with no tracks\)"),
    ("index-only.mp4", mv.write_index_only_mp4, r"no frame could be decoded of an expected 50: truncated"),
]


@pytest.mark.parametrize("name, make, reason", BAD_VIDEOS, ids=[b[0] for b in BAD_VIDEOS])
def test_bad_video_raises_with_its_reason(tmp_path, name, make, reason):
    path = make(tmp_path / name)
    with pytest.raises(MediaDecodeError, match=reason):
        VideoClassifier().decode(str(path))


def test_audio_only_mp4_has_no_video_stream(tmp_path):  # ffmpeg: the test command installs it
    path = mv.write_audio_only_mp4(tmp_path / "song.mp4")
    with pytest.raises(MediaDecodeError, match=r"no video stream \(an MP4 with only audio tracks\)"):
        VideoClassifier().decode(str(path))


def test_too_long_video_is_refused_before_decoding(videos):
    with pytest.raises(MediaDecodeError, match=r"video too long: 5 s \(50 frames at 10 fps\), limit max_seconds=3"):
        VideoClassifier(max_seconds=3).decode(str(videos["red-ball"]))


@pytest.mark.parametrize("make, name", [(mv.write_truncated_faststart_mp4, "cut-faststart.mp4"),
                                        (mv.write_truncated_avi, "cut.avi")])
def test_truncated_video_keeps_frames_before_the_damage(tmp_path, make, name):
    decoded = VideoClassifier().decode(str(make(tmp_path / name, seconds=5, keep=0.5)))
    assert _indices(decoded) == [0, 10, 20]
    assert decoded.examples.shape == (3, 32, 32, 3)
    stopped = re.fullmatch(r"decoding stopped at frame (\d+) \(t=([\d.]+)s\) of an expected 50: truncated or corrupt",
                           decoded.warning or "")
    assert stopped, decoded.warning
    assert 20 < int(stopped[1]) < 30 and float(stopped[2]) == pytest.approx(int(stopped[1]) / 10)


def test_faststart_copy_decodes_like_the_original(videos, tmp_path):
    copy = mv.faststart_mp4(videos["blue-box"], tmp_path / "faststart.mp4")
    assert copy.read_bytes()[32:36] == b"moov"
    original, moved = (VideoClassifier().decode(str(p)) for p in (videos["blue-box"], copy))
    np.testing.assert_array_equal(original.examples, moved.examples)


def test_deadline_returns_what_was_sampled(videos):
    ticks = itertools.count()  # a clock that advances one unit per frame read
    sampler = FrameSampler(str(videos["red-ball"]), every_n_frames=5, deadline=22, clock=lambda: next(ticks))
    assert [f.frame_index for f in sampler] == [0, 5, 10, 15, 20]
    assert sampler.warning == "decode time limit reached at t=2.1s"


def test_deadline_before_any_frame_raises(videos):
    with pytest.raises(MediaDecodeError, match="decode time limit reached at t=0.0s before any frame was sampled"):
        VideoClassifier().decode(str(videos["red-ball"]), deadline=time.monotonic() - 1)


# --- summarize_video -------------------------------------------------------------------------


CLASSES = ["red-ball", "blue-box", "green-stripes"]


def test_summary_is_the_majority_label_with_mean_scores():
    scores = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]]
    summary = summarize_video(["red-ball", "red-ball", "blue-box"], scores, CLASSES)
    assert summary["label"] == "red-ball" and summary["frames"] == 3
    assert summary["score"] == pytest.approx(1.4 / 3)
    assert summary["mean_scores"] == pytest.approx({"red-ball": 1.4 / 3, "blue-box": 1.3 / 3, "green-stripes": 0.1})
    assert summary["votes"] == {"red-ball": 2, "blue-box": 1, "green-stripes": 0}


def test_summary_breaks_ties_by_mean_score():
    scores = [[0.5, 0.4, 0.1], [0.1, 0.9, 0.0]]
    assert summarize_video(["red-ball", "blue-box"], scores, CLASSES)["label"] == "blue-box"


def test_summary_of_top_k_rows_and_of_a_binary_model():
    top = summarize_video(["blue-box", "blue-box"], [[0.6, 0.3], [0.8, 0.1]], CLASSES,
                          top_labels=[["blue-box", "red-ball"], ["blue-box", "green-stripes"]])
    assert top["mean_scores"] == pytest.approx({"red-ball": 0.15, "blue-box": 0.7, "green-stripes": 0.05})
    binary = summarize_video(["yes", "no", "yes"], [[0.9], [0.2], [0.7]], ["no", "yes"])
    assert binary["label"] == "yes" and binary["score"] == pytest.approx((0.9 + 0.2 + 0.7) / 3)


@pytest.mark.parametrize("labels, scores, message", [
    ([], [], "at least one frame"),
    (["red-ball"], [], "1 labels but 0 score rows"),
    (["cat"], [[1, 0, 0]], "labels not in class_names: cat"),
    (["red-ball"], [[0.5, 0.5]], "frame 0: 2 scores for 3 classes"),
])
def test_summary_rejects_inconsistent_input(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        summarize_video(labels, scores, CLASSES)


# --- annotation ------------------------------------------------------------------------------


def _frames(count: int, size=(240, 320)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(count)]


def test_draw_label_changes_only_the_banner():
    frame = np.full((240, 320, 3), 200, np.uint8)
    labelled = draw_label(frame, "red-ball", 0.93)
    assert labelled.shape == frame.shape and labelled.dtype == np.uint8
    assert (labelled[:20] != frame[:20]).any()
    np.testing.assert_array_equal(labelled[40:], frame[40:])
    np.testing.assert_array_equal(frame, 200)  # the input is not modified
    assert draw_label(np.zeros((32, 32), np.uint8), "a very long label " * 5, 0.5).shape == (32, 32, 3)


def test_annotated_mp4_reads_back(tmp_path):
    path = tmp_path / "annotated.mp4"
    frames = (draw_label(f, "blue-box", 0.8) for f in _frames(7, size=(181, 321)))
    assert write_annotated_mp4(frames, str(path), fps=2) == 7
    capture = cv2.VideoCapture(str(path))
    count, size = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), (capture.get(3), capture.get(4))
    read = sum(1 for _ in iter(lambda: capture.read()[0], False))
    capture.release()
    assert (count, read, size) == (7, 7, (320.0, 180.0))


def test_annotated_mp4_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames to write"):
        write_annotated_mp4([], str(tmp_path / "none.mp4"), fps=1)
    with pytest.raises(ValueError, match="frame 1 is 64x48, the first was 320x240"):
        write_annotated_mp4([*_frames(1), *_frames(1, size=(48, 64))], str(tmp_path / "mixed.mp4"), fps=1)


def test_contact_sheet_is_a_png_grid():
    png = contact_sheet(_frames(5), [f"t={i}s red-ball 0.9" for i in range(5)], columns=3, thumb=100)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    # 3 columns of 100 px + 4 paddings of 6; 2 rows of (75 px thumbnails + 18 px captions) + 3 paddings
    assert image.size == (3 * 100 + 4 * 6, 2 * (75 + 18) + 3 * 6)
    with pytest.raises(ValueError, match="5 frames but 4 captions"):
        contact_sheet(_frames(5), ["x"] * 4)
