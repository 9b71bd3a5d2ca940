"""`mediajobs bench`: the smoke run emits every figure (speeds are not asserted here: they are
measured by the benchmark itself, on a quiet machine), and the ratios and targets are
computed from the figures as docs/performance.md says."""

from __future__ import annotations

from jobs.bench import check_targets, ratios


def test_pace_separates_start_up_from_the_rate_after_it():
    from jobs.runs.score import pace

    records = [{"rows": 256, "staged_at": 105.0}, {"rows": 256, "staged_at": 106.0},
               {"rows": 128, "staged_at": 107.0}]
    assert pace(records, started=100.0) == (5.0, (256 + 128) / 2.0)
    assert pace(records[:1], started=100.0) == (5.0, 0.0)
    assert pace([], started=100.0) == (0.0, 0.0)


def test_ratios_and_targets_from_figures():
    figures = {"image": {"ours": 800.0, "seed_loop": 8.0, "ray_data_plain": 400.0, "tf_data": 1000.0,
                         "decode_only": 1000.0, "model_only": 10000.0, "ideal": 900.0, "daft": 700.0,
                         "in_process_decode_steady": 600.0},
               "video": {"ours": 95.0, "decode_only": 100.0, "ray_read_videos": 50.0},
               "audio": {"ours": 60.0, "decode_mfcc": 100.0},
               "training": {"ours": 700.0, "single_process": 1000.0, "ours_end_to_end": 100.0}}
    got = ratios(figures)
    assert got["image"]["seed_loop"] == 100.0 and got["image"]["tf_data"] == 0.8
    assert "ours_end_to_end" not in got["training"]
    assert "in_process_decode_steady" not in got["image"]  # a rate after start-up: held against ideal
    checked = {(t["section"], t["versus"]): t for t in check_targets(figures, {"growth": 1.15})}
    # Issue 22 dropped the seeds' loop target (its figure is still measured and shown).
    assert ("image", "seed_loop") not in checked
    assert checked[("image", "daft")]["met"] and checked[("video", "decode_only")]["met"]  # 1.14, 0.95 >= 0.9
    assert checked[("video", "ray_read_videos")]["met"]
    assert not checked[("image", "tf_data")]["met"]  # 0.8 < 1.0
    assert not checked[("audio", "decode_mfcc")]["met"]  # 0.6 < 1.0
    assert not checked[("training", "single_process")]["met"]  # 0.7 < 0.9
    # A peer that was not measured (Daft not installed) is a missed target, and says so.
    assert checked[("audio", "daft")] == {"section": "audio", "versus": "daft", "ratio": 0.0, "at_least": 1.0,
                                          "met": False, "measured": False}
    assert not checked[("memory", "peak at N")]["met"]  # 1.15 > 1.1
