"""`mediajobs bench --scale` without a stack: the fits, the extrapolation and the bottleneck
on made-up figures, and the clock that splits a run into phases (on a stand-in listing:
the timing is what is tested, and a real one needs the store)."""

from __future__ import annotations

import time

import pytest

from jobs.bench.scale import PHASES, LinearFit, fit_line, model_from_runs


def _runs(per_object_us: dict[str, float], fixed: dict[str, float], rss_mib: dict[int, float],
          sizes: tuple[int, ...] = (10_000, 100_000)) -> dict[int, dict]:
    """Runs whose phases follow `fixed + per_object * N` exactly (other phases: 0 s)."""
    runs = {}
    for n in sizes:
        phases = {p: {"seconds": fixed.get(p, 0.0) + per_object_us.get(p, 0.0) * 1e-6 * n} for p in PHASES}
        runs[n] = {"phases": phases, "seconds": sum(v["seconds"] for v in phases.values()),
                   "run_peak_rss_bytes": int(rss_mib[n] * 2 ** 20)}
    return runs


def test_fit_line_recovers_fixed_and_per_object_from_two_sizes():
    line = fit_line({10_000: 3.0, 100_000: 12.0})
    assert line.fixed == pytest.approx(2.0)
    assert line.per_object == pytest.approx(1e-4)
    assert line.at(10_000_000) == pytest.approx(1002.0)


def test_fit_line_is_least_squares_over_more_sizes():
    line = fit_line({0: 1.0, 10: 2.0, 20: 4.0})  # best line: 0.833 + 0.15 N
    assert line.per_object == pytest.approx(0.15)
    assert line.fixed == pytest.approx(5 / 6)


def test_a_falling_phase_is_held_at_its_largest_value():
    line = fit_line({10_000: 5.0, 100_000: 4.2})  # noise in a phase that does not grow
    assert line == LinearFit(5.0, 0.0)
    assert line.at(10_000_000) == 5.0


def test_extrapolation_never_goes_below_zero():
    assert LinearFit(-3.0, 1e-4).at(10_000) == 0.0
    assert LinearFit(-3.0, 1e-4).at(100_000) == pytest.approx(7.0)


def test_fit_line_needs_two_sizes():
    with pytest.raises(ValueError, match="two sizes or more"):
        fit_line({10_000: 1.0})


def test_bottleneck_is_the_serial_phase_largest_at_the_biggest_target_not_the_largest_now():
    # At 10k `start` (a fixed 20 s) dwarfs the ledger (1 s); at 10M the ledger's 100 µs an
    # object (1,000 s) wins. Scoring is the largest of all but is not serial.
    runs = _runs({"ledger": 100, "listing": 30, "commit": 60, "scoring": 2000}, {"start": 20, "scoring": 30},
                 {10_000: 300, 100_000: 390})
    model = model_from_runs(runs)
    assert model["bottleneck"] == "ledger"
    assert model["fits"]["ledger"]["per_object_us"] == pytest.approx(100)
    assert model["fits"]["ledger"]["at"]["10000000"] == pytest.approx(1000.0)
    assert model["fits"]["start"]["fixed_s"] == pytest.approx(20)
    assert model["fits"]["serial"]["per_object_us"] == pytest.approx(190)
    assert model["bottleneck_share_of_serial"]["10000000"] == pytest.approx(1000 / (20 + 1900), abs=1e-3)


def test_serial_phases_never_exceed_scoring_when_scoring_costs_more_per_object():
    runs = _runs({"ledger": 100, "listing": 30, "scoring": 2000}, {"start": 20, "scoring": 30},
                 {10_000: 300, 100_000: 390})
    model = model_from_runs(runs)
    assert model["serial_exceeds_scoring_at"] is None
    # scoring(10M) = 30 + 20,000 s; serial(10M) = 20 + 1,300 s
    assert model["scoring_speedup_to_driver_bound"]["10000000"] == pytest.approx(20_030 / 1_320, abs=0.05)


def test_the_size_where_the_serial_phases_overtake_scoring():
    # serial = 5 s + 400 µs N, scoring = 45 s + 300 µs N: equal at 400,000 objects.
    runs = _runs({"ledger": 250, "commit": 150, "scoring": 300}, {"start": 5, "scoring": 45},
                 {10_000: 300, 100_000: 390})
    model = model_from_runs(runs)
    crossing = model["serial_exceeds_scoring_at"]
    assert crossing == pytest.approx(400_000, abs=1)
    fits = model["fits"]
    below, above = crossing - 1000, crossing + 1000
    for n, serial_wins in ((below, False), (above, True)):
        serial = fits["serial"]["fixed_s"] + fits["serial"]["per_object_us"] * 1e-6 * n
        scoring = fits["scoring"]["fixed_s"] + fits["scoring"]["per_object_us"] * 1e-6 * n
        assert (serial > scoring) is serial_wins


def test_peak_rss_is_extrapolated_linearly():
    runs = _runs({"scoring": 2000}, {}, {10_000: 300, 100_000: 390})  # 1 MiB per 1,000 objects
    rss = model_from_runs(runs, targets=(1_000_000, 10_000_000))["run_peak_rss"]
    assert rss["per_object_bytes"] == pytest.approx(2 ** 20 / 1_000, abs=0.1)
    assert rss["fixed_bytes"] / 2 ** 20 == pytest.approx(290, rel=1e-3)
    assert rss["at"]["1000000"] / 2 ** 20 == pytest.approx(300 + 990, rel=1e-3)
    assert rss["at"]["10000000"] / 2 ** 20 == pytest.approx(300 + 9_990, rel=1e-3)


def test_the_clock_times_only_the_input_listing(monkeypatch):
    import jobs.reports.figures as figures
    import jobs.reports.report as report
    import jobs.runs.nightly as nightly
    from jobs.bench.scale import clock_phases

    def slow_listing(uri, *args, **kwargs):
        for i in range(3):
            time.sleep(0.05)
            yield f"{uri}{i}"

    monkeypatch.setattr(nightly, "list_objects", slow_listing)
    for owner, name in ((nightly.Night, "decide"), (nightly.Night, "_write_pending"), (nightly.Night, "score"),
                        (nightly, "stage_night_tables"), (nightly, "write_snapshot"), (nightly, "publish_committed"),
                        (figures, "read_figures"), (report, "write_report")):
        monkeypatch.setattr(owner, name, getattr(owner, name))  # restored after the test
    spent = clock_phases("s3://archive/in/")
    assert list(nightly.list_objects("s3://archive/other/")) == [f"s3://archive/other/{i}" for i in range(3)]
    assert spent["listing"] == [0.0, 0.0]
    # Without its "/", the same prefix.
    assert list(nightly.list_objects("s3://archive/in")) == [f"s3://archive/in{i}" for i in range(3)]
    assert 0.15 <= spent["listing"][0] < 1.0
    assert spent["listing"][1] < 0.1  # sleeping costs no CPU


def test_the_command_refuses_a_single_size_before_running_anything():
    from jobs.bench.scale import run_scale_command
    from jobs.errors import UsageError

    said: list[str] = []
    with pytest.raises(UsageError, match="two sizes or more to fit a line, got 10000"):
        run_scale_command([10_000, 10_000], None, said.append, console=None)
    assert said == []
