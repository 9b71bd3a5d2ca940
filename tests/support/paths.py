"""Where the repository's files are, for tests at any depth under tests/."""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
EXAMPLES = ROOT / "jobs" / "examples"


def python_path() -> str:
    """PYTHONPATH for a child Python: this checkout's `jobs` and `tasks` (not whatever an
    editable install points at) and tests/ (for `support`)."""
    return os.pathsep.join([str(ROOT), str(TESTS)])
