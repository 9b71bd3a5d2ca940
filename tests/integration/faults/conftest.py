"""Fixtures of the fault tier."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bucket(local_stack):
    """A bucket of the session's store for one module's outputs."""
    from jobs.storage.checks import ensure_bucket

    ensure_bucket("s3://it-crashes/")
    return "s3://it-crashes/"
