"""Checks cluster/aws/: the `ray up` config against Ray's own schema, the pins, tf-keras and token auth."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Iterator

from support.cluster_configs import CLUSTER_DIR, LAUNCHER, Doc, assert_is_pinned_ray, documents_of


def launcher_node_types() -> Iterator[tuple[Doc, str, dict]]:
    for doc in documents_of(LAUNCHER):
        for name, node_type in doc.body["available_node_types"].items():
            yield doc, name, node_type


def test_launcher_config_is_accepted_by_rays_own_schema():
    import jsonschema

    ray_dir = Path(importlib.util.find_spec("ray").submodule_search_locations[0])  # without importing ray
    schema = json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text())
    for doc in documents_of(LAUNCHER):
        jsonschema.validate(doc.body, schema)


def _scheduled_aws_regions() -> set[str]:
    """The AWS_REGION values the nightly CronJob gives its submissions."""
    import yaml

    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("name") == "AWS_REGION" and "value" in node:
                found.add(node["value"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for doc in yaml.safe_load_all((CLUSTER_DIR / "schedules" / "nightly-cronjob.yaml").read_text()):
        walk(doc)
    return found


def test_launcher_config_targets_aws_with_an_autoscaling_gpu_group():
    for doc in documents_of(LAUNCHER):
        config = doc.body
        assert config["cluster_name"] == "mediajobs"
        assert config["provider"]["type"] == "aws"
        region = config["provider"]["region"]  # the cluster's, and the one its jobs are told to use:
        zones = config["provider"]["availability_zone"].split(",")
        assert region and zones and all(zone.strip().startswith(region) for zone in zones), (region, zones)
        assert _scheduled_aws_regions() == {region}
        assert config["auth"]["ssh_user"] == "ubuntu"
        node_types = config["available_node_types"]
        assert config["head_node_type"] in node_types, f"{doc}: head_node_type is not a node type"
        gpu_types = {name: t for name, t in node_types.items() if t.get("resources", {}).get("GPU", 0) >= 1}
        assert gpu_types, f"{doc}: no node type offers resources GPU"
        for name, gpu in gpu_types.items():
            assert name != config["head_node_type"], f"{doc}: the head should not be a GPU node"
            assert gpu["min_workers"] == 0, f"{doc}: {name} should scale to zero"
            assert 0 < gpu["max_workers"] <= config["max_workers"], f"{doc}: {name} max_workers"


def test_every_launcher_node_reaches_s3_through_an_instance_profile():
    for doc, name, node_type in launcher_node_types():
        arn = node_type["node_config"].get("IamInstanceProfile", {}).get("Arn", "")
        assert re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/[\w+=,.@/-]+", arn), \
            f"{doc}: node type {name} has no IamInstanceProfile.Arn ({arn!r})"


def test_launcher_installs_the_project_on_every_node():
    for doc in documents_of(LAUNCHER):
        config = doc.body
        assert config["file_mounts"]["~/mediajobs"] == ".", f"{doc}: the project must be copied from the repo root"
        assert "~/.ray/auth_token" in config["file_mounts"], f"{doc}: nodes need the cluster's auth token file"
        assert ".venv" in config.get("rsync_exclude", []), f"{doc}: the 3 GB .venv would be copied to every node"
        for name, node_type in config["available_node_types"].items():
            if name == config["head_node_type"]:
                setup = config.get("setup_commands", []) + config.get("head_setup_commands", [])
            else:  # a node type's own worker_setup_commands replace the global lists
                setup = node_type.get("worker_setup_commands",
                                      config.get("setup_commands", []) + config.get("worker_setup_commands", []))
            assert any("pip install" in c and "-e ~/mediajobs" in c for c in setup), \
                f"{doc}: node type {name} never runs `pip install -e ~/mediajobs` ({setup})"


def test_launcher_start_commands_use_tf_keras_and_token_auth():
    expected = {
        "head_start_ray_commands": ["--head", "--port=6379", "--dashboard-host=0.0.0.0",
                                    "--autoscaling-config=~/ray_bootstrap_config.yaml"],
        "worker_start_ray_commands": ["--address=$RAY_HEAD_IP:6379"],
    }
    for doc in documents_of(LAUNCHER):
        for key, flags in expected.items():
            starts = [c for c in doc.body[key] if "ray start" in c]
            assert len(starts) == 1, f"{doc}: {key} should run `ray start` once"
            (start,) = starts
            # Each command runs in its own shell: the exports must be in the same command.
            assert re.search(r"\bexport\b[^;]*\bTF_USE_LEGACY_KERAS=1\b", start), f"{doc}: {key}: {start}"
            assert re.search(r"\bexport\b[^;]*\bRAY_AUTH_MODE=token\b", start), f"{doc}: {key}: {start}"
            assert start.index("TF_USE_LEGACY_KERAS=1") < start.index("ray start")
            for flag in flags:
                assert flag in shlex.split(start.replace(";", " ; ")), f"{doc}: {key} lacks {flag}"


def test_launcher_images_run_the_pinned_ray():
    for doc in documents_of(LAUNCHER):
        docker = doc.body["docker"]
        images = [docker[k] for k in ("image", "head_image", "worker_image") if k in docker]
        images += [t["docker"]["worker_image"] for t in doc.body["available_node_types"].values()
                   if "worker_image" in t.get("docker", {})]
        assert images, f"{doc}: no docker image"
        for image in images:
            match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)(-gpu)?", image)
            assert match, f"{doc}: unexpected image {image}"
            assert_is_pinned_ray(match[1], f"{doc}: {image}")
