"""Ray Train's TensorFlow backend, from a module that does not import TensorFlow.

`TensorflowTrainer` sets `TF_CONFIG` on every worker through a backend config, by default
`ray.train.tensorflow.TensorflowConfig`. That class lives in `ray.train.tensorflow`, whose
package `__init__` imports TensorFlow to check it is installed, and the Train controller
unpickles the config: every train job's controller spent ~3 s of its start (2 cores)
importing TensorFlow it never uses. `MwmsConfig` does what Ray's does, with the same
pieces: the controller asks each worker for an address and a free port, then has each
worker run Ray's own `_setup_tensorflow_environment` (on the worker, where TensorFlow is
loaded anyway). Ray is pinned to 2.60.x (pyproject.toml); the private helpers used here
are that release's.
"""

from __future__ import annotations

from typing import Any

from ray.train.backend import Backend, BackendConfig


class MwmsConfig(BackendConfig):
    """`TensorflowConfig`'s behaviour (TF_CONFIG for MultiWorkerMirroredStrategy), lighter to load."""

    @property
    def backend_cls(self):
        return _MwmsBackend

    @property
    def framework(self):
        from ray.train.v2._internal.util import TrainingFramework  # noqa: PLC2701 - Ray's own enum of frameworks

        return TrainingFramework.TENSORFLOW  # Ray's run records say "tensorflow", as with its own config

    def to_dict(self) -> dict[str, Any]:
        return {}


def worker_address() -> str:
    """This worker's address and a free port on it (run on each worker)."""
    # What TensorflowConfig's backend runs on each worker (ray 2.60).
    from ray._common.network_utils import build_address  # noqa: PLC2701
    from ray.train._internal.utils import get_address_and_port  # noqa: PLC2701

    return build_address(*get_address_and_port())


def set_tf_config(worker_addresses: list[str], index: int) -> None:
    """TF_CONFIG for worker `index` of `worker_addresses`, by Ray's own function (run on each worker)."""
    from ray.train.tensorflow.config import _setup_tensorflow_environment  # noqa: PLC2701 - Ray's TF_CONFIG

    _setup_tensorflow_environment(worker_addresses, index)


class _MwmsBackend(Backend):
    def on_start(self, worker_group, backend_config: BackendConfig) -> None:
        import ray

        addresses = worker_group.execute(worker_address)
        ray.get([worker_group.execute_single_async(index, set_tf_config, worker_addresses=addresses, index=index)
                 for index in range(len(worker_group))])
