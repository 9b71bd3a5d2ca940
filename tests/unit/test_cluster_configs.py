"""Checks cluster/: its YAML files load, each document is of a kind the checks know, and the Ray pin.

The checks per file: test_cluster_launcher.py (ray up), test_cluster_kuberay.py, test_cluster_schedules.py,
test_cluster_image.py, test_cluster_secrets.py,
test_cluster_monitoring.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version
from support.cluster_configs import (CHECKED_KINDS, EXPECTED_YAML, LAUNCHER, RULES_FILE, YAML_FILES, Doc,
                                     load_documents, pinned_ray_minor, ray_requirement, rel)


def test_cluster_dir_holds_the_expected_yaml_files():
    found = {rel(path) for path in YAML_FILES}
    assert len(found) >= 4
    assert EXPECTED_YAML <= found, f"missing under cluster/: {sorted(EXPECTED_YAML - found)}"


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_yaml_file_loads_and_every_document_is_checked(path: Path):
    documents = load_documents(path)
    assert documents, f"{rel(path)} holds no YAML document"
    for body in documents:
        assert isinstance(body, dict), f"{rel(path)}: a document is a {type(body).__name__}, not a mapping"
        doc = Doc(path, body)
        assert doc.kind in CHECKED_KINDS, \
            f"{doc}: no checks exist for this kind; add them to tests/unit/test_cluster_configs.py"
        if doc.kind not in (LAUNCHER, RULES_FILE):  # neither has apiVersion or metadata
            assert body.get("apiVersion"), f"{doc}: no apiVersion"
            assert body.get("metadata", {}).get("name"), f"{doc}: no metadata.name"


def test_pyproject_pins_one_ray_minor():
    minor = pinned_ray_minor()
    assert Version(minor + ".0") in ray_requirement().specifier
    next_minor = f"{minor.split('.')[0]}.{int(minor.split('.')[1]) + 1}.0"
    assert Version(next_minor) not in ray_requirement().specifier, f"{ray_requirement()} allows more than {minor}.x"
