"""Runs: the one lifecycle every job that writes result tables goes through (start, commit,
finish), the output check that comes first, and the runners of each job kind (train, score,
generate, stylize, nightly) built on it. `dispatch.run_spec` picks the runner for a spec."""
