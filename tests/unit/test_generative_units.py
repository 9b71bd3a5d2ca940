"""Fast tests of the generate/stylize runners' pure parts and the digits source (no Ray, no S3)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jobs.datasets.digits import digit_images, read_mnist_npz, upscale_digit
from jobs.errors import IngestError, MediaJobsError
from jobs.runs.generate import encode_png, image_key
from jobs.datasets.ingest import ingest_digits
from jobs.runs.stylize import encode_image, output_key, resolve_stylizer, style_names


def test_image_keys_sort_by_index():
    keys = [image_key(7, i) for i in (0, 9, 10, 123456789)]
    assert keys == sorted(keys) and keys[0] == "images/seed-7/000000000.png"


def test_png_encoding_is_byte_stable_for_grey_and_rgb():
    rng = np.random.default_rng(0)
    grey, rgb = rng.integers(0, 256, (28, 28, 1), np.uint8), rng.integers(0, 256, (8, 6, 3), np.uint8)
    assert encode_png(grey) == encode_png(grey.copy())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(grey)))), grey[..., 0])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb)))), rgb)


@pytest.mark.parametrize("uri, expected", [
    ("s3://in/photos/a.jpg", "images/wave/a.jpg"),
    ("s3://in/photos/sub dir/b.PNG", "images/wave/sub~20dir/b.PNG~.jpg"),
    ("s3://in/photos/../../etc/passwd", "images/wave/~2E~2E/~2E~2E/etc/passwd~.jpg"),
    ("s3://in/photos/./a/.../b.jpg", "images/wave/~2E/a/~2E~2E~2E/b.jpg"),
    ("s3://in/photos/%2e%2e/x#y.jpeg", "images/wave/~252e~252e/x~23y.jpeg~.jpg"),
    ("s3://in/photos//etc/x.jpg", "images/wave/~/etc/x.jpg"),
    ("s3://in/photos/..\\..\\x.jpg", "images/wave/..~5C..~5Cx.jpg"),
    ("s3://in/photos/q?a=1&b=/../x.jpg", "images/wave/q~3Fa~3D1~26b~3D/~2E~2E/x.jpg"),
    ("s3://in/photos/é~.jpg", "images/wave/~C3~A9~7E.jpg"),
    ("s3://elsewhere/c.jpg", "images/wave/c.jpg"),
])
def test_stylized_keys_stay_inside_the_output_prefix(uri, expected):
    key = output_key(uri, "s3://in/photos/", "wave", "jpeg")
    assert key == expected
    assert not {"", ".", ".."} & set(key.split("/"))


def test_output_keys_that_a_lossy_replacement_would_merge_stay_apart():
    keys = ["a b.png", "a_b.png", "a+b.png", "a%20b.png", "a~20b.png", "x.png", "x.png.jpg", "a//b.png",
            "a/b.png", "/a/b.png", "a\\b.png", "e\u0301.png", "\u00e9.png"]
    outputs = [output_key(f"s3://in/{key}", "s3://in/", "wave", "jpeg") for key in keys]
    assert len(set(outputs)) == len(keys), outputs


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(st.sampled_from("./~%\\ab_-") | st.characters(), min_size=1, max_size=300),
                min_size=1, max_size=6, unique=True))
def test_output_keys_are_clean_bounded_and_one_per_input(relative_keys):
    from jobs.workers.annotation import MAX_KEY_CHARS, MAX_SEGMENT_CHARS, output_key_for

    keys = [output_key_for("s3://in/p/" + key, "s3://in/p/") for key in relative_keys]
    assert len(set(keys)) == len(keys), (relative_keys, keys)
    for key in keys:
        assert key.isascii() and not {"", ".", ".."} & set(key.split("/")), key
        assert len(key) <= MAX_KEY_CHARS and all(len(part) <= MAX_SEGMENT_CHARS for part in key.split("/")), key
        assert not set(key) & set("\\%?#: \t\n"), key


def test_style_names_are_stems_made_unique():
    assert style_names(["s3://a/wave.jpg", "s3://b/stripes.png"]) == ["wave", "stripes"]
    assert style_names(["s3://a/wave.jpg", "s3://b/wave.png", "s3://c/odd name!.jpg"]) == [
        "0-wave", "1-wave", "odd~20name~21"]
    assert style_names(["s3://a/wave.jpg", "s3://b/wave.png", "s3://c/0-wave.jpg"]) == [
        "style-0", "style-1", "style-2"]
    assert style_names(["s3://a/..", "s3://a/."]) == ["~2E~2E", "~2E"]


def test_encode_image_keeps_colours_in_png_and_roughly_in_jpeg():
    image = np.zeros((16, 24, 3), np.uint8)
    image[..., 0] = 200  # red
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(image, "png")))), image)
    jpeg = np.asarray(Image.open(io.BytesIO(encode_image(image, "jpeg")))).astype(int)
    assert jpeg.shape == (16, 24, 3) and abs(jpeg[..., 0].mean() - 200) < 4 and jpeg[..., 2].mean() < 4


def test_resolve_stylizer_takes_handles_and_refuses_what_is_not_a_module(tmp_path):
    handle = "https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2"
    assert resolve_stylizer(handle).kind == "handle"
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"x")
    assert resolve_stylizer(str(tmp_path / "saved")).kind == "local"
    with pytest.raises(MediaJobsError, match="no stylization module at .*expected saved_model.pb"):
        resolve_stylizer(str(tmp_path / "empty"))


def test_digits_are_real_handwriting_centred_like_mnist():
    pairs = list(digit_images("sklearn", limit=30))
    assert len(pairs) == 30 and pairs[0][0] == "0/sklearn-00000.png"
    images = np.stack([image for _, image in pairs])
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert images[:, :4].max() == 0 and images[:, :, -4:].max() == 0  # a 4-pixel empty frame
    assert images.max() >= 200 and 0.1 < (images > 64).mean() < 0.5  # bright strokes on black
    # The upscaling keeps the digit: the 8x8 original is the 20x20 centre shrunk back.
    original = np.zeros((8, 8))
    original[2:6, 3:5] = 16
    centre = upscale_digit(original, 16.0)[4:24, 4:24]
    assert centre[8:12, 8:12].min() > 200 and centre[:3].max() < 40


def test_mnist_npz_is_read_without_pickles(tmp_path):
    # The download needs internet: an archive in Keras's format stands in for the file it fetches.
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), "y_train": np.array([1, 2, 3]),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), "y_test": np.array([4, 5])}
    np.savez(tmp_path / "mnist.npz", **arrays)
    images, labels = read_mnist_npz(tmp_path / "mnist.npz")
    assert labels.tolist() == [1, 2, 3, 4, 5]
    assert np.array_equal(np.stack(list(images)), np.concatenate([arrays["x_train"], arrays["x_test"]]))
    np.savez(tmp_path / "pickled.npz", **{**arrays, "x_train": np.array([object()], dtype=object)})
    with pytest.raises(IngestError, match="is not Keras's mnist.npz .*pickle"):
        read_mnist_npz(tmp_path / "pickled.npz")


def test_ingest_digits_writes_class_folders_and_refuses_unknown_sources(tmp_path):
    counts = ingest_digits(str(tmp_path / "digits"), "sklearn", limit=25)
    assert counts["images"] == counts["uploaded"] == 25
    files = sorted(p.relative_to(tmp_path / "digits").as_posix() for p in (tmp_path / "digits").rglob("*.png"))
    assert len(files) == 25 and {f.split("/")[0] for f in files} == {str(d) for d in range(10)}
    assert Image.open(tmp_path / "digits" / files[0]).mode == "L"
    assert ingest_digits(str(tmp_path / "digits"), "sklearn", limit=25)["skipped"] == 25  # incremental
    with pytest.raises(IngestError, match="unknown digits source 'emnist'; valid: sklearn, mnist"):
        ingest_digits(str(tmp_path / "x"), "emnist")


def _classifier(task: str = "image-classifier", input_shape=(32, 32, 3)):
    from jobs.models.metadata import ModelMetadata
    from jobs.models.store import ModelVersion

    return ModelVersion("s3://m/cnn/model/@cnn-1", "s3://m/cnn/model/versions/cnn-1/", "cnn-1",
                        ModelMetadata(task=task, input_shape=list(input_shape), class_names=["0", "1", "2"]))


def test_the_quality_classifier_is_checked_against_the_generated_images():
    from jobs.runs.generate import check_classifier

    check = check_classifier(_classifier(), (28, 28, 1), "s3://m/cnn/")
    assert (check.input_shape, check.class_names) == ((32, 32, 3), ["0", "1", "2"])
    assert check.adaptation == "resized from 28x28 to 32x32, grey replicated to RGB"
    assert check_classifier(_classifier("video-classifier", (28, 28, 1)), [28, 28, 1], "s3://m/cnn/").adaptation is None
    with pytest.raises(MediaJobsError, match="quality.classifier: the model at s3://m/cnn/ was trained for task "
                                             "'audio-classifier'; point it at the output of an image-classifier"):
        check_classifier(_classifier("audio-classifier"), (28, 28, 1), "s3://m/cnn/")
    with pytest.raises(MediaJobsError, match=r"quality.classifier: the classifier takes grayscale 32x32x1 images .*"
                                             r"train the classifier with model.input_shape: \[32, 32, 3\]"):
        check_classifier(_classifier(input_shape=(32, 32, 1)), (32, 32, 3), "s3://m/cnn/")
    with pytest.raises(MediaJobsError, match=r"resizing would distort them; train the classifier with "
                                             r"model.input_shape: \[28, 28, 1\]"):
        check_classifier(_classifier(input_shape=(32, 64, 3)), (28, 28, 1), "s3://m/cnn/")
