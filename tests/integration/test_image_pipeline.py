"""End to end on the real local stack: ingest, 2-worker MWMS training, scoring, bad input."""

from __future__ import annotations

import json

import pytest

from jobs.cli.demo import folder_accuracy
from jobs.datasets.ingest import ingest_folder
from jobs.runs.dispatch import run_spec
from jobs.spec.load import load_spec
from jobs.storage.objects import exists, list_objects, parse_uri, read_bytes, s3_client
from jobs.storage.delta import read_table
from jobs.datasets.synthetic import write_shapes_dataset
from jobs.models.store import read_model_metadata
from support.paths import EXAMPLES
from support.shared_models import SHAPES_EPOCHS, SHAPES_MODEL

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shapes_data(local_stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    # Only images to score: the model (`trained`) learnt on the session's parity shapes.
    write_shapes_dataset(root, per_class_train=0, per_class_test=20, seed=1)
    counts = ingest_folder(root, "s3://it-media/shapes/")
    assert counts["uploaded"] == sum(1 for p in root.rglob("*") if p.is_file())
    return root


@pytest.fixture(scope="module")
def trained(shapes_two_workers):
    """The session's 2-worker image classifier (conftest.shapes_two_workers, trained on
    s3://it-media/parity-shapes/ for test_training_parity too); the tests here score
    this module's own shapes with it."""
    return shapes_two_workers


def test_two_worker_training_learns_and_exports(trained):
    assert trained.class_names == ["circle", "square", "triangle"]
    assert trained.epochs_run == SHAPES_EPOCHS
    # 3 balanced classes: chance is 0.33
    assert trained.metrics["val_accuracy"] > 0.6, trained.metrics
    metadata = read_model_metadata(SHAPES_MODEL)
    assert metadata["class_names"] == trained.class_names
    assert metadata["input_shape"] == [32, 32, 3]
    assert len(metadata["history"]) == SHAPES_EPOCHS
    # The version is complete under versions/<model_id>/, and LATEST names it.
    assert exists(f"{SHAPES_MODEL}model/versions/{metadata['model_id']}/model.keras")
    assert trained.model_uri == f"{SHAPES_MODEL}model/@{metadata['model_id']}"
    checkpoints = {parse_uri(o.uri).key.split("/")[2] for o in list_objects(f"{SHAPES_MODEL}train/")}
    assert any(name.startswith("checkpoint_") for name in checkpoints)


def test_scoring_writes_one_prediction_per_image(trained, shapes_data):
    spec = load_spec(EXAMPLES / "score-demo.yaml", [
        f"model={SHAPES_MODEL}", "input=s3://it-media/shapes/test/", "output=s3://it-scores/shapes/"])
    result = run_spec(spec)
    inputs = {o.uri for o in list_objects("s3://it-media/shapes/test/")}
    predictions = read_table(result.predictions_uri)
    assert sorted(predictions.column("uri").to_pylist()) == sorted(inputs)
    assert result.errors == 0 and not list(list_objects(result.errors_uri))
    assert 0 < result.first_rows_s < result.seconds  # start-up, apart from the rate after it
    assert set(predictions.column("label").to_pylist()) <= {"circle", "square", "triangle"}
    assert all(len(t) == 3 for t in predictions.column("top_labels").to_pylist())
    assert folder_accuracy(result.predictions_uri) > 0.6
    # readable with pandas too, and the summary is there
    from jobs.storage.delta import open_table

    frame = open_table(parse_uri(result.predictions_uri)).to_pandas()
    assert {"uri", "label", "score", "model_id"} <= set(frame.columns)
    summary = json.loads(read_bytes(result.summary_uri))
    assert summary["listed"] == len(inputs) and summary["predicted"] == len(inputs)


def test_one_actor_holding_every_cpu_still_decodes(mediajobs_cli, trained, shapes_data):
    """Decoding runs inside the classifier actors whatever their resources: it once became
    separate tasks when cpus_per_actor was not 1, and those waited forever for a CPU the
    actor held. Run as a user would, in a process of its own, so a hang is a timeout."""
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    run = mediajobs_cli("run", str(EXAMPLES / "score-demo.yaml"),
                        "--set", f"model={SHAPES_MODEL}", "--set", "input=s3://it-media/shapes/test/",
                        "--set", "output=s3://it-scores/shapes-one-actor/",
                        "--set", f"resources={{concurrency: 1, cpus_per_actor: {cpus}}}", timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    predictions = read_table("s3://it-scores/shapes-one-actor/predictions/")
    assert predictions.num_rows == sum(1 for _ in list_objects("s3://it-media/shapes/test/"))


def test_training_curves_open_in_tensorboard(trained, tmp_path):
    """Rank 0 wrote each epoch's metrics under <output>/tensorboard/, readable by TensorBoard."""
    from support.tensorboard import read_board

    scalars, _ = read_board(SHAPES_MODEL, tmp_path)
    epochs = list(range(1, SHAPES_EPOCHS + 1))
    for tag in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"):
        assert [step for step, _ in scalars[tag]] == epochs, (tag, scalars.get(tag))
    losses = [value for _, value in scalars["loss"]]
    assert losses[-1] < losses[0]  # the curve shows the model learning
    history = read_model_metadata(SHAPES_MODEL)["history"]  # the same epochs as the model records them
    assert losses == pytest.approx([h["loss"] for h in history], rel=1e-5)


MIXED_SPEC_NAME = "score-mixed"  # this run's `spec` label on the head's metrics


@pytest.fixture(scope="module")
def mixed_run(trained, shapes_data):
    """Three shapes and three bad objects under s3://it-media/mixed/, scored: the result."""
    client = s3_client()
    good = sorted(p for p in (shapes_data / "test" / "circle").iterdir())[:3]
    for path in good:
        client.put_object(Bucket="it-media", Key=f"mixed/{path.name}", Body=path.read_bytes())
    jpeg = good[0].read_bytes() if good[0].suffix == ".jpg" else next(
        p for p in (shapes_data / "test").rglob("*.jpg")).read_bytes()
    bad = {"mixed/corrupt.jpg": jpeg[: len(jpeg) // 3] + b"\x00" * 50, "mixed/empty.jpg": b"",
           "mixed/notes.jpg": b"this is a text file, not a picture\n" * 20}
    for key, body in bad.items():
        client.put_object(Bucket="it-media", Key=key, Body=body)
    spec = load_spec(EXAMPLES / "score-demo.yaml", [
        f"model={SHAPES_MODEL}", "input=s3://it-media/mixed/", "output=s3://it-scores/mixed/",
        f"name={MIXED_SPEC_NAME}"])
    return run_spec(spec)


def test_bad_objects_become_error_rows(mixed_run):
    result = mixed_run
    errors = read_table(result.errors_uri).to_pylist()
    predictions = read_table(result.predictions_uri).column("uri").to_pylist()
    error_uris = {e["uri"] for e in errors}
    assert error_uris == {"s3://it-media/mixed/" + name for name in ("corrupt.jpg", "empty.jpg", "notes.jpg")}
    assert all(e["stage"] == "decode" and e["error"] for e in errors)
    by_uri = {e["uri"]: e["error"] for e in errors}
    assert "empty" in by_uri["s3://it-media/mixed/empty.jpg"]
    assert "text" in by_uri["s3://it-media/mixed/notes.jpg"]
    assert "truncated" in by_uri["s3://it-media/mixed/corrupt.jpg"]
    # every object is in exactly one of the two tables
    listed = {o.uri for o in list_objects("s3://it-media/mixed/")}
    assert len(predictions) + len(errors) == len(listed)
    assert set(predictions) | error_uris == listed and not set(predictions) & error_uris
    assert result.predicted == 3


def test_the_heads_metrics_count_the_runs_objects(local_stack, mixed_run):
    """The head's Prometheus endpoint shows the run's objects by outcome and stage (from the
    driver's committed counts) and the workers' fetch, decode and model timings."""
    from support.metrics import scrape_until, series_sum

    spec = {"spec": MIXED_SPEC_NAME}
    families = scrape_until(local_stack.metrics_url, lambda found: series_sum(
        found, "ray_mediajobs_objects_total", {**spec, "outcome": "failed"}) == 3)
    objects = "ray_mediajobs_objects_total"
    assert series_sum(families, objects, {**spec, "outcome": "scored", "stage": "none", "modality": "image"}) == 3
    assert series_sum(families, objects, {**spec, "outcome": "failed", "stage": "decode"}) == 3
    assert series_sum(families, objects, {**spec, "kind": "score"}) == mixed_run.listed == 6
    task = {"task": "image-classifier"}
    # Cumulative over the session's jobs: this run's six fetches and decodes are among them.
    assert series_sum(families, "ray_mediajobs_fetch_seconds_count", task) >= 6
    assert series_sum(families, "ray_mediajobs_decode_seconds_count", task) >= 6
    assert series_sum(families, "ray_mediajobs_model_seconds_count", task) >= 1
    assert series_sum(families, "ray_mediajobs_examples_scored_total", task) >= 3
    assert series_sum(families, "ray_mediajobs_run_seconds", {**spec, "kind": "score"}) > 0
    # The session's 2-worker shapes model trained its epochs on rank 0's count (a counter
    # outlives its process; the loss gauge went with the finished worker).
    assert series_sum(families, "ray_mediajobs_train_epochs_total", {"spec": "shapes"}) >= SHAPES_EPOCHS


def test_a_listing_of_several_files_is_scored_file_by_file(trained, shapes_data, monkeypatch):
    """The listing goes to staging a file per TODO_FLUSH_ROWS objects at most, read by the
    pipeline file by file (the driver never holds the whole listing): cut to files of 25
    objects, every object is still scored once, and the commit checks them all together."""
    import jobs.nightly.worklists

    monkeypatch.setattr(jobs.nightly.worklists, "TODO_FLUSH_ROWS", 25)
    spec = load_spec(EXAMPLES / "score-demo.yaml", [
        f"model={SHAPES_MODEL}", "input=s3://it-media/shapes/test/", "output=s3://it-scores/shapes-cut/"])
    result = run_spec(spec)
    inputs = sorted(o.uri for o in list_objects("s3://it-media/shapes/test/"))
    assert len(inputs) > 50  # three listing files, or nothing was cut
    predictions = read_table(result.predictions_uri).column("uri").to_pylist()
    assert sorted(predictions) == inputs and result.listed == len(inputs) and result.errors == 0


def _listing_of(uri: str, each) -> list:
    """A listing of `uri` that calls `each(index)` before yielding each object (in the driver's
    listing thread): a stand-in for a long listing, its pages real objects of the store."""
    objects = list(list_objects(uri))

    def listing(prefix, *args, **kwargs):
        for index, obj in enumerate(objects):
            each(index)
            yield obj

    return listing


def _staged_scores(output: str) -> list[str]:
    return [o.uri for o in list_objects(output + "_staging/") if "/scored/" in o.uri]


def test_scoring_starts_while_the_listing_goes_on(trained, shapes_data, monkeypatch):
    """The actors start and score the first listing file while the driver is still listing:
    here the listing waits, after its first file, until scored rows are staged, and goes on
    only then (were the listing to end before scoring began, it would wait in vain)."""
    import time

    import jobs.runs.listing_feed
    import jobs.runs.score

    output = "s3://it-scores/shapes-streamed/"
    scored_while_listing: list[bool] = []

    def wait_for_scores(index: int) -> None:
        if index == 30:  # the first file (25 objects) is staged; the listing has not ended
            deadline = time.monotonic() + 180
            while not _staged_scores(output) and time.monotonic() < deadline:
                time.sleep(0.5)
            scored_while_listing.append(bool(_staged_scores(output)))

    monkeypatch.setattr(jobs.runs.listing_feed, "FIRST_PART_OBJECTS", 25)
    monkeypatch.setattr(jobs.runs.score, "list_objects", _listing_of("s3://it-media/shapes/test/", wait_for_scores))
    spec = load_spec(EXAMPLES / "score-demo.yaml", [
        f"model={SHAPES_MODEL}", "input=s3://it-media/shapes/test/", f"output={output}"])
    result = run_spec(spec)
    inputs = sorted(o.uri for o in list_objects("s3://it-media/shapes/test/"))
    assert scored_while_listing == [True]
    predictions = read_table(result.predictions_uri).column("uri").to_pylist()
    assert sorted(predictions) == inputs and result.listed == len(inputs) and result.errors == 0


def test_a_listing_that_fails_midway_fails_the_run_and_commits_nothing(trained, shapes_data, monkeypatch):
    """The store stops listing after the first listing file went to the actors: the run fails
    with the listing's own error (not Ray's), and no table is written."""
    import jobs.runs.listing_feed
    import jobs.runs.score
    from jobs.errors import StorageError

    def fail_at_40(index: int) -> None:
        if index == 40:
            raise StorageError("cannot list s3://it-media/shapes/test/: the listing broke off")

    output = "s3://it-scores/shapes-listing-broke/"
    monkeypatch.setattr(jobs.runs.listing_feed, "FIRST_PART_OBJECTS", 25)
    monkeypatch.setattr(jobs.runs.score, "list_objects", _listing_of("s3://it-media/shapes/test/", fail_at_40))
    spec = load_spec(EXAMPLES / "score-demo.yaml", [
        f"model={SHAPES_MODEL}", "input=s3://it-media/shapes/test/", f"output={output}"])
    with pytest.raises(StorageError, match="the listing broke off"):
        run_spec(spec)
    assert not any("/predictions/" in o.uri or "/errors/" in o.uri for o in list_objects(output))


def test_binary_cnn_trains_and_scores_two_classes(ray_driver, tmp_path):
    from jobs.datasets.synthetic import write_binary_dataset

    write_binary_dataset(tmp_path, per_class_train=120, per_class_test=20, seed=2)
    ingest_folder(tmp_path, "s3://it-media/binary/")
    spec = load_spec(EXAMPLES / "train-demo.yaml", [
        "model={architecture: binary-cnn}", "data.train=s3://it-media/binary/train/",
        "data.validation=s3://it-media/binary/test/", "training.epochs=4", "training.batch_size=16",
        "output=s3://it-models/binary-cnn/"])
    assert tuple(spec.model.input_shape) == (64, 64, 3)
    trained = run_spec(spec)
    assert trained.metrics["val_accuracy"] > 0.7, trained.metrics  # 2 classes: chance is 0.5
    score = load_spec(EXAMPLES / "score-demo.yaml", [
        "model=s3://it-models/binary-cnn/", "input=s3://it-media/binary/test/", "output=s3://it-scores/binary/"])
    result = run_spec(score)
    predictions = read_table(result.predictions_uri).to_pylist()
    assert len(predictions) == 40 and result.errors == 0
    assert {p["label"] for p in predictions} <= {"circle", "square"}
    assert all(abs(sum(p["top_scores"]) - 1.0) < 1e-4 for p in predictions)  # sigmoid expanded to 2 scores
    assert folder_accuracy(result.predictions_uri) > 0.7
