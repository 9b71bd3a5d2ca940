"""Checks cluster/image/: the Dockerfile builds on the pinned Ray, uses tf-keras and copies only what exists."""

from __future__ import annotations

import re

from packaging.specifiers import SpecifierSet
from packaging.version import Version
from support.cluster_configs import DOCKERFILE, REPO, assert_is_pinned_ray, pyproject, ray_cluster_specs


def dockerfile_base_image() -> str:
    text = DOCKERFILE.read_text()
    (from_line,) = re.findall(r"(?m)^FROM\s+(\S+)", text)
    arg = re.fullmatch(r"\$\{?(\w+)\}?", from_line)
    if not arg:
        return from_line
    default = re.search(rf"(?m)^ARG\s+{arg[1]}=(\S+)", text)
    assert default, f"Dockerfile: FROM {from_line} but ARG {arg[1]} has no default"
    return default[1]


def test_dockerfile_builds_on_the_pinned_ray_and_uses_tf_keras():
    text = DOCKERFILE.read_text()
    image = dockerfile_base_image()
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)", image)
    assert match, f"Dockerfile: unexpected base image {image}"
    ray_version, python = match[1], f"{match[2]}.{match[3]}"
    assert_is_pinned_ray(ray_version, f"Dockerfile base image {image}")
    assert Version(python) in SpecifierSet(pyproject()["project"]["requires-python"]), \
        f"Dockerfile: Python {python} is outside requires-python"
    for doc, cluster in ray_cluster_specs():  # what the manifests declare is what the image runs
        assert cluster["rayVersion"] == ray_version, f"{doc}: rayVersion {cluster['rayVersion']} != image {ray_version}"
    assert re.search(r"(?m)^ENV\s+TF_USE_LEGACY_KERAS[= ]\"?1\"?\s*$", text), "Dockerfile: no ENV TF_USE_LEGACY_KERAS=1"
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", text), "Dockerfile: the project is not pip-installed"


def test_dockerfile_copies_only_what_exists_and_never_the_whole_repo():
    for line in re.findall(r"(?m)^COPY\s+(.+)$", DOCKERFILE.read_text()):
        *sources, _destination = [part for part in line.split() if not part.startswith("--")]
        assert "." not in sources, "Dockerfile: `COPY .` would copy the 3 GB .venv and .git"
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile: COPY {source}, which is not in the repository"
