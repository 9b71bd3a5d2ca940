"""Every command given a missing or wrong input, as a new user types it: one line of error on
stderr (no traceback, no "internal error") and the exit code of its error class (2: bad
usage or spec, 1: storage, cluster, ingest and job errors). The CLI runs in a subprocess
against the session's real local stack (SeaweedFS + Ray head), two cases' processes at once."""

from __future__ import annotations

import re

import pytest
from support.cli import RunsAhead
from support.media import image_bytes
from support.paths import EXAMPLES

import tasks  # noqa: F401  (tf-keras before TensorFlow loads)

BUCKET = "s3://it-missing/"
NO_BUCKET = "s3://it-no-such-bucket-here/"
# Lines third-party C++ loggers write on stderr at import (TensorFlow/XLA's absl log lines,
# OpenCV's and FFmpeg's warnings): not ours, and not the error.
_FOREIGN_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|\[ WARN:\d|\[[a-z0-9,]+ @ 0x)")


@pytest.fixture(scope="module")
def inputs(local_stack, tmp_path_factory) -> dict[str, str]:
    """What the cases name: a trained model in the store, a real image, a text file posing as
    a video, undecodable bytes posing as an image, a folder, and URIs of things that are not there."""
    import tensorflow as tf

    from jobs.models.export import export_model
    from jobs.storage.objects import write_bytes
    from jobs.storage.checks import ensure_bucket
    from tasks.keras_files import save_keras

    tmp = tmp_path_factory.mktemp("missing-inputs")
    inputs = tf.keras.Input((8, 8, 3))
    outputs = tf.keras.layers.Dense(2, activation="softmax")(tf.keras.layers.Flatten()(inputs))
    (tmp / "model").mkdir()
    save_keras(tf.keras.Model(inputs, outputs), tmp / "model" / "model.keras")
    ensure_bucket(BUCKET)
    export_model(tmp / "model", {"model_id": "mi-1", "task": "image-classifier", "class_names": ["a", "b"],
                                 "input_shape": [8, 8, 3], "files": ["model.keras"]}, BUCKET + "cnn/")
    write_bytes(BUCKET + "media/photo.jpg", image_bytes())
    write_bytes(BUCKET + "media/notes.mp4", b"these are notes, not a video\n")
    write_bytes(BUCKET + "media/noise.jpg", bytes(range(256)) * 4)
    for label in ("cat", "dog", "fox"):  # three class folders, for a network with two classes
        write_bytes(BUCKET + f"classes/{label}/one.jpg", image_bytes())
    (tmp / "notes.txt").write_text("these are notes, not a video or a spec\n")
    (tmp / "noise.jpg").write_bytes(bytes(range(256)) * 4)
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00spec")
    (tmp / "folder").mkdir()
    return {"bucket": BUCKET, "nobucket": NO_BUCKET, "tmp": str(tmp), "model": BUCKET + "cnn/",
            "examples": str(EXAMPLES)}


def _score(model: str, input_: str, output: str) -> list[str]:
    return ["run", "{examples}/score-demo.yaml", "--set", f"model={model}", "--set", f"input={input_}",
            "--set", f"output={output}"]


# (command line, exit code, what the one line says); {names} come from the `inputs` fixture.
CASES = {
    # specs: missing, a folder, not text
    "run-missing-spec": (["run", "{tmp}/missing.yaml"], 2, "missing.yaml: no such file"),
    "run-folder-spec": (["run", "{tmp}/folder"], 2, "is a directory; pass the path of a .yaml spec file"),
    "run-binary-spec": (["run", "{tmp}/binary.yaml"], 2, "is not UTF-8 text"),
    "validate-missing-spec": (["validate", "{tmp}/missing.yaml"], 2, "missing.yaml: no such file"),
    "validate-text-spec": (["validate", "{tmp}/notes.txt"], 2, "invalid spec: {tmp}/notes.txt"),
    "submit-missing-spec": (["submit", "{tmp}/missing.yaml"], 2, "missing.yaml: no such file"),
    # a spec naming what is not there
    "run-score-no-model": (_score("{bucket}nothing/", "{bucket}media/", "{bucket}out-1/"), 1,
                           "model: no exported model at {bucket}nothing/model/"),
    "run-score-model-no-bucket": (_score("{nobucket}cnn/", "{bucket}media/", "{bucket}out-2/"), 1,
                                  "storage error: model: cannot read {nobucket}cnn/model/: NoSuchBucket"),
    "run-score-model-no-version": (_score("{model}@mi-9", "{bucket}media/", "{bucket}out-3/"), 1,
                                   "model: no version mi-9 at {model}model/versions/mi-9/ (versions there: mi-1)"),
    "run-score-input-no-bucket": (_score("{model}", "{nobucket}in/", "{bucket}out-4/"), 1,
                                  "cannot list {nobucket}in/: NoSuchBucket: the bucket does not exist"),
    "run-score-input-no-prefix": (_score("{model}", "{bucket}no-input/", "{bucket}out-5/"), 1,
                                  "input: no objects under {bucket}no-input/"),
    "run-train-data-no-bucket": (["run", "{examples}/train-demo.yaml", "--set", "data.train={nobucket}t/",
                                  "--set", "data.validation={nobucket}v/", "--set", "output={bucket}train-1/"], 1,
                                 "cannot list {nobucket}t/: NoSuchBucket"),
    # a training plan refusing the data (tasks.training.TrainingDataError): shown as the plan words it
    "run-train-binary-three-classes": (["run", "{examples}/train-demo.yaml", "--set", "model.architecture=binary-cnn",
                                        "--set", "data.train={bucket}classes/", "--set", "output={bucket}train-2/"], 1,
                                       "model.architecture: binary-cnn needs exactly 2 class folders, found ['cat', "
                                       "'dog', 'fox'] under {bucket}classes/; use cifar10-cnn"),
    # job ids the cluster does not know
    "status-unknown-job": (["status", "no-such-job"], 1, "no job 'no-such-job' on the cluster"),
    "logs-unknown-job": (["logs", "no-such-job"], 1, "no job 'no-such-job' on the cluster"),
    "logs-follow-unknown-job": (["logs", "no-such-job", "--follow"], 1, "no job 'no-such-job' on the cluster"),
    "stop-unknown-job": (["stop", "no-such-job"], 1, "no job 'no-such-job' on the cluster"),
    # report: an output that is not there, or is a file
    "report-no-bucket": (["report", "{nobucket}scores/"], 1,
                         "cannot read {nobucket}scores/_manifest/CURRENT: NoSuchBucket"),
    "report-no-prefix": (["report", "{bucket}no-scores/"], 2, "no committed incremental run here"),
    "report-missing-local": (["report", "{tmp}/missing/"], 2, "no committed incremental run here"),
    "report-a-file": (["report", "{tmp}/notes.txt"], 2, "no committed incremental run here"),
    # tables: an output that is not there
    **{f"tables-{command}-{where}": (["tables", command, uri, *(["predictions"] if command == "history" else [])],
                                     code, message)
       for command in ("list", "history", "convert", "vacuum")
       for where, uri, code, message in (
           ("no-bucket", "{nobucket}scores/", 1, "cannot list {nobucket}scores/: NoSuchBucket"),
           ("no-prefix", "{bucket}no-scores/", 2, "OUTPUT: nothing is stored under {bucket}no-scores/"),
           ("missing-local", "{tmp}/missing/", 2, "OUTPUT: nothing is stored under {tmp}/missing/"))},
    # predict: the model, then the source
    "predict-model-no-bucket": (["predict", "{nobucket}m/", "{bucket}media/photo.jpg"], 1,
                                "storage error: model: cannot read {nobucket}m/model/: NoSuchBucket"),
    "predict-model-no-prefix": (["predict", "{bucket}nothing/", "{bucket}media/photo.jpg"], 1,
                                "model: no exported model at {bucket}nothing/model/"),
    "predict-model-no-version": (["predict", "{model}@mi-9", "{bucket}media/photo.jpg"], 1, "no version mi-9"),
    "predict-source-no-object-video": (["predict", "{model}", "{bucket}media/missing.mp4"], 1,
                                       "storage error: cannot read {bucket}media/missing.mp4: no such object"),
    "predict-source-no-object-image": (["predict", "{model}", "{bucket}media/missing.jpg"], 1,
                                       "storage error: cannot read {bucket}media/missing.jpg: no such object"),
    "predict-source-no-bucket": (["predict", "{model}", "{nobucket}clip.mp4"], 1,
                                 "cannot read {nobucket}clip.mp4: NoSuchBucket"),
    "predict-source-a-prefix": (["predict", "{model}", "{bucket}media/"], 1, "it is a folder, not one object"),
    "predict-source-missing-local-video": (["predict", "{model}", "{tmp}/missing.mp4"], 2,
                                           "bad usage: {tmp}/missing.mp4: no such file"),
    "predict-source-missing-local-image": (["predict", "{model}", "{tmp}/missing.jpg"], 2,
                                           "bad usage: {tmp}/missing.jpg: no such file"),
    "predict-source-text-as-video": (["predict", "{model}", "{bucket}media/notes.mp4"], 1,
                                     "{bucket}media/notes.mp4: not a readable video or image"),
    "predict-source-local-text": (["predict", "{model}", "{tmp}/notes.txt"], 1, "not a readable video or image"),
    "predict-source-local-folder": (["predict", "{model}", "{tmp}/folder"], 1, "not a readable video or image"),
    "predict-source-noise-as-image": (["predict", "{model}", "{bucket}media/noise.jpg"], 1,
                                      "{bucket}media/noise.jpg: not a readable video or image (not a decodable image"),
    "predict-source-local-noise-as-image": (["predict", "{model}", "{tmp}/noise.jpg"], 1,
                                            "not a readable video or image (not a decodable image"),
    # ingest: a source that is not there or not what it should be
    "ingest-folder-missing": (["ingest", "folder", "{tmp}/missing", "--dest", "{bucket}up/"], 1,
                              "cannot ingest: {tmp}/missing does not exist"),
    "ingest-folder-a-file": (["ingest", "folder", "{tmp}/notes.txt", "--dest", "{bucket}up/"], 1,
                             "{tmp}/notes.txt is not a folder"),
    "ingest-cifar10-missing": (["ingest", "cifar10", "--source", "{tmp}/missing.tar.gz", "--dest", "{bucket}c/"], 1,
                               "cannot ingest: {tmp}/missing.tar.gz does not exist"),
    "ingest-cifar10-not-a-tarball": (["ingest", "cifar10", "--source", "{tmp}/notes.txt", "--dest", "{bucket}c/"],
                                     1, "{tmp}/notes.txt is not a readable tar.gz archive"),
    "ingest-cifar10-a-folder": (["ingest", "cifar10", "--source", "{tmp}/folder", "--dest", "{bucket}c/"], 1,
                                "{tmp}/folder is a folder"),
    "ingest-digits-unknown-source": (["ingest", "digits", "--source", "bogus", "--dest", "{bucket}d/"], 1,
                                     "unknown digits source 'bogus'; valid: sklearn, mnist"),
}


@pytest.fixture(scope="module")
def cli_runs(inputs, mediajobs_cli):
    """Each case's command run in a CLI process, the next case's started while one is checked."""
    runs = RunsAhead(mediajobs_cli, {case: [arg.format(**inputs) for arg in CASES[case][0]] for case in sorted(CASES)})
    yield runs
    runs.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_missing_or_wrong_input_is_one_line_with_its_exit_code(inputs, case, cli_runs):
    _, code, message = CASES[case]
    result = cli_runs(case)
    ours = [line for line in result.stderr.splitlines() if line.strip() and not _FOREIGN_LOG.match(line)]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-3000:]
    assert len(ours) == 1, result.stderr[-3000:]
    assert message.format(**inputs) in ours[0], ours[0]
    assert result.returncode == code, (result.returncode, ours[0])


# The same commands with credentials the store refuses (an access key it does not know): the
# reads that probe what is stored (is there a model? is it one object? a committed run?) say so
# in one line with the S3 code and its hint, as boto3's errors always did; (command, exit code).
REFUSED_CASES = {
    "predict-model": (["predict", "{model}", "{bucket}media/photo.jpg"], 1),
    "run-score": (_score("{model}", "{bucket}media/", "{bucket}out-refused/"), 2),  # refused before any work
    "report": (["report", "{bucket}scores/"], 1),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CASES))
def test_credentials_the_store_refuses_are_one_line(inputs, case, mediajobs_cli, local_stack):
    import os

    env = {**os.environ, "AWS_ENDPOINT_URL": local_stack.s3_endpoint, "AWS_DEFAULT_REGION": local_stack.region,
           "AWS_ACCESS_KEY_ID": "mediajobs-nobody", "AWS_SECRET_ACCESS_KEY": "not-the-secret-key"}
    args, code = REFUSED_CASES[case]
    result = mediajobs_cli(*[arg.format(**inputs) for arg in args], env=env)
    ours = [line for line in result.stderr.splitlines() if line.strip() and not _FOREIGN_LOG.match(line)]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-3000:]
    assert len(ours) == 1, result.stderr[-3000:]
    assert re.search(r"(InvalidAccessKeyId|AccessDenied): (unknown access key|access denied); check", ours[0]), ours[0]
    assert "not-the-secret-key" not in result.stdout + result.stderr
    assert result.returncode == code, (result.returncode, ours[0])
