"""Fixtures both tiers use. The tiers: tests/unit/ (no stack, seconds) and tests/integration/
(the real local stack; its fixtures are in tests/integration/conftest.py). Helpers both
import live in tests/support/ (importable as `support`: this folder is on sys.path)."""

from __future__ import annotations

from typing import Callable

import pytest

from support.cli import MediaJobsCli


@pytest.fixture(scope="session")
def mediajobs_cli() -> MediaJobsCli:
    """The CLI in a child process: `mediajobs_cli("run", spec, ...)` returns the finished
    process (`returncode`, `stdout`, `stderr`); `mediajobs_cli.start(...)` a running one."""
    return MediaJobsCli()


@pytest.fixture(scope="session")
def export_test_model() -> Callable:
    """`export_test_model(output_uri, task=..., architecture=..., ...)`: a seeded, untrained
    model exported through the train job's own export (`support.models.export_untrained_model`)."""
    from support.models import export_untrained_model

    return export_untrained_model
