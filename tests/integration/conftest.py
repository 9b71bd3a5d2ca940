"""The integration tier: the real embedded stack (SeaweedFS + Ray head), started once per
session by `local_stack`. Every test collected under this folder is marked `integration`,
so `-m "not integration"` selects the unit tier and `-m integration` this one."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from cluster.localstate import LocalStack

_TIER = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _TIER in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


# Settings that would point the tests at a developer's own store or cluster.
_FOREIGN_ENV_PREFIXES = ("AWS_",)
_FOREIGN_ENV_NAMES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "MEDIAJOBS_HOME")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A local stack in its own MEDIAJOBS_HOME for the whole session, stopped at the end.

    While it runs, os.environ has no AWS_* settings (so `jobs.storage.objects` resolves to this
    stack) and carries the Ray client settings of `ray_client_env` (auth mode and token
    file), so a driver in this process can `ray.init(address=stack.ray_address)` as long as
    `ray` is first imported after this fixture ran.
    """
    from cluster import local_stack as stack_module

    home = tmp_path_factory.mktemp("mediajobs-home")
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(_FOREIGN_ENV_PREFIXES) or name in _FOREIGN_ENV_NAMES:
            del os.environ[name]
    os.environ["MEDIAJOBS_HOME"] = str(home)
    # Ray Train's controller polls its workers every 2 s: a job's end (and a lost worker) is
    # seen up to 2 s late, some 40 times a session. Ray processes inherit the head's environment.
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.5"
    try:
        stack = stack_module.up(home)
        client_env = stack_module.ray_client_env(stack, home)
        os.environ.update({k: v for k, v in client_env.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")})
        yield stack
    finally:
        try:
            # A driver still connected when the head stops is ended by Ray itself
            # (exit code 1, no test summary): disconnect first.
            ray = sys.modules.get("ray")
            if ray is not None and ray.is_initialized():
                ray.shutdown()
            stack_module.down(home)
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="session")
def ray_driver(local_stack: LocalStack) -> Iterator[None]:
    """This process as a Ray driver on the session's stack (disconnected by `local_stack`)."""
    from jobs.runs.ray_runtime import connect_ray

    where = connect_ray()
    assert local_stack.ray_address in where  # the stack's head, not an in-process Ray
    yield


# --- the image classifier trained once for the session (support.shared_models) ---------------------


@pytest.fixture(scope="session")
def parity_shapes(ray_driver, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three shapes, 200 training and 100 held-out images a class, under s3://it-media/parity-shapes/."""
    from jobs.datasets.ingest import ingest_folder
    from jobs.datasets.synthetic import write_shapes_dataset

    root = tmp_path_factory.mktemp("parity-shapes")
    write_shapes_dataset(root, per_class_train=200, per_class_test=100, seed=5)
    ingest_folder(root, "s3://it-media/parity-shapes/")
    return root


@pytest.fixture(scope="session")
def shapes_two_workers(parity_shapes):
    """`shapes_spec(2)` trained on the stack (its model under s3://it-models/parity-shapes-2/): the result."""
    from jobs.runs.dispatch import run_spec
    from jobs.spec.load import parse_spec
    from support.shared_models import shapes_spec

    return run_spec(parse_spec(shapes_spec(2)))
