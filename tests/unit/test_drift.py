"""Drift across nights (jobs.nightly.drift): the PSI, tonight against pooled trailing nights,
the spec's drift section, and the morning report's view across nights."""

from __future__ import annotations

import pytest

from jobs.nightly.drift import SCORE_BINS, largest_psi, night_drift, psi


def _night(date: str, mix: dict[str, int], bins: list[int] | None = None) -> dict:
    return {"run_date": date, "class_mix": {"image": mix}, "score_bins": {"image": bins or [1] * SCORE_BINS},
            "counts": {"image": {"predicted": sum(mix.values()), "errors": 1}}, "error_rate": 0.01,
            "objects_per_s": 50.0}


def test_the_psi_of_a_distribution_with_itself_is_zero_and_grows_with_the_shift():
    even = {"cat": 100, "dog": 100, "bird": 100}
    assert psi(even, even) == 0.0
    assert psi({"cat": 50, "dog": 50, "bird": 50}, even) == pytest.approx(0.0)  # counts, not shares
    slight = psi({"cat": 110, "dog": 95, "bird": 95}, even)
    strong = psi({"cat": 280, "dog": 10, "bird": 10}, even)
    assert 0 < slight < 0.1 < 0.25 < strong


def test_a_class_that_appears_from_nowhere_counts_heavily_not_infinitely():
    value = psi({"cat": 50, "dog": 50, "zebra": 50}, {"cat": 100, "dog": 100})
    assert 0.25 < value < 10


def test_tonight_is_compared_with_the_trailing_nights_pooled():
    trailing = [_night("2026-11-20", {"cat": 60, "dog": 40}), _night("2026-11-21", {"cat": 40, "dog": 60})]
    same = night_drift({"image": {"cat": 50, "dog": 50}}, {"image": [1] * SCORE_BINS}, trailing, 0.25)
    assert same["nights"] == ["2026-11-20", "2026-11-21"] and not same["exceeded"]
    assert same["modalities"]["image"]["class_mix"] == pytest.approx(0.0, abs=1e-9)
    shifted = night_drift({"image": {"cat": 95, "dog": 5}}, {"image": [1] * SCORE_BINS}, trailing, 0.25)
    assert shifted["exceeded"] and largest_psi(shifted) == shifted["modalities"]["image"]["class_mix"] > 0.25
    confident = [0] * (SCORE_BINS - 1) + [50]  # every score in the top bin: the model grew sure of itself
    scores = night_drift({"image": {"cat": 50, "dog": 50}}, {"image": confident}, trailing, 0.25)
    assert scores["exceeded"] and scores["modalities"]["image"]["scores"] > 0.25


def test_a_first_night_or_a_new_modality_has_nothing_to_drift_from():
    assert night_drift({"image": {"cat": 5}}, {}, [], 0.25) == {"max_psi": 0.25, "nights": [], "modalities": {},
                                                                 "exceeded": False}
    older = {"run_date": "2026-11-19", "counts": {}}  # a summary from before drift was measured
    video_only = night_drift({"video": {"ball": 5}}, {}, [older, _night("2026-11-20", {"cat": 3})], 0.25)
    assert video_only["nights"] == ["2026-11-20"] and video_only["modalities"] == {}


def test_the_spec_takes_a_drift_section_only_with_incremental_runs():
    from jobs.errors import SpecError
    from jobs.spec.load import parse_spec

    base = {"version": 1, "kind": "score", "name": "n", "task": "image-classifier", "model": "s3://m/x/",
            "input": "s3://in/", "output": "s3://out/"}
    spec = parse_spec({**base, "incremental": True}, "nightly.yaml")
    assert spec.drift is None and (spec.drift_settings.max_psi, spec.drift_settings.nights) == (0.25, 7)
    assert parse_spec({**base, "incremental": True, "drift": {"max_psi": 0.1}}, "n.yaml").drift.max_psi == 0.1
    with pytest.raises(SpecError, match=r"drift: drift is measured between the nights of an incremental run; "
                                        r"add incremental: true or delete drift"):
        parse_spec({**base, "drift": {"max_psi": 0.1}}, "plain.yaml")


def test_the_report_shows_the_nights_before_and_marks_drift():
    from jobs.reports.report import render_report

    trailing = [_night("2026-11-20", {"cat": 60, "dog": 40}), _night("2026-11-21", {"cat": 55, "dog": 45})]
    tonight = {**_night("2026-11-22", {"cat": 95, "dog": 5}), "run_id": "r3", "spec_name": "nightly"}
    tonight["drift"] = night_drift(tonight["class_mix"], tonight["score_bins"], trailing, 0.25)
    page = render_report(tonight, {}, [], trailing)
    assert '<span class="badge exceeded">DRIFT</span>' in page
    across = page[page.index('id="across-nights"'):page.index('id="counts"')]
    assert all(date in across for date in ("2026-11-20", "2026-11-21", "2026-11-22"))
    assert "cat 95%, dog 5%" in across and "cat 60%, dog 40%" in across
    assert "<td>DRIFT</td>" in across and across.count('<img src="data:image/png;base64,') == 1  # the trend chart

    stable = {**tonight, "drift": night_drift({"image": {"cat": 58, "dog": 42}}, tonight["score_bins"], trailing,
                                              0.25)}
    assert '<span class="badge ok">stable</span>' in render_report(stable, {}, [], trailing)
    first = render_report({**tonight, "drift": night_drift({"image": {"cat": 1}}, {}, [], 0.25)}, {}, [], [])
    assert "no earlier night to compare with" in first and "the first night: nothing to compare" in first
