"""GAN train and generate jobs end to end on the real local stack (Ray Train MWMS, S3)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.datasets.ingest import ingest_folder
from jobs.runs.dispatch import run_spec
from jobs.spec.load import load_spec
from jobs.storage.objects import exists, list_objects, parse_uri, read_bytes
from jobs.storage.delta import read_table
from jobs.models.store import load_keras_model, read_model_metadata
from support.paths import EXAMPLES

pytestmark = pytest.mark.integration
BLOB, BACKGROUND = 230, 20


def _write_blobs(root: Path, count: int, seed: int) -> None:
    """Bright discs on a dark background, 28x28 grayscale PNG; half in class folders, half flat."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    for i in range(count):
        cy, cx, radius = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(3, 6)
        pixels = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2, BLOB, BACKGROUND).astype(np.uint8)
        folder = root / ("a" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"blob-{i:04d}.png")
    (root / "notes.txt").write_text("not an image: ignored by the listing (wrong suffix)")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # undecodable: skipped


@pytest.fixture(scope="module")
def shape_classifier(ray_driver, export_test_model):
    """An image classifier of three shapes on 32x32 RGB input, so generated 28x28 grey images
    must be fitted. Seeded, untrained: the figures are checked against its own verdicts."""
    return export_test_model("s3://it-models/gan-judge-cnn/", task_config={"input_shape": [32, 32, 3]},
                             class_names=("bar", "disc", "ring"), model_id="shapes-cnn-untrained")


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> str:
    """A local file-store MLflow tracking URI, which the GAN's train job is tracked in."""
    return "file://" + str(tmp_path_factory.mktemp("mlruns"))


@pytest.fixture(scope="module")
def gan_trained(ray_driver, tmp_path_factory, mlflow_store):
    root = tmp_path_factory.mktemp("blobs")
    _write_blobs(root, 256, seed=3)
    ingest_folder(root, "s3://it-media/blobs/")
    spec = load_spec(EXAMPLES / "train-gan.yaml", [
        "data.train=s3://it-media/blobs/", "training.epochs=3", "training.batch_size=32",
        "output=s3://it-models/blobs-gan/"])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", mlflow_store)
        env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store for those who ask
        return run_spec(spec)


def _png(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(read_bytes(uri))))


def test_gan_training_reports_losses_checkpoints_and_grids(gan_trained):
    assert gan_trained.epochs_run == 3 and gan_trained.examples == 256 and gan_trained.skipped == 1
    assert set(gan_trained.metrics) >= {"g_loss", "d_loss"}
    assert all(np.isfinite(gan_trained.metrics[k]) and gan_trained.metrics[k] > 0 for k in ("g_loss", "d_loss"))
    metadata = read_model_metadata("s3://it-models/blobs-gan/")
    assert metadata["task"] == "gan" and metadata["files"] == ["generator.keras"]
    assert metadata["task_config"] == {"image_shape": [28, 28, 1], "latent_dim": 100}
    assert [h["epoch"] for h in metadata["history"]] == [1, 2, 3]
    version = f"s3://it-models/blobs-gan/model/versions/{metadata['model_id']}/"
    assert exists(version + "generator.keras")
    assert exists(version + "training_curve.svg")
    # A checkpoint holds both networks and both optimizers' state, for resuming.
    keys = [parse_uri(o.uri).key for o in list_objects("s3://it-models/blobs-gan/train/")]
    assert any(k.endswith("/discriminator.keras") for k in keys) and any("/optimizers/" in k for k in keys)
    grids = sorted(parse_uri(o.uri).key for o in list_objects("s3://it-models/blobs-gan/samples/"))
    assert grids == [f"blobs-gan/samples/epoch-00{i}.png" for i in (1, 2, 3)]
    grid = _png("s3://it-models/blobs-gan/samples/epoch-003.png")
    assert grid.ndim == 2 and grid.shape == (8 * 58 + 2, 8 * 58 + 2)  # 8x8 cells of 28*2 + 2 padding


def test_gan_training_curves_and_sample_grids_open_in_tensorboard(gan_trained, tmp_path):
    from support.tensorboard import read_board

    scalars, images = read_board("s3://it-models/blobs-gan/", tmp_path)
    for tag in ("g_loss", "d_loss", "epoch_seconds"):
        assert [step for step, _ in scalars[tag]][:3] == [1, 2, 3], (tag, scalars.get(tag))
    assert images["samples"][:3] == [1, 2, 3]  # the epoch's sample grid beside its losses


def test_the_gan_job_is_tracked_in_mlflow(gan_trained, mlflow_store, monkeypatch):
    """Params, each epoch's losses, the exported generator and its model_id, in a file store."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("digits-gan")  # the spec's name
    [run] = client.search_runs([experiment.experiment_id])
    model_id = read_model_metadata("s3://it-models/blobs-gan/")["model_id"]
    assert run.data.tags["mediajobs.model_id"] == model_id == run.info.run_name
    assert run.data.params["training.epochs"] == "3" and run.data.params["task"] == "gan"
    for name in ("g_loss", "d_loss"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2, 3]
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert artifacts == {"model/generator.keras", "model/metadata.json"}


def test_rerunning_a_finished_gan_job_resumes_instead_of_retraining(gan_trained):
    spec = load_spec(EXAMPLES / "train-gan.yaml", [
        "data.train=s3://it-media/blobs/", "training.epochs=4", "training.batch_size=32",
        "output=s3://it-models/blobs-gan/"])
    result = run_spec(spec)
    metadata = read_model_metadata("s3://it-models/blobs-gan/")
    # Epochs 1-3 come from the first run's history: only epoch 4 was trained now.
    assert result.epochs_run == 4 and [h["epoch"] for h in metadata["history"]] == [1, 2, 3, 4]
    assert exists("s3://it-models/blobs-gan/samples/epoch-004.png")


def test_generation_is_deterministic_and_indexed(gan_trained):
    overrides = ["model=s3://it-models/blobs-gan/", "count=150", "seed=7", "batch_size=64", "grid_size=16"]
    first = run_spec(load_spec(EXAMPLES / "generate-gan.yaml", overrides + ["output=s3://it-samples/a/"]))
    second = run_spec(load_spec(EXAMPLES / "generate-gan.yaml",
                                overrides + ["output=s3://it-samples/b/", "batch_size=50",
                                             "resources.concurrency=1"]))
    assert first.count == second.count == 150
    index = read_table(first.index_uri).sort_by("index")
    assert index.column("index").to_pylist() == list(range(150))
    assert set(index.column("seed").to_pylist()) == {7}
    _one_commit_readable_in_duckdb(first.index_uri, first.run_id, 150)
    images = {parse_uri(o.uri).key.split("/", 1)[1]: o.uri for o in list_objects("s3://it-samples/a/images/")}
    assert sorted(parse_uri(u).key for u in index.column("uri").to_pylist()) == sorted(
        parse_uri(u).key for u in images.values())
    # Same seed and count, other batching and actor count: byte-identical images.
    for relative, uri in images.items():
        assert read_bytes(uri) == read_bytes("s3://it-samples/b/" + relative), relative
    sample = _png(index.column("uri")[0].as_py())
    assert sample.shape == (28, 28) and sample.dtype == np.uint8
    grid = _png(first.grid_uri)
    assert grid.shape == (4 * 58 + 2, 4 * 58 + 2)  # 16 images in a 4x4 grid
    # Another seed gives other images.
    other = run_spec(load_spec(EXAMPLES / "generate-gan.yaml",
                               overrides + ["output=s3://it-samples/c/", "seed=8", "count=3"]))
    assert read_bytes(read_table(other.index_uri).sort_by("index").column("uri")[0].as_py()) != read_bytes(
        index.column("uri")[0].as_py())


def _one_commit_readable_in_duckdb(table_uri: str, run_id: str, rows: int) -> None:
    """The Delta table holds the run in one commit, and DuckDB reads it (through the Arrow
    dataset deltalake gives: DuckDB's own delta extension downloads itself at first use)."""
    import duckdb

    from jobs.storage.delta import RUN_ID_KEY, open_table

    table = open_table(parse_uri(table_uri))
    assert [h.get(RUN_ID_KEY) for h in table.history()] == [run_id]
    dataset = table.to_pyarrow_dataset()  # noqa: F841 - DuckDB finds it by name
    assert duckdb.connect().execute("SELECT count(*), count(DISTINCT run_id) FROM dataset").fetchone() == (rows, 1)


def test_generate_refuses_a_model_of_another_task(gan_trained):
    from jobs.errors import MediaJobsError

    spec = load_spec(EXAMPLES / "generate-gan.yaml", ["model=s3://it-models/none-here/", "count=3",
                                                      "output=s3://it-samples/x/"])
    with pytest.raises(MediaJobsError, match="no exported model at s3://it-models/none-here/model/"):
        run_spec(spec)


def test_generation_reports_the_quality_figures_of_a_classifier(gan_trained, shape_classifier):
    from tasks.image_classifier import decode_image
    from tasks.sample_quality import quality_figures

    lines: list[str] = []
    result = run_spec(load_spec(EXAMPLES / "generate-gan.yaml", [
        "model=s3://it-models/blobs-gan/", "count=130", "seed=3", "batch_size=50", "grid_size=4",
        "output=s3://it-samples/judged/", "quality={classifier: s3://it-models/gan-judge-cnn/, confident: 0.6}"]),
        echo=lines.append)
    quality = result.quality
    assert json.loads(read_bytes(result.summary_uri))["quality"] == quality
    assert quality["classifier_model_id"] == read_model_metadata("s3://it-models/gan-judge-cnn/")["model_id"]
    assert quality["input_adaptation"] == "resized from 28x28 to 32x32, grey replicated to RGB"
    # Consistent figures: every sample counted once, every class named (zero shares too).
    counts, shares = quality["class_counts"], quality["class_shares"]
    assert list(counts) == list(shares) == ["bar", "disc", "ring"]
    assert quality["samples"] == sum(counts.values()) == result.count == 130
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(shares[name] == pytest.approx(counts[name] / 130) for name in counts)
    assert quality["confident_threshold"] == 0.6
    assert quality["confident_share"] == pytest.approx(quality["confident_count"] / 130)
    assert quality["rare_classes"] == [name for name in counts if shares[name] < 0.03]
    assert quality["possible_mode_collapse"] == bool(quality["rare_classes"])
    # The figures judged in memory are those of scoring the written PNGs.
    model, metadata = load_keras_model(quality["classifier"])
    index = read_table(result.index_uri).sort_by("index")
    assert index.column_names == ["uri", "seed", "index", "model_id", "run_id", "scored_at"]  # verdicts not kept
    pngs = np.stack([decode_image(read_bytes(uri), metadata["input_shape"]) for uri in index.column("uri").to_pylist()])
    expected = quality_figures(model(pngs, training=False).numpy(), metadata["class_names"], confident=0.6)
    assert (counts, quality["confident_count"]) == (expected.class_counts, expected.confident_count)
    assert any(line.startswith("quality:") and "of 130 samples classified with confidence >= 0.6" in line
               for line in lines), lines
    assert any(line.startswith("quality:") and line.endswith("ring " + f"{shares['ring']:.1%}") for line in lines)


def test_generation_refuses_a_quality_classifier_that_is_no_image_classifier(gan_trained):
    from jobs.errors import MediaJobsError

    overrides = ["model=s3://it-models/blobs-gan/", "count=3", "output=s3://it-samples/unjudged/"]
    with pytest.raises(MediaJobsError, match="quality.classifier: the model at s3://it-models/blobs-gan/ was trained "
                                             "for task 'gan'; point it at the output of an image-classifier"):
        run_spec(load_spec(EXAMPLES / "generate-gan.yaml", overrides + [
            "quality={classifier: s3://it-models/blobs-gan/}"]))
    with pytest.raises(MediaJobsError, match="quality.classifier: no exported model at s3://it-models/none-here/"
                                             r"model/ .*point `quality.classifier` at the output URI"):
        run_spec(load_spec(EXAMPLES / "generate-gan.yaml", overrides + [
            "quality={classifier: s3://it-models/none-here/}"]))
