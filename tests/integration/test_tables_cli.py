"""`mediajobs tables ...` on a real output in the local SeaweedFS: list, history, vacuum
(dry and for real: time travel ends where the files went), convert."""

from __future__ import annotations

import pyarrow as pa
import pytest

from jobs.cli.app import main
from jobs.storage.delta import read_table
from jobs.runs.lifecycle import Run, TableWrite
from jobs.storage.objects import list_objects
from jobs.storage.checks import ensure_bucket

pytestmark = pytest.mark.integration


def _run_once(output: str, n: int) -> str:
    with Run(output, ["predictions"], echo=lambda line: None) as run:
        run.commit([TableWrite("predictions", lambda: pa.table({"uri": [f"u{i}" for i in range(n)],
                                                                "run_id": [run.run_id] * n}))])
        run.finish({})
    return run.run_id


def test_list_history_and_vacuum(local_stack, capsys):
    ensure_bucket("s3://it-tables/")
    output = "s3://it-tables/scores/"
    first, second = _run_once(output, 4), _run_once(output, 6)

    assert main(["tables", "list", output]) == 0
    listing = capsys.readouterr().out
    assert "predictions" in listing and second in listing and "6" in listing

    assert main(["tables", "history", output, "predictions"]) == 0
    history = capsys.readouterr().out.splitlines()
    assert second in history[0] and first in history[1] and len(history) == 2

    assert main(["tables", "history", output, "nope"]) == 2
    assert "no Delta table 'nope'" in capsys.readouterr().err

    files = lambda: [o.uri for o in list_objects(output + "predictions/") if o.uri.endswith(".parquet")]  # noqa: E731
    assert len(files()) == 2
    assert main(["tables", "vacuum", output, "--retain-hours", "0"]) == 0
    assert "predictions: 1 files would be deleted" in capsys.readouterr().out and len(files()) == 2
    assert main(["tables", "vacuum", output, "--retain-hours", "0", "--delete"]) == 0
    assert "predictions: 1 files were deleted" in capsys.readouterr().out and len(files()) == 1
    assert read_table(output + "predictions/").num_rows == 6  # the latest version stays whole

