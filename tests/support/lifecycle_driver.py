"""A score run without Ray, for the crash matrix and split-brain tests (tests/integration/faults/): the
run lifecycle exactly as the runners drive it (jobs.runs, jobs.runs.score_commit, jobs.runs.nightly),
with one stand-in: the classifier actors' staging is done here, in-process, writing the
same staged rows (an object whose name holds "bad" fails at the decode stage, one whose
name holds "flaky" at the read stage unless FLAKY_READS_OK is set).

    python tests/support/lifecycle_driver.py plain OUTPUT OBJECTS MODEL_ID
    python tests/support/lifecycle_driver.py nightly OUTPUT ARCHIVE MODEL RUN_DATE

Exit codes are the CLI's (jobs.cli.app.main): 0 done, 1 failed or fenced out, 3 lease held.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from contextlib import contextmanager

CLASSES = ["cat", "dog"]


def stub_model(uri: str, model_id: str) -> str:
    """A model version as a train job exports it, whose `model.keras` holds only a config: the
    drivers here resolve and check it like any model but never run it. Returns `uri`."""
    import tempfile
    import zipfile
    from pathlib import Path

    from jobs.models.export import export_model

    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(Path(folder) / "model.keras", "w") as archive:
            archive.writestr("config.json", json.dumps({"module": "keras", "class_name": "Sequential",
                                                        "config": {"name": "stub", "layers": []}}))
        export_model(Path(folder), {"task": "image-classifier", "model_id": model_id, "class_names": CLASSES,
                                    "input_shape": [32, 32, 3], "files": ["model.keras"]}, uri)
    return uri


def staged_rows(items: list[dict], model_id: str, run_id: str, position_columns: tuple[str, ...] = ()):
    """What BatchClassifier stages for these objects: a prediction row, or an error row (at
    the decode stage for a `bad` name; at the read stage for a `flaky` one, unless
    FLAKY_READS_OK is set: a read that fails one night and works the next)."""
    import os

    import pyarrow as pa

    from jobs.storage.contract import now_utc
    from jobs.runs.score_commit import staged_schema

    rows = []
    for item in items:
        name = item["uri"].rsplit("/", 1)[-1]
        flaky = "flaky" in name and not os.environ.get("FLAKY_READS_OK")
        bad = "bad" in name or flaky
        digit = int(hashlib.sha256(item["uri"].encode()).hexdigest(), 16) % 2
        rows.append({"uri": item["uri"], "label": None if bad else CLASSES[digit], "score": None if bad else 0.9,
                     "top_labels": None if bad else [CLASSES[digit], CLASSES[1 - digit]],
                     "top_scores": None if bad else [0.9, 0.1],
                     "probabilities": None if bad else ([0.9, 0.1] if digit == 0 else [0.1, 0.9]),
                     "object_info": json.dumps({"seconds": 0.01}), "model_id": model_id, "run_id": run_id,
                     "stage": ("read" if flaky else "decode") if bad else None,
                     "error": ("connection reset by peer" if flaky else "not a decodable image") if bad else None,
                     "node_id": "driver", "etag": item.get("etag"), "scored_at": now_utc()})
    return pa.Table.from_pylist(rows, schema=staged_schema(position_columns))


def stage(rows, staging_uri: str) -> None:
    """One staged file per block, named by a digest of its objects (as the actors do)."""
    import pyarrow.parquet as pq

    from jobs.storage.objects import filesystem_for, parse_uri

    location = parse_uri(staging_uri)
    digest = hashlib.sha256(repr(rows.column("uri").to_pylist()).encode()).hexdigest()[:40]
    pq.write_table(rows, f"{location.fs_path}/{digest}.parquet", filesystem=filesystem_for(location))


def plain(output: str, objects: int, model_id: str) -> str:
    """A plain score run over `objects` listed objects (`obj-i.jpg`, every fifth `bad`);
    returns its run id."""
    from jobs.runs.lifecycle import Run
    from jobs.runs.score_commit import SCORED, commit_run, stage_listing
    from jobs.storage.objects import StoredObject
    from tasks import get_task

    listed = {}
    for i in range(objects):
        uri = f"s3://archive/{'bad' if i % 5 == 4 else 'obj'}-{i:03d}.jpg"
        listed[uri] = StoredObject(uri, 100 + i, f"etag-{i}")
    task = get_task("image-classifier")
    with Run(output, ["predictions", "errors"], echo=print) as run:
        stage_listing(sorted(listed.values(), key=lambda o: o.uri), run)  # in key order, as S3 lists
        items = [{"uri": o.uri, "etag": o.etag} for o in listed.values()]
        for start in range(0, len(items), 8):  # blocks of 8, as Ray Data would hand them out
            stage(staged_rows(items[start:start + 8], model_id, run.run_id), run.staging.join(SCORED).uri)
        committed = commit_run(run, task, "image", CLASSES)
        run.finish({"listed": len(listed), "predicted": committed.scored_objects, "errors": committed.failed_objects,
                    "model_id": model_id})
    return run.run_id


def nightly(output: str, archive: str, model: str, run_date: str):
    """An incremental run of `run_date` over the archive, with the actors' work done here."""
    import pyarrow.parquet as pq

    import jobs.runs.nightly as nightly_module
    from jobs.spec.load import parse_spec
    from jobs.storage.objects import list_objects, parse_uri

    def score_route(night, route) -> None:
        pending = night.staging.join(f"pending-{night.run_id}", route.name)
        for obj in sorted(o.uri for o in list_objects(pending.uri) if o.uri.endswith(".parquet")):
            items = pq.read_table(parse_uri(obj).fs_path, filesystem=night.fs).to_pylist()
            scored = night.staging.join("scored", route.name, night.run_id).uri
            for start in range(0, len(items), 32):
                stage(staged_rows(items[start:start + 32], route.model_id, night.run_id), scored)

    spec = parse_spec({"version": 1, "kind": "score", "name": "crash-nightly", "input": archive, "output": output,
                       "incremental": True, "task": "image-classifier", "model": model}, "crash-nightly.yaml")
    with _stand_in(nightly_module.Night, "_score_route", score_route):
        result = nightly_module.run_incremental(spec, run_date, echo=print)
    print(json.dumps({"run_id": result.run_id, "committed": result.committed}))
    return result


_standing_in = threading.Lock()
_stand_ins: dict[tuple[type, str], list] = {}  # (class, name) -> [the real attribute, runs using the stand-in]


@contextmanager
def _stand_in(owner: type, name: str, stand_in):
    """`owner.name` replaced by `stand_in` while any run needs it: tests call the drivers
    in-process, from two threads at once (tests/integration/faults/commit_faults.each_point)."""
    key = (owner, name)
    with _standing_in:
        if key not in _stand_ins:
            _stand_ins[key] = [getattr(owner, name), 0]
            setattr(owner, name, stand_in)
        _stand_ins[key][1] += 1
    try:
        yield
    finally:
        with _standing_in:
            _stand_ins[key][1] -= 1
            if not _stand_ins[key][1]:
                setattr(owner, name, _stand_ins.pop(key)[0])


def main(argv: list[str]) -> int:
    from jobs.errors import MediaJobsError

    try:
        if argv[0] == "plain":
            plain(argv[1], int(argv[2]), argv[3])
        else:
            nightly(*argv[1:5])
    except MediaJobsError as exc:
        print(f"{exc.headline}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
