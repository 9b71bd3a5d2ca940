"""The console of a run: what is not ours goes to the run's log file (jobs.cli.run_log), the
lines workers mark for people are relayed, --verbose is taken from anywhere on the line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support.paths import ROOT, python_path

EXAMPLES = ROOT / "jobs" / "examples"


def test_other_voices_go_to_the_log_file_and_ours_to_the_terminal(tmp_path):
    # In a process of its own: the redirection is of file descriptors 1 and 2.
    script = textwrap.dedent(f"""
        import os, subprocess, sys
        from pathlib import Path
        from jobs.cli.run_log import RunLog

        print("before", flush=True)
        with RunLog("run", folder=Path({str(tmp_path)!r})) as log:
            print("a python print", flush=True)
            print("a warning on stderr", file=sys.stderr, flush=True)
            os.write(2, b"a C++ logger writing to fd 2\\n")
            subprocess.run(["echo", "a child process"], check=True)
            log.stdout.write("ours on stdout\\n")
            log.stderr.write("ours on stderr\\n")
            print(log.path)
        print("after", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": python_path(), "PATH": "/usr/bin:/bin", "MEDIAJOBS_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before", "ours on stdout", "after"]
    assert done.stderr.splitlines() == ["ours on stderr"]
    [log] = list(tmp_path.glob("run-*.log"))
    assert log.read_text().splitlines() == ["a python print", "a warning on stderr", "a C++ logger writing to fd 2",
                                            "a child process", str(log)]


def test_worker_lines_marked_for_people_are_relayed_and_no_others():
    from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher  # noqa: PLC2701

    from jobs.cli.run_log import relay_worker_lines
    from tasks.console import MARKER

    said: list[str] = []
    stop = relay_worker_lines(said.append)
    batch = {"lines": [MARKER + "epoch epoch=1 loss=0.9", "2026-12-07 I tensorflow: cuInit", MARKER + "sample grid: s3://x"],
             "pid": 7, "is_err": False}
    dispatcher.emit(batch)
    dispatcher.emit(batch)  # Ray forwards a Train worker's lines twice: said once
    dispatcher.emit({**batch, "lines": batch["lines"][:1], "pid": 8})  # a restarted worker: said again
    stop()
    dispatcher.emit({**batch, "pid": 9})  # stopped: nothing more
    assert said == ["epoch epoch=1 loss=0.9", "sample grid: s3://x", "epoch epoch=1 loss=0.9"]


def test_verbose_is_taken_from_anywhere_on_the_command_line(mediajobs_cli, tmp_path):
    for args in (["--verbose", "run", str(tmp_path / "missing.yaml")], ["run", str(tmp_path / "missing.yaml"), "-v"],
                 ["run", "--verbose", str(tmp_path / "missing.yaml")]):
        result = mediajobs_cli(*args)
        assert result.returncode == 2 and "Traceback" in result.stderr and "missing.yaml" in result.stderr, args
    assert "Traceback" not in mediajobs_cli("run", str(tmp_path / "missing.yaml")).stderr


def test_a_run_keeps_its_log_beside_its_summary():
    from jobs.runs.dispatch import run_folder
    from jobs.runs.score import ScoreResult
    from jobs.runs.train import TrainResult

    score = ScoreResult("20261207T000000Z-abc123", "m-1", 1, 1, 0, 1.0, "s3://b/out/predictions/", "s3://b/out/errors/",
                        "s3://b/out/runs/20261207T000000Z-abc123/summary.json")
    assert run_folder(score) == "s3://b/out/runs/20261207T000000Z-abc123/"
    train = TrainResult("s3://b/m/model/versions/demo-1/", {}, [], 1, 1, 0, 1.0, run_folder="s3://b/m/runs/demo-1/")
    assert run_folder(train) == "s3://b/m/runs/demo-1/"
    assert run_folder(object()) is None


def test_a_log_that_cannot_be_kept_is_a_note_not_a_failed_run(tmp_path, capsys):
    from jobs.cli.app import _keep_log
    from jobs.runs.train import TrainResult

    log = tmp_path / "run.log"
    log.write_text("what Ray said\n")
    kept = TrainResult("m", {}, [], 1, 1, 0, 1.0, run_folder=str(tmp_path / "out" / "runs" / "m-1") + "/")
    _keep_log(kept, log)
    assert (tmp_path / "out" / "runs" / "m-1" / "job.log").read_text() == "what Ray said\n"
    (tmp_path / "blocked").write_text("a file where the folder should be")
    _keep_log(TrainResult("m", {}, [], 1, 1, 0, 1.0, run_folder=str(tmp_path / "blocked" / "runs") + "/"), log)
    out = capsys.readouterr().out
    assert "job.log" in out and "note: the log was not kept beside the summary" in out and str(log) in out


def test_rank_0s_epoch_progress_reaches_the_live_line_not_the_terminal():
    from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher  # noqa: PLC2701

    from jobs.cli.run_log import relay_worker_lines
    from tasks.console import MARKER, progress_line

    said: list[str] = []
    reported: list[tuple] = []
    stop = relay_worker_lines(said.append, lambda *args: reported.append(args))
    dispatcher.emit({"lines": [MARKER + "epoch epoch=1 loss=0.9", MARKER + progress_line("training", 1, 4)],
                     "pid": 7, "is_err": False})
    stop()
    assert said == ["epoch epoch=1 loss=0.9"]
    assert reported == [("training", 1, 4, 0)]
