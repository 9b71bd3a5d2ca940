"""The unit tier: no Ray cluster, no object store server; each module runs in seconds.

A unit test that needs the store belongs in tests/integration/ (the `local_stack` fixture
is not defined here, so asking for it fails at setup)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def write_spec(tmp_path, monkeypatch):
    """Write a spec under ./specs/ and return its relative name, as a user would type it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()

    def write(data, name: str = "train.yaml") -> str:
        path = Path("specs") / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return write


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where each example's spec is written; module-scoped, as hypothesis reruns the test body."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FORCE_COLOR", raising=False)  # rich would add colour codes to the messages
        yield tmp_path_factory.mktemp("fuzz") / "fuzzed-spec.yaml"
