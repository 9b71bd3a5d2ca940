"""Checks cluster/kuberay/: the RayCluster and RayJob run the pinned Ray with tf-keras, the token
secret and IRSA, and the RayJob runs `mediajobs run` on a mounted spec."""

from __future__ import annotations

import copy
import json
import re
import shlex

from support.cluster_configs import (LAUNCHER, SERVICE_ACCOUNT, TOKEN_KEY, TOKEN_SECRET, assert_is_pinned_ray,
                                     assert_parses_as, configmaps, containers, documents_of, env_of,
                                     mounted_configmap_key, pyproject, ray_cluster_specs, ray_pod_specs)


def test_kuberay_clusters_run_the_pinned_ray():
    for doc, cluster in ray_cluster_specs():
        assert doc.body["apiVersion"] == "ray.io/v1"
        assert_is_pinned_ray(cluster["rayVersion"], str(doc))


def test_kuberay_clusters_have_an_autoscaling_gpu_group():
    for doc, cluster in ray_cluster_specs():
        assert cluster["enableInTreeAutoscaling"] is True, f"{doc}: no autoscaler"
        assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
        gpu_groups = [g for g in cluster["workerGroupSpecs"]
                      if any(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
                             for c in g["template"]["spec"]["containers"])]
        assert gpu_groups, f"{doc}: no worker group with a nvidia.com/gpu limit"
        for group in gpu_groups:
            assert group["minReplicas"] == 0, f"{doc}: GPU group {group['groupName']} should scale to zero"
            assert group["maxReplicas"] > 0


def test_every_cluster_gives_job_drivers_a_group_of_their_own():
    """`mediajobs submit` asks for one mediajobs_driver (jobs/submission/submit.py): each definition has
    nodes that advertise it and run no tasks or actors, so drivers stay off the head."""
    from jobs.submission.submit import DRIVER_RESOURCE

    for doc, cluster in ray_cluster_specs():
        drivers = [g for g in cluster["workerGroupSpecs"] if DRIVER_RESOURCE in g["rayStartParams"].get("resources", "")]
        assert len(drivers) == 1, f"{doc}: no worker group advertises {DRIVER_RESOURCE}"
        params = drivers[0]["rayStartParams"]
        assert params["num-cpus"] == "0" and drivers[0]["minReplicas"] >= 1, f"{doc}: {params}"
        assert json.loads(json.loads(params["resources"]))[DRIVER_RESOURCE] >= 1
    for doc in documents_of("RayJob"):
        assert json.loads(doc.body["spec"]["entrypointResources"]) == {DRIVER_RESOURCE: 1}, f"{doc}"
        drivers = next(g for g in doc.body["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "drivers")
        pod = drivers["template"]["spec"]
        spec_path = shlex.split(doc.body["spec"]["entrypoint"])[-1]
        configmap, key = mounted_configmap_key(pod, pod["containers"][0], spec_path, f"{doc} drivers")
        assert key in configmaps().get(configmap, {}), f"{doc}: the driver cannot read {spec_path}"
    for doc in documents_of(LAUNCHER):
        types = doc.body["available_node_types"]
        drivers = [t for t in types.values() if t.get("resources", {}).get(DRIVER_RESOURCE, 0) >= 1]
        assert len(drivers) == 1 and drivers[0]["resources"]["CPU"] == 0 and drivers[0]["min_workers"] >= 1, doc
        assert sum(t.get("max_workers", 0) for t in types.values()) <= doc.body["max_workers"]


def test_ray_start_params_are_strings():
    # KubeRay's rayStartParams is a map of strings: `num-cpus: 0` (an int) is rejected.
    for doc, cluster in ray_cluster_specs():
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group in groups:
            for key, value in group["rayStartParams"].items():
                assert isinstance(value, str), f"{doc}: rayStartParams {key}: {value!r} must be quoted"


def test_every_container_uses_tf_keras_and_gets_the_token_from_the_secret():
    seen = 0
    for where, _, container in containers():
        seen += 1
        env = env_of(container)
        assert env.get("TF_USE_LEGACY_KERAS", {}).get("value") == "1", f"{where}: no TF_USE_LEGACY_KERAS=1"
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: no RAY_AUTH_MODE=token"
        token = env.get("RAY_AUTH_TOKEN", {})
        assert "value" not in token, f"{where}: RAY_AUTH_TOKEN holds a literal token"
        assert token.get("valueFrom", {}).get("secretKeyRef") == {"name": TOKEN_SECRET, "key": TOKEN_KEY}, \
            f"{where}: RAY_AUTH_TOKEN must come from Secret {TOKEN_SECRET} key {TOKEN_KEY}"
    assert seen >= 7  # head + 2 groups, twice, and the CronJob


def test_kuberay_clusters_use_the_token_secret():
    for doc, cluster in ray_cluster_specs():
        assert cluster["authOptions"] == {"mode": "token", "secretName": TOKEN_SECRET}, f"{doc}: authOptions"


def test_ray_pods_reach_s3_through_the_irsa_service_account():
    accounts = {doc.name: doc for doc in documents_of("ServiceAccount")}
    assert SERVICE_ACCOUNT in accounts
    role = accounts[SERVICE_ACCOUNT].body["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role), role
    for doc, cluster in ray_cluster_specs():
        for label, pod in ray_pod_specs(cluster):
            assert pod.get("serviceAccountName") == SERVICE_ACCOUNT, f"{doc} {label}: no IRSA service account"


def test_images_are_this_project_version():
    version = pyproject()["project"]["version"]
    for where, _, container in containers():
        assert re.fullmatch(rf"mediajobs:{re.escape(version)}(-gpu)?", container["image"]), \
            f"{where}: image {container['image']} is not mediajobs:{version}"
        gpus = int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
        assert container["image"].endswith("-gpu") == (gpus > 0), f"{where}: GPU pods need the -gpu image"


def without_volumes(cluster: dict) -> dict:
    cluster = copy.deepcopy(cluster)
    for _, pod in ray_pod_specs(cluster):
        pod.pop("volumes", None)
        for container in pod["containers"]:
            container.pop("volumeMounts", None)
    return cluster


def test_rayjob_cluster_is_the_raycluster_plus_the_specs_volume():
    (raycluster,) = documents_of("RayCluster")
    for doc in documents_of("RayJob"):
        assert without_volumes(doc.body["spec"]["rayClusterSpec"]) == without_volumes(raycluster.body["spec"]), \
            f"{doc}: rayClusterSpec drifted from {raycluster}"


def test_rayjob_entrypoint_is_mediajobs_run_on_a_mounted_spec():
    for doc in documents_of("RayJob"):
        spec = doc.body["spec"]
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec["ttlSecondsAfterFinished"] >= 0
        argv = shlex.split(spec["entrypoint"])
        spec_path = assert_parses_as(argv, "run", f"{doc} entrypoint")
        head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        configmap, key = mounted_configmap_key(head, head["containers"][0], spec_path, f"{doc} head")
        assert key in configmaps().get(configmap, {}), f"{doc}: ConfigMap {configmap} has no {key}"
