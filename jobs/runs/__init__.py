"""Runs: the one lifecycle every job that writes result tables goes through (start, commit,
finish), the output check that comes first, and the output's lease that fences commits."""

from jobs.runs.lifecycle import STAGING, Run, RunFencedError, TableWrite, new_run_id

__all__ = ["STAGING", "Run", "RunFencedError", "TableWrite", "new_run_id"]
