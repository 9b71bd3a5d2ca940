"""Style-transfer train and stylize jobs end to end on the real local stack."""

from __future__ import annotations

import io
import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from support import media
from jobs.errors import MediaJobsError
from jobs.datasets.ingest import ingest_folder
from jobs.runs.dispatch import run_spec
from jobs.spec.load import load_spec
from jobs.storage.delta import RUN_ID_KEY, open_table, read_table
from jobs.storage.objects import download_prefix, exists, list_objects, parse_uri, read_bytes, upload_dir
from tasks.style_transfer import load_stylizer, stylize
from jobs.models.store import read_model_metadata
from support.paths import EXAMPLES

pytestmark = pytest.mark.integration
# Content images of three sizes (batched by size), as JPEG and PNG.
CONTENT_SIZES = [(48, 40), (48, 40), (33, 57), (64, 64), (33, 57)]


def _stripes(size: int, period: int, vertical: bool, colours) -> Image.Image:
    stripes = (np.arange(size) // period) % 2 == 1
    image = np.where(stripes[np.newaxis, :, np.newaxis], colours[0], colours[1]).astype(np.uint8)
    image = np.broadcast_to(image, (size, size, 3))
    return Image.fromarray(np.ascontiguousarray(image.transpose(1, 0, 2) if vertical else image))


@pytest.fixture(scope="module")
def style_media(local_stack, tmp_path_factory):
    """Content photos-to-be (generated shapes), style textures, and bad objects among the contents."""
    root = tmp_path_factory.mktemp("style-media")
    content, styles = root / "content", root / "styles"
    content.mkdir()
    styles.mkdir()
    for i, (width, height) in enumerate(CONTENT_SIZES):
        fmt = "PNG" if i % 2 else "JPEG"
        (content / f"photo {i}.{fmt.lower().replace('jpeg', 'jpg')}").write_bytes(
            media.image_bytes(fmt, size=(width, height), seed=i))
    (content / "sub").mkdir()
    (content / "sub" / "deep.png").write_bytes(media.image_bytes("PNG", size=(40, 48), seed=9))
    (content / "corrupt.jpg").write_bytes(media.corrupt_jpeg_bytes())
    (content / "empty.png").write_bytes(b"")
    rng = np.random.default_rng(0)
    for i in range(12):
        colours = rng.integers(0, 256, (2, 3))
        _stripes(96, int(rng.integers(3, 9)), bool(i % 2), colours).save(styles / f"texture-{i:02d}.png")
    ingest_folder(content, "s3://it-media/style-content/")
    ingest_folder(styles, "s3://it-media/style-textures/")
    return {"good": len(CONTENT_SIZES) + 1, "bad": 2}


@pytest.fixture(scope="module")
def style_trained(ray_driver, style_media):
    spec = load_spec(EXAMPLES / "train-style.yaml", [
        "model={architecture: adain, encoder: tiny, image_size: 32}",
        "data.train=s3://it-media/style-content/", "data.style=s3://it-media/style-textures/",
        "training.epochs=4", "training.batch_size=2", "training.learning_rate=0.003",
        "output=s3://it-models/style/"])
    return run_spec(spec)


def test_style_training_lowers_the_loss_and_exports_a_hub_module(style_trained, tmp_path):
    metadata = read_model_metadata("s3://it-models/style/")
    history = metadata["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {"loss", "content_loss", "style_loss"} <= set(history[0])
    assert history[-1]["loss"] < 0.8 * history[0]["loss"], [h["loss"] for h in history]
    assert metadata["task"] == "style-transfer" and metadata["encoder_weights"] == "random"
    assert metadata["files"] == ["stylizer"] and style_trained.skipped == 2  # the corrupt and empty contents
    # The exported SavedModel loads through hub.load and is called like the TF Hub module.
    local = download_prefix(f"s3://it-models/style/model/versions/{metadata['model_id']}/stylizer/",
                            tmp_path / "stylizer")
    module = load_stylizer(str(local))
    content = np.asarray(Image.open(io.BytesIO(media.image_bytes("PNG", size=(30, 22), seed=1))).convert("RGB"))
    style = np.asarray(_stripes(64, 4, True, [(250, 0, 0), (0, 0, 250)]))
    stylized = stylize(module, content, style)
    assert stylized.shape == (22, 30, 3) and stylized.dtype == np.uint8 and stylized.std() > 1


def _check_stylize_outputs(result, style_media, styles: list[str], output: str, losses: bool) -> None:
    assert result.contents == style_media["good"] + style_media["bad"]
    assert result.errors == style_media["bad"] and result.results == style_media["good"] * len(styles)
    results = read_table(output + "results/").to_pylist()
    assert len(results) == result.results
    assert {(r["content_uri"], r["style_uri"]) for r in results} == {
        (c, s) for c in {r["content_uri"] for r in results} for s in styles}
    for row in results:
        source = Image.open(io.BytesIO(read_bytes(row["content_uri"])))
        stylized = np.asarray(Image.open(io.BytesIO(read_bytes(row["output_uri"]))))
        assert stylized.shape == (source.height, source.width, 3) == (row["height"], row["width"], 3), row
        assert row["output_uri"].startswith(output + "images/")
    errors = read_table(output + "errors/").to_pylist()
    assert sorted(e["uri"].rsplit("/", 1)[-1] for e in errors) == ["corrupt.jpg", "empty.png"]
    assert all(e["stage"] and e["error"] for e in errors)
    for table in ("results", "errors"):  # one commit of the run each; DuckDB reads them
        handle = open_table(parse_uri(output + table + "/"))
        assert [h.get(RUN_ID_KEY) for h in handle.history()] == [result.run_id]
        dataset = handle.to_pyarrow_dataset()  # noqa: F841 - DuckDB finds it by name
        assert duckdb.connect().execute("SELECT count(DISTINCT run_id) FROM dataset").fetchone() == (1,)
    sheet = Image.open(io.BytesIO(read_bytes(output + "contact_sheet.png")))
    assert sheet.size == ((len(styles) + 1) * 164 + 4, (style_media["good"] + 1) * 164 + 4)
    assert exists(result.tables["summary"])
    # Losses per result, their means in the summary; null for modules that cannot measure them.
    summary = json.loads(read_bytes(result.tables["summary"]))
    for name in ("content_loss", "style_loss"):
        values = [row[name] for row in results]
        if losses:
            assert all(v is not None and np.isfinite(v) and v >= 0 for v in values), values
            assert summary[name] == getattr(result, name) == pytest.approx(np.mean(values), rel=1e-5)
        else:
            assert values == [None] * len(results) and summary[name] is None is getattr(result, name)


def test_style_training_shows_its_losses_and_a_stylized_preview_in_tensorboard(style_trained, tmp_path):
    from support.tensorboard import read_board

    scalars, images = read_board("s3://it-models/style/", tmp_path)
    epochs = [step for step, _ in scalars["loss"]]
    assert epochs and epochs == list(range(1, len(epochs) + 1))
    assert {"content_loss", "style_loss"} <= set(scalars)
    assert images["stylized"] == epochs  # content, style and result side by side, every epoch


def test_stylize_job_with_the_trained_model(style_trained, style_media):
    styles = ["s3://it-media/style-textures/texture-00.png", "s3://it-media/style-textures/texture-01.png"]
    spec = load_spec(EXAMPLES / "stylize.yaml", [
        "model=s3://it-models/style/", "input=s3://it-media/style-content/", f"styles={json.dumps(styles)}",
        "output=s3://it-stylized/trained/", "image_format=png", "batch_size=2"])
    result = run_spec(spec)
    _check_stylize_outputs(result, style_media, styles, "s3://it-stylized/trained/", losses=True)
    # Both styles' results of one content differ: the style is applied, not ignored.
    results = read_table("s3://it-stylized/trained/results/").to_pylist()
    first = sorted(results, key=lambda r: (r["content_uri"], r["style_uri"]))[:2]
    assert read_bytes(first[0]["output_uri"]) != read_bytes(first[1]["output_uri"])
    # No frame: the contents are noise round one colour, so a result's border is like its interior.
    for row in results:
        stylized = np.asarray(Image.open(io.BytesIO(read_bytes(row["output_uri"]))))
        assert media.border_difference(stylized) < 10.0, (row["output_uri"], media.border_difference(stylized))


class _MeanColourStylizer:
    """Built lazily (needs TensorFlow): half content, half the style's mean colour."""

    @staticmethod
    def save(path: Path) -> None:
        import tensorflow as tf

        class Module(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                          tf.TensorSpec([None, None, None, 3], tf.float32)])
            def __call__(self, content, style):
                return [content * 0.5 + tf.reduce_mean(style, axis=[1, 2], keepdims=True) * 0.5]

        tf.saved_model.save(Module(), str(path))


def test_stylize_job_with_a_hub_signature_module_from_s3_and_from_a_local_dir(ray_driver, style_media, tmp_path):
    module_dir = tmp_path / "hub-like"
    _MeanColourStylizer.save(module_dir)
    upload_dir(module_dir, "s3://it-models/hub-like/")
    style = "s3://it-media/style-textures/texture-03.png"
    for model, output in (("s3://it-models/hub-like/", "s3://it-stylized/hub-s3/"),
                          (str(module_dir), "s3://it-stylized/hub-local/")):
        spec = load_spec(EXAMPLES / "stylize.yaml", [
            f"model={model}", "input=s3://it-media/style-content/", f"styles=[{style}]", f"output={output}",
            "image_format=png", "max_side=32"])
        result = run_spec(spec)
        _check_stylize_outputs(result, style_media, [style], output, losses=False)
    # The module's arithmetic is visible: every pixel is half content, half the style's mean colour.
    row = read_table("s3://it-stylized/hub-s3/results/").to_pylist()[0]
    stylized = np.asarray(Image.open(io.BytesIO(read_bytes(row["output_uri"])))).astype(np.float64)
    assert stylized.mean() == pytest.approx(
        np.asarray(Image.open(io.BytesIO(read_bytes(row["content_uri"]))).convert("RGB")).mean() * 0.5
        + np.asarray(Image.open(io.BytesIO(read_bytes(style))).convert("RGB")).mean() * 0.5, abs=6)


def test_stylize_refuses_a_missing_module_and_a_bad_style_before_any_work(style_trained, style_media):
    base = ["input=s3://it-media/style-content/", "output=s3://it-stylized/refused/"]
    with pytest.raises(MediaJobsError, match=r"model: no stylization module at s3://it-models/nothing/"):
        run_spec(load_spec(EXAMPLES / "stylize.yaml", base + ["model=s3://it-models/nothing/"]))
    with pytest.raises(MediaJobsError, match=r"styles\[1\]: s3://it-media/style-content/corrupt.jpg is not a usable"):
        run_spec(load_spec(EXAMPLES / "stylize.yaml", base + [
            "model=s3://it-models/style/",
            "styles=[s3://it-media/style-textures/texture-00.png, s3://it-media/style-content/corrupt.jpg]"]))
    assert not list(list_objects("s3://it-stylized/refused/"))


def test_a_module_that_does_not_load_fails_the_job_with_the_reason(style_trained, style_media):
    from jobs.errors import JobFailedError
    from jobs.storage.objects import write_bytes

    write_bytes("s3://it-models/bogus/saved_model.pb", b"not a saved model")
    spec = load_spec(EXAMPLES / "stylize.yaml", [
        "model=s3://it-models/bogus/", "input=s3://it-media/style-content/", "output=s3://it-stylized/bogus/",
        "styles=[s3://it-media/style-textures/texture-00.png]"])
    with pytest.raises(JobFailedError, match=r"stylize failed: cannot load the stylization module .*Download the"):
        run_spec(spec)
    assert not list(list_objects("s3://it-stylized/bogus/results/"))


def test_style_training_refuses_too_many_style_images_and_styles_that_do_not_decode(ray_driver, style_media):
    """The style plan's refusals (tasks.adain_training) reach the user as user-facing errors,
    worded as the plan words them: before any listing of content is decoded, and after."""
    from concurrent.futures import ThreadPoolExecutor

    from jobs.storage.objects import write_bytes
    from tasks.adain_training import MAX_STYLE_IMAGES

    with ThreadPoolExecutor(16) as pool:  # only listed: their bytes do not matter
        list(pool.map(lambda i: write_bytes(f"s3://it-media/many-styles/{i:05d}.png", b"x"),
                      range(MAX_STYLE_IMAGES + 1)))
    write_bytes("s3://it-media/bad-styles/corrupt.jpg", media.corrupt_jpeg_bytes())
    write_bytes("s3://it-media/bad-styles/empty.png", b"")
    overrides = ["model={architecture: adain, encoder: tiny, image_size: 32}",
                 "data.train=s3://it-media/style-content/", "training.epochs=1", "training.batch_size=2"]
    with pytest.raises(MediaJobsError) as too_many:
        run_spec(load_spec(EXAMPLES / "train-style.yaml", overrides + [
            "data.style=s3://it-media/many-styles/", "output=s3://it-models/style-too-many/"]))
    assert str(too_many.value) == (
        "data.style: 2049 style images under s3://it-media/many-styles/; every worker holds all of them, so at "
        "most 2048: point data.style at a smaller folder")
    with pytest.raises(MediaJobsError) as undecodable:
        run_spec(load_spec(EXAMPLES / "train-style.yaml", overrides + [
            "data.style=s3://it-media/bad-styles/", "output=s3://it-models/style-undecodable/"]))
    assert str(undecodable.value) == "data.style: none of the style images could be decoded"
    for refused in (too_many.value, undecodable.value):  # one line at the CLI, exit code 1
        assert type(refused) is MediaJobsError and refused.exit_code == 1 and refused.__suppress_context__
    assert not list(list_objects("s3://it-models/style-too-many/model/"))
