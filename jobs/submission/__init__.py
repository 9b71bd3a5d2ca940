"""Submitting jobs to a Ray cluster and following them: cluster targets, submit, job control."""
