"""A spec's `resources` section mapped to Ray Train's ScalingConfig and Ray Data's actor pools."""

from __future__ import annotations

import pytest

from jobs.errors import SpecError
from jobs.runs.resources import actor_pool_options, scaling_config
from jobs.spec.load import parse_spec

TRAIN = {"version": 1, "kind": "train", "name": "t", "task": "image-classifier",
         "model": {"architecture": "cifar10-cnn"}, "data": {"train": "s3://b/train/"}, "output": "s3://b/out/"}
SCORE = {"version": 1, "kind": "score", "name": "s", "task": "image-classifier", "model": "s3://b/m/",
         "input": "s3://b/in/", "output": "s3://b/out/"}


def _train(**resources):
    return parse_spec({**TRAIN, "resources": resources}).resources


def _score(**resources):
    return parse_spec({**SCORE, "resources": resources}).resources


def test_cpu_training_reserves_cpus_only():
    config = scaling_config(_train(num_workers=3, cpus_per_worker=2))
    assert (config.num_workers, config.use_gpu) == (3, False)
    assert config.resources_per_worker == {"CPU": 2}
    assert config.placement_strategy == "PACK"


def test_gpu_training_reserves_one_gpu_per_worker_by_default_or_what_is_asked():
    default = scaling_config(_train(num_workers=4, use_gpu=True))
    assert default.use_gpu and default.resources_per_worker == {"CPU": 1, "GPU": 1.0}
    two = scaling_config(_train(num_workers=2, use_gpu=True, gpus_per_worker=2, placement_strategy="STRICT_SPREAD"))
    assert two.resources_per_worker == {"CPU": 1, "GPU": 2.0}
    assert two.placement_strategy == "STRICT_SPREAD"


def _pool(options: dict) -> tuple:
    compute = options.pop("compute")
    return compute.min_size, compute.max_size, compute.max_concurrent_calls_per_actor, options


def test_scoring_actor_pool_options():
    assert _pool(actor_pool_options(_score())) == (2, 2, 1, {"num_cpus": 1})
    assert _pool(actor_pool_options(_score(concurrency=8, use_gpu=True))) == (8, 8, 1, {"num_cpus": 1, "num_gpus": 1.0})
    assert _pool(actor_pool_options(_score(use_gpu=True, num_gpus=0.5, cpus_per_actor=4), calls_per_actor=2)) == (
        2, 2, 2, {"num_cpus": 4, "num_gpus": 0.5})


@pytest.mark.parametrize("kind, resources, message", [
    ("train", {"gpus_per_worker": 1}, r"resources: gpus_per_worker: set use_gpu: true as well"),
    ("train", {"use_gpu": True, "gpus_per_worker": 0}, r"resources: gpus_per_worker: use_gpu is true but"),
    ("train", {"placement_strategy": "spread"}, r"resources.placement_strategy: .*STRICT_SPREAD"),
    ("score", {"num_gpus": 1}, r"resources: num_gpus: set use_gpu: true as well"),
    ("score", {"use_gpu": True, "num_gpus": 0}, r"resources: num_gpus: use_gpu is true but num_gpus is 0"),
])
def test_contradictory_gpu_settings_are_refused(kind, resources, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({**(TRAIN if kind == "train" else SCORE), "resources": resources})


def test_resolved_resources_survive_the_round_trip_a_submission_makes():
    from jobs.spec.load import spec_to_dict

    for spec in (parse_spec({**TRAIN, "resources": {"use_gpu": True}}), parse_spec(SCORE)):
        assert parse_spec(spec_to_dict(spec)) == spec
