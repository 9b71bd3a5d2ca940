"""`mediajobs demo`: the main job end to end on the embedded local stack.

Local stack up -> a generated image dataset (real JPEG/PNG files, class folders)
ingested into S3 -> 2 Ray Train workers train the CNN -> the held-out folder is
scored -> accuracy and output locations printed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from jobs.errors import JobFailedError

if TYPE_CHECKING:
    from jobs.runs.score import ScoreResult
    from jobs.runs.train import TrainResult

EXAMPLES = Path(__file__).parents[1] / "examples"
DEMO_DATA_URI = "s3://media/demo/"


def run_demo(epochs: int = 4, images_per_class: int = 150, echo: Callable[[str], None] = print,
             progress: Callable[[int, int], None] | None = None) -> float:
    """Run the demo; returns the accuracy of the scoring job on the held-out images."""
    from cluster.local_stack import up
    from jobs.datasets.ingest import ingest_folder
    from jobs.datasets.synthetic import write_shapes_dataset
    from jobs.runs.dispatch import run_spec
    from jobs.spec.load import load_spec

    echo("1/4 starting the local stack (Ray head + SeaweedFS S3 on 127.0.0.1)")
    stack = up()
    echo(f"    S3 {stack.s3_endpoint}, Ray {stack.ray_address}, dashboard {stack.dashboard_url}")

    echo(f"2/4 generating {images_per_class} images per class and uploading them to {DEMO_DATA_URI}")
    with tempfile.TemporaryDirectory(prefix="mediajobs-demo-") as tmp:
        write_shapes_dataset(Path(tmp), per_class_train=images_per_class,
                             per_class_test=max(10, images_per_class // 3), seed=0)
        counts = ingest_folder(Path(tmp), DEMO_DATA_URI, progress=progress)
    echo(f"    {counts['uploaded']} uploaded, {counts['skipped']} unchanged")

    echo(f"3/4 training on 2 Ray Train workers ({epochs} epochs)")
    train_spec = load_spec(EXAMPLES / "train-demo.yaml", [f"training.epochs={epochs}"])
    trained = cast("TrainResult", run_spec(train_spec, echo=echo))  # a train spec's result

    echo("4/4 scoring the held-out images")
    score_spec = load_spec(EXAMPLES / "score-demo.yaml")
    scored = cast("ScoreResult", run_spec(score_spec, echo=echo))  # a (not incremental) score spec's result

    if scored.predicted == 0:
        raise JobFailedError(f"the scoring job produced no predictions; see {scored.errors_uri}")
    accuracy = folder_accuracy(scored.predictions_uri)
    echo("")
    echo(f"validation accuracy (training): {trained.metrics.get('val_accuracy', float('nan')):.3f}")
    echo(f"held-out accuracy (scoring job): {accuracy:.3f} on {scored.predicted} images "
         f"({len(trained.class_names)} classes, chance {1 / len(trained.class_names):.3f})")
    echo(f"model:       {trained.model_uri}")
    echo(f"predictions: {scored.predictions_uri}")
    echo(f"errors:      {scored.errors_uri}")
    echo(f"summary:     {scored.summary_uri}")
    return accuracy


def folder_accuracy(predictions_uri: str) -> float:
    """Share of predictions whose label equals the object's parent folder name."""
    from jobs.storage.delta import read_table

    rows = read_table(predictions_uri, columns=["uri", "label"]).to_pylist()
    if not rows:
        return 0.0
    return sum(r["uri"].rsplit("/", 2)[-2] == r["label"] for r in rows) / len(rows)
