"""`mediajobs bench`: the smoke run emits every figure (speeds are not asserted here: they are
measured by the benchmark itself, on a quiet machine), and the ratios and targets are
computed from the figures as docs/performance.md says."""

from __future__ import annotations

import json
import os

import pytest

from jobs.bench import TARGETS

REQUIRED = {
    "image": ("ours", "seed_loop", "ray_data_plain", "ray_data_recipe", "tf_data", "daft", "decode_only",
              "model_only", "ideal"),
    "video": ("ours", "decode_only", "ray_read_videos"),
    "audio": ("ours", "decode_mfcc", "ray_read_audio", "daft"),
    "training": ("ours", "single_process"),
}


@pytest.mark.timeout(1200)
def test_bench_quick_emits_every_figure(mediajobs_cli, local_stack, tmp_path):
    figures_file = tmp_path / "bench.json"
    done = mediajobs_cli("bench", "--quick", "--json", str(figures_file), timeout=1100,
                         env={**os.environ, "COLUMNS": "160"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    figures = json.loads(figures_file.read_text())
    assert figures["machine"]["cpus"] == os.cpu_count()
    for section, names in REQUIRED.items():
        for name in names:
            value = figures[section][name]
            assert isinstance(value, float) and value > 0, (section, name, value)
    for section in ("image", "video"):  # the rate after the first rows: 0 only if all came at once
        assert isinstance(figures[section]["ours_steady"], float) and figures[section]["ours_steady"] >= 0
    image = figures["image"]
    assert image["ideal"] == pytest.approx(1 / (1 / image["decode_only"] + 1 / image["model_only"]))
    memory = figures["memory"]
    assert memory["n"] == figures["sizes"]["images"] // 5
    # Peak PSS of a real Ray job (driver, raylet, TensorFlow actors): hundreds of MB at least.
    assert memory["peak_bytes_n"] > 200 * 2**20 and memory["peak_bytes_5n"] > 200 * 2**20
    assert len(figures["targets"]) == len(TARGETS) + 1
    assert figures["ratios"]["image"]["seed_loop"] == pytest.approx(image["ours"] / image["seed_loop"])

    # The table a user reads: every section, and a ratio column.
    for words in ("ours ÷ this", "seeds' loop", "Ray Data recipe", "tf.data", "ideal", "librosa", "model.fit",
                  "peak PSS", "targets met", "Daft (download", "read_videos", "read_audio", "Daft (audio_file"):
        assert words in done.stdout, words
    # The run cleaned up after itself: only the benchmark's media and models are kept.
    from jobs.storage.objects import list_objects

    assert not list(list_objects(figures["data"] + "out/"))


@pytest.mark.timeout(600)
def test_bench_scale_measures_every_phase_and_fits_them(mediajobs_cli, local_stack, tmp_path):
    """`mediajobs bench --scale` on two tiny sizes: both first nights score every object, every
    phase of the driver is clocked and fitted, and the runs' outputs are not kept."""
    from jobs.bench.scale import PHASES
    from jobs.storage.objects import list_objects

    figures_file = tmp_path / "scale.json"
    done = mediajobs_cli("bench", "--scale", "--sizes", "120", "--sizes", "360", "--json", str(figures_file),
                         timeout=560, env={**os.environ, "COLUMNS": "160"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    for size in ("120", "360"):
        run = figures["runs"][size]
        assert run["scored"] == int(size) and run["errors"] == 0
        assert set(run["phases"]) == set(PHASES) and run["phases"]["scoring"]["seconds"] > 0
        assert run["run_peak_rss_bytes"] > 100 * 2**20  # a real driver: Ray, pyarrow, the run
    model = figures["model"]
    assert model["bottleneck"] in PHASES and model["bottleneck"] != "scoring"
    assert set(model["fits"]) == set(PHASES) | {"serial", "total"}
    assert "first bottleneck" in done.stdout and "µs / object" in done.stdout
    assert not list(list_objects("s3://mediajobs-bench/scale-v1/out/"))
