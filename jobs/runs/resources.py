"""A spec's `resources` section as Ray's own resource requests.

Training maps to Ray Train's `ScalingConfig` (one worker per MWMS replica); scoring,
generation and stylization map to the options of their Ray Data actor pool. On GPU
workers TensorFlow's memory growth is enabled by the worker code (`jobs.runs.train`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["actor_pool_options", "scaling_config", "worker_resources"]


def worker_resources(resources) -> dict[str, float]:
    """What one Ray Train worker reserves: CPUs, and GPUs when `use_gpu`."""
    reserved: dict[str, float] = {"CPU": resources.cpus_per_worker}
    if resources.use_gpu:
        reserved["GPU"] = resources.gpus_per_worker
    return reserved


def scaling_config(resources):
    """Ray Train's `ScalingConfig` for a train spec's `resources`."""
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.use_gpu,
                         resources_per_worker=worker_resources(resources),
                         placement_strategy=resources.placement_strategy)


def actor_pool_options(resources, calls_per_actor: int = 1) -> dict[str, Any]:
    """Keyword arguments of `Dataset.map_batches` for a model actor pool.

    `concurrency` actors, each reserving `cpus_per_actor` CPUs and, with `use_gpu`,
    `num_gpus` GPUs. Ray Data spreads the actors over the cluster's nodes by default.
    `calls_per_actor` > 1 runs that many batches in each actor at once (threads): one
    batch's fetches and decoding then fill the time another spends waiting on storage.
    """
    from ray.data import ActorPoolStrategy

    compute = ActorPoolStrategy(size=resources.concurrency, max_concurrent_calls_per_actor=calls_per_actor,
                                enable_true_multi_threading=calls_per_actor > 1)
    options: dict[str, Any] = {"compute": compute, "num_cpus": resources.cpus_per_actor}
    if resources.use_gpu:
        options["num_gpus"] = resources.num_gpus
    return options
