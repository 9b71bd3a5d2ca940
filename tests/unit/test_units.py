"""Fast unit tests without Ray or a server: URIs, settings, decoding, model shapes, layering."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jobs.errors import StorageError
from jobs.storage.settings import S3Settings
from jobs.storage.objects import parse_uri
from tasks.image_classifier import build_cnn, decode_image, top_k
from tasks.media import MediaDecodeError


@pytest.mark.parametrize("uri, scheme, bucket, key", [
    ("s3://media/cifar10/train/", "s3", "media", "cifar10/train/"),
    ("s3://media", "s3", "media", ""),
    ("s3a://media/x.jpg", "s3", "media", "x.jpg"),
    ("/data/images", "file", "", "/data/images"),
    ("file:///data/images/", "file", "", "/data/images"),
])
def test_parse_uri(uri, scheme, bucket, key):
    location = parse_uri(uri)
    assert (location.scheme, location.bucket, location.key) == (scheme, bucket, key)


def test_parse_uri_joins_and_prefixes():
    location = parse_uri("s3://media/demo")
    assert location.as_prefix().uri == "s3://media/demo/"
    assert location.join("train", "cat").uri == "s3://media/demo/train/cat"
    assert location.fs_path == "media/demo"


@pytest.mark.parametrize("uri, message", [
    ("http://example.com/x", "unsupported URI scheme 'http'"),
    ("s3:///nobucket", "has no bucket"),
    ("", "empty storage URI"),
])
def test_parse_uri_rejects(uri, message):
    with pytest.raises(StorageError, match=message):
        parse_uri(uri)


def test_settings_repr_hides_the_secret():
    settings = S3Settings("http://127.0.0.1:8333", "AKIAEXAMPLE", "s3cr3t-value", "us-east-1", "environment")
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings)


def _encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("profile, keys", [
    ("aws_access_key_id = AKIASTATIC\naws_secret_access_key = static-secret\n", ("AKIASTATIC", "static-secret")),
    # Temporary credentials: no frozen keys, boto3 and pyarrow keep refreshing them themselves.
    ("aws_access_key_id = ASIATEMP\naws_secret_access_key = temp-secret\naws_session_token = tok\n", (None, None)),
])
def test_aws_config_credentials_are_passed_on_only_when_static(tmp_path, monkeypatch, profile, keys):
    from jobs.storage.settings import resolve_s3_settings

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                 "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\n" + profile)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("MEDIAJOBS_HOME", str(tmp_path / "no-stack"))
    settings = resolve_s3_settings()
    assert (settings.access_key, settings.secret_key, settings.source) == (*keys, "aws-config")


def test_decode_normalizes_grayscale_rgba_and_size():
    gray = _encode(np.full((50, 70), 200, np.uint8), "PNG")
    rgba = _encode(np.dstack([np.full((40, 40, 3), (255, 0, 0), np.uint8), np.full((40, 40), 128, np.uint8)]), "PNG")
    out_gray = decode_image(gray, (32, 32, 3))
    out_rgba = decode_image(rgba, (32, 32, 3))
    assert out_gray.shape == out_rgba.shape == (32, 32, 3) and out_gray.dtype == np.uint8
    assert np.all(out_gray == 200)
    assert tuple(out_rgba[16, 16]) == (255, 0, 0)  # RGB order, alpha dropped
    assert decode_image(rgba, (64, 64, 1)).shape == (64, 64, 1)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty object"),
    (b"hello, this is text\n" * 10, "looks like text"),
    (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100, "MP4"),
])
def test_decode_refuses_non_images(data, reason):
    with pytest.raises(MediaDecodeError, match=reason):
        decode_image(data, (32, 32, 3))


def test_decode_refuses_truncated_files():
    jpeg = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "JPEG")
    png = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "PNG")
    with pytest.raises(MediaDecodeError, match="truncated JPEG"):
        decode_image(jpeg[: len(jpeg) // 2], (32, 32, 3))
    with pytest.raises(MediaDecodeError, match="truncated PNG"):
        decode_image(png[: len(png) // 2], (32, 32, 3))


def test_top_k_expands_binary_and_orders_scores():
    rows = top_k(np.array([[0.2], [0.9]]), ["cat", "dog"], 5)
    assert [r["label"] for r in rows] == ["cat", "dog"]
    assert rows[0]["top_scores"] == pytest.approx([0.8, 0.2])
    rows = top_k(np.array([[0.1, 0.6, 0.3]]), ["a", "b", "c"], 2)
    assert rows[0]["top_labels"] == ["b", "c"]


@pytest.mark.parametrize("architecture, shape, classes, output", [
    ("cifar10-cnn", (32, 32, 3), 10, (None, 10)),
    ("binary-cnn", (64, 64, 3), 2, (None, 1)),
])
def test_model_shapes(architecture, shape, classes, output):
    model = build_cnn(architecture, shape, classes)
    assert model.output_shape == output
    assert model.input_shape == (None, *shape)
    assert [layer.__class__.__name__ for layer in model.layers][:3] == ["Rescaling", "Conv2D", "MaxPooling2D"]
    assert model.loss == ("binary_crossentropy" if architecture == "binary-cnn" else "sparse_categorical_crossentropy")


def test_binary_cnn_needs_two_classes():
    with pytest.raises(ValueError, match="exactly 2 classes"):
        build_cnn("binary-cnn", (64, 64, 3), 3)


def test_layers_import_alone_without_tensorflow():
    # jobs must not pull TensorFlow at import (CLI start-up), and tasks must not import jobs.
    code = ("import sys, jobs.cli.app, jobs.spec.load, jobs.storage.objects, tasks; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    code = ("import sys, tasks.image_classifier; "
            "assert not [m for m in sys.modules if m == 'jobs' or m.startswith('jobs.')], 'tasks imported jobs'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tf_uses_legacy_keras():
    code = "import jobs, tensorflow as tf; assert tf.keras.__name__.startswith('tf_keras'), tf.keras.__name__"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_root_cause_names_the_innermost_error_without_ray_retry_advice():
    from jobs.errors import root_cause

    inner = OSError("When initiating multiple part upload: AWS Error SLOW_DOWN\n"
                    "Failed to write s3://b/x.parquet after 10/10 attempts (total backoff 40.2s).\n"
                    "To change retry attempts, backoff, or which errors are retried, configure `ray.data...`")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("Ray wrapper\ntraceback lines") from exc
    except RuntimeError as outer:
        assert root_cause(outer) == ("OSError: When initiating multiple part upload: AWS Error SLOW_DOWN "
                                     "(Failed to write s3://b/x.parquet after 10/10 attempts (total backoff 40.2s).)")
    assert root_cause(ValueError("first\nlast line says it")) == "ValueError: last line says it"


def test_a_missing_route_model_names_the_route_field(tmp_path):
    from jobs.errors import MediaJobsError
    from jobs.nightly.routes import resolve_routes
    from jobs.spec.load import parse_spec

    spec = parse_spec({"version": 1, "kind": "score", "name": "n", "input": f"{tmp_path}/in/",
                       "output": f"{tmp_path}/out/", "incremental": True,
                       "routes": [{"media": "audio", "model": f"{tmp_path}/no-model/"}]})
    with pytest.raises(MediaJobsError, match=r"^routes\[0\]\.model: no exported model at "):
        resolve_routes(spec)


def test_store_retries_wait_out_transient_failures_only():
    from jobs.errors import StorageError
    from jobs.storage.outage import StoreUnavailableError, is_transient, retry_while_unavailable

    outage = OSError("When reading information for key 'a.jpg' in bucket 'b': AWS Error NETWORK_CONNECTION "
                     "during HeadObject operation: curlCode: 7, Couldn't connect to server")
    missing = FileNotFoundError("Path does not exist 'b/a.jpg'. Detail: [errno 2] No such file or directory")
    assert is_transient(outage) and not is_transient(missing)
    assert not is_transient(StorageError("AccessDenied: access denied; check the credentials"))

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise outage
        return b"data"

    assert retry_while_unavailable(flaky, "reading a.jpg", budget=10) == b"data" and len(calls) == 3

    def gone():
        raise missing

    with pytest.raises(FileNotFoundError):  # at once: the object is at fault, not the store
        retry_while_unavailable(gone, "reading a.jpg", budget=10)

    def down():
        raise outage

    with pytest.raises(StoreUnavailableError, match=r"did not answer for \d+ s while reading a.jpg"):
        retry_while_unavailable(down, "reading a.jpg", budget=2)
