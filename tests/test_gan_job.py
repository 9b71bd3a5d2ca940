"""GAN train and generate jobs end to end on the real local stack (Ray Train MWMS, S3)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.ingest import ingest_folder
from jobs.runner import run_spec
from jobs.specs import load_spec
from jobs.storage import exists, list_objects, parse_uri, read_bytes
from jobs.delta_tables import read_table
from jobs.model_store import read_model_metadata

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).parents[1] / "jobs" / "examples"
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
def gan_trained(ray_driver, tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    _write_blobs(root, 256, seed=3)
    ingest_folder(root, "s3://it-media/blobs/")
    spec = load_spec(EXAMPLES / "train-gan.yaml", [
        "data.train=s3://it-media/blobs/", "training.epochs=3", "training.batch_size=32",
        "output=s3://it-models/blobs-gan/"])
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

    from jobs.delta_tables import RUN_ID_KEY, open_table

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
