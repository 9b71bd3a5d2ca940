"""`mediajobs bench --driver-memory` at a small scale: the synthetic nights' commits account
for every object in the committed tables and the ledger (the memory figures themselves are
the benchmark's to judge, at its own sizes)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from jobs.bench.driver_memory import run_driver_memory_bench

FRAMES = 30


@pytest.mark.timeout(180)
def test_driver_memory_bench_commits_every_object(tmp_path):
    from deltalake import DeltaTable

    from jobs.nightly.manifest import current_snapshot, read_ledger

    figures = run_driver_memory_bench(objects=2500, frames=FRAMES, workdir=str(tmp_path), echo=lambda _: None,
                                      keep=True)
    assert set(figures["scales"]) == {"n", "5n"}
    for scale in figures["scales"].values():
        output, objects = scale["output_uri"], scale["objects"]
        predictions = DeltaTable(f"{output}/predictions").to_pyarrow_table()
        errors = DeltaTable(f"{output}/errors").to_pyarrow_table()
        frames = DeltaTable(f"{output}/frames").to_pyarrow_table()
        final_errors = errors.filter(pc.field("stage") != "decode-partial")
        assert predictions.num_rows + final_errors.num_rows == objects
        outcomes = predictions.column("uri").to_pylist() + final_errors.column("uri").to_pylist()
        assert len(set(outcomes)) == objects  # each object once, in one table
        assert final_errors.num_rows == scale["errors_expected"] > 0
        assert predictions.filter(pc.field("warning").is_valid()).num_rows == scale["partial_expected"] > 0
        videos = predictions.filter(pc.field("modality") == "video").num_rows
        assert frames.num_rows == FRAMES * videos == scale["frame_rows"]
        assert scale["scored"] + scale["errors"] == objects
        assert scale["peak_bytes"] > scale["rss_before_bytes"] > 0 and not scale["capped"]
        ledger = list(read_ledger(current_snapshot(output)))
        assert len(ledger) == objects and {e.model_id for e in ledger} == {"model-new"}
    assert figures["growth"] > 0
    assert [t["target"] for t in figures["targets"]] == ["peak at 5N", "peak(5N) / peak(N)"]
