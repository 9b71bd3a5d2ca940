"""Checks cluster/: configs load, match the pins and the CLI, use tf-keras and hold no secrets."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from support.paths import ROOT as REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

CLUSTER_DIR = REPO / "cluster"
YAML_FILES = sorted({*CLUSTER_DIR.rglob("*.yaml"), *CLUSTER_DIR.rglob("*.yml")})
DOCKERFILE = CLUSTER_DIR / "image" / "Dockerfile"
CRONTAB = CLUSTER_DIR / "schedules" / "nightly.cron"
# Everything under cluster/ that is configuration rather than Python (YAML, Dockerfile, cron, shell).
CONFIG_FILES = sorted(p for p in CLUSTER_DIR.rglob("*")
                      if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)

EXPECTED_YAML = {"aws/cluster.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml",
                 "schedules/nightly-cronjob.yaml"}
LAUNCHER = "ray cluster-launcher config"  # `ray up` files have no `kind`: this names them here
CHECKED_KINDS = {LAUNCHER, "RayCluster", "RayJob", "ConfigMap", "ServiceAccount", "CronJob"}

TOKEN_SECRET = "mediajobs-ray-token"
TOKEN_KEY = "auth_token"  # KubeRay's key for authOptions.secretName
SERVICE_ACCOUNT = "mediajobs"
JOBS_API_PORT = 8265


def rel(path: Path) -> str:
    return path.relative_to(CLUSTER_DIR).as_posix()


# --- what the project pins ----------------------------------------------------------------

@functools.cache
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@functools.cache
def ray_requirement() -> Requirement:
    reqs = [Requirement(line) for line in pyproject()["project"]["dependencies"]]
    (ray,) = [r for r in reqs if r.name == "ray"]
    return ray


def pinned_ray_minor() -> str:
    """"2.60" from `ray[...]>=2.60,<2.61`."""
    (lower,) = [s.version for s in ray_requirement().specifier if s.operator == ">="]
    major, minor = Version(lower).release[:2]
    return f"{major}.{minor}"


def assert_is_pinned_ray(version: str, where: str) -> None:
    assert version.startswith(pinned_ray_minor() + "."), \
        f"{where}: Ray {version}, but pyproject.toml pins {ray_requirement()}"
    assert Version(version) in ray_requirement().specifier, f"{where}: Ray {version} is outside {ray_requirement()}"


# --- documents ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Doc:
    path: Path
    body: dict

    @property
    def kind(self) -> str:
        if "kind" in self.body:
            return self.body["kind"]
        if "cluster_name" in self.body and "provider" in self.body:
            return LAUNCHER
        return "<no kind>"

    @property
    def name(self) -> str:
        return self.body.get("metadata", {}).get("name") or self.body.get("cluster_name", "?")

    def __str__(self) -> str:
        return f"{rel(self.path)}: {self.kind} {self.name}"


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def all_documents() -> tuple[Doc, ...]:
    return tuple(Doc(path, body) for path in YAML_FILES for body in load_documents(path))


def documents_of(kind: str) -> list[Doc]:
    found = [doc for doc in all_documents() if doc.kind == kind]
    assert found, f"no {kind} under cluster/"
    return found


def ray_cluster_specs() -> Iterator[tuple[Doc, dict]]:
    """The Ray cluster of every RayCluster and RayJob."""
    for doc in documents_of("RayCluster"):
        yield doc, doc.body["spec"]
    for doc in documents_of("RayJob"):
        yield doc, doc.body["spec"]["rayClusterSpec"]


def ray_pod_specs(cluster_spec: dict) -> list[tuple[str, dict]]:
    head = [("head", cluster_spec["headGroupSpec"]["template"]["spec"])]
    return head + [(f"worker group {group['groupName']}", group["template"]["spec"])
                   for group in cluster_spec.get("workerGroupSpecs", [])]


def pod_specs(doc: Doc) -> list[tuple[str, dict]]:
    """Every pod template a Kubernetes document runs, labelled for messages."""
    spec = doc.body.get("spec", {})
    if doc.kind == "RayCluster":
        return ray_pod_specs(spec)
    if doc.kind == "RayJob":
        submitter = spec.get("submitterPodTemplate")
        return ray_pod_specs(spec["rayClusterSpec"]) + ([("submitter", submitter["spec"])] if submitter else [])
    if doc.kind == "CronJob":
        return [("job", spec["jobTemplate"]["spec"]["template"]["spec"])]
    return []


def containers() -> Iterator[tuple[str, dict, dict]]:
    """(where, pod spec, container) for every container of every Kubernetes pod under cluster/."""
    for doc in all_documents():
        for label, pod in pod_specs(doc):
            for container in pod["containers"]:
                yield f"{doc} {label} container {container['name']}", pod, container


def env_of(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def configmaps() -> dict[str, dict[str, str]]:
    return {doc.name: doc.body.get("data", {}) for doc in documents_of("ConfigMap")}


def mounted_configmap_key(pod: dict, container: dict, path: str, where: str) -> tuple[str, str]:
    """The (ConfigMap, key) a file path inside the container comes from."""
    file = PurePosixPath(path)
    for mount in container.get("volumeMounts", []):
        if file.parent == PurePosixPath(mount["mountPath"]):
            (volume,) = [v for v in pod.get("volumes", []) if v["name"] == mount["name"]]
            assert "configMap" in volume, f"{where}: {path} is on volume {volume['name']}, not a ConfigMap"
            return volume["configMap"]["name"], file.name
    pytest.fail(f"{where}: nothing is mounted at {file.parent}, so {path} does not exist in the container")


# --- the real CLI -------------------------------------------------------------------------

def parse_with_cli(argv: list[str], where: str):
    """Parse `mediajobs <command> ...` with jobs.cli.app exactly as the installed script would."""
    import typer

    from jobs.cli.app import app

    assert argv[0] == "mediajobs" or argv[0].endswith("/mediajobs"), f"{where}: {argv[0]!r} is not mediajobs"
    name, args = argv[1], argv[2:]
    command = typer.main.get_command(app)
    if name not in command.commands:
        pytest.fail(f"{where} runs `mediajobs {name}`, which jobs/cli/app.py does not define "
                    f"(it has: {', '.join(sorted(command.commands))})")
    try:
        return command.commands[name].make_context(name, list(args))
    except Exception as exc:  # noqa: BLE001 - click's usage errors, as vendored by typer
        pytest.fail(f"{where}: the CLI rejects `{shlex.join(argv)}`: {exc}")


def option_value(argv: list[str], option: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def assert_parses_as(argv: list[str], command: str, where: str) -> str:
    """Check argv is `mediajobs <command> SPEC ...` that the CLI accepts; return SPEC."""
    assert argv[1:2] == [command], f"{where}: expected `mediajobs {command} ...`, got `{shlex.join(argv)}`"
    context = parse_with_cli(argv, where)
    spec = argv[2]
    assert spec.endswith(".yaml"), f"{where}: the first argument should be the spec file, got {spec!r}"
    assert spec in [str(value) for value in context.params.values()], \
        f"{where}: the CLI did not take {spec!r} as the spec ({context.params})"
    return spec


def local_paths(spec: Any) -> list[str]:
    """Strings in a spec that look like paths or URIs but are not s3:// (a cluster cannot read them)."""
    if isinstance(spec, dict):
        return [p for value in spec.values() for p in local_paths(value)]
    if isinstance(spec, list):
        return [p for value in spec for p in local_paths(value)]
    if isinstance(spec, str) and "/" in spec and not spec.startswith("s3://"):
        return [spec]
    return []


# --- the files and their kinds ------------------------------------------------------------

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
        if doc.kind != LAUNCHER:
            assert body.get("apiVersion"), f"{doc}: no apiVersion"
            assert body.get("metadata", {}).get("name"), f"{doc}: no metadata.name"


def test_pyproject_pins_one_ray_minor():
    minor = pinned_ray_minor()
    assert Version(minor + ".0") in ray_requirement().specifier
    next_minor = f"{minor.split('.')[0]}.{int(minor.split('.')[1]) + 1}.0"
    assert Version(next_minor) not in ray_requirement().specifier, f"{ray_requirement()} allows more than {minor}.x"


# --- ray up (AWS) -------------------------------------------------------------------------

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


# --- KubeRay ------------------------------------------------------------------------------

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


# --- the nightly schedule -----------------------------------------------------------------

def test_cronjob_submits_the_nightly_spec_to_the_raycluster_head_at_2_utc():
    (raycluster,) = documents_of("RayCluster")
    for doc in documents_of("CronJob"):
        cron = doc.body["spec"]
        assert doc.body["apiVersion"] == "batch/v1"
        assert cron["schedule"] == "0 2 * * *"
        assert cron["timeZone"] == "Etc/UTC"
        assert cron["concurrencyPolicy"] == "Forbid"
        assert cron["startingDeadlineSeconds"] > 0
        assert cron["jobTemplate"]["spec"]["backoffLimit"] >= 0
        pod = cron["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        argv = container.get("command", []) + container.get("args", [])
        where = f"{doc} command"
        spec_path = assert_parses_as(argv, "submit", where)
        assert option_value(argv, "--address") == f"http://{raycluster.name}-head-svc:{JOBS_API_PORT}", \
            f"{where}: not the head Service KubeRay creates for {raycluster}"
        assert "--wait" in argv, f"{where}: without --wait the CronJob cannot report the job's outcome"
        assert "--force" not in argv, f"{where}: --force defeats the idempotent submission id"
        configmap, key = mounted_configmap_key(pod, container, spec_path, where)
        assert key in configmaps().get(configmap, {}), f"{where}: ConfigMap {configmap} has no {key}"


def test_configmap_specs_are_valid_mediajobs_specs_with_s3_uris():
    from jobs.spec.load import parse_spec

    checked = []
    for doc in documents_of("ConfigMap"):
        for key, text in doc.body.get("data", {}).items():
            if key.endswith(".yaml"):
                source = f"{rel(doc.path)}:{doc.name}/{key}"
                data = yaml.safe_load(text)
                spec = parse_spec(data, source)
                assert not local_paths(data), f"{source}: a job on the cluster cannot read {local_paths(data)}"
                checked.append((key, spec.kind))
    assert ("train.yaml", "train") in checked and ("nightly-score.yaml", "score") in checked, checked


def crontab_entries() -> tuple[dict[str, str], list[str]]:
    """The crontab's variable settings and its schedule lines."""
    settings, schedules = {}, []
    for line in CRONTAB.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            name, value = line.split("=", 1)
            settings[name.strip()] = value.strip()
        else:
            schedules.append(line)
    return settings, schedules


def test_crontab_submits_a_repo_spec_daily_at_2_utc():
    from jobs.spec.load import load_spec

    settings, schedules = crontab_entries()
    assert settings.get("CRON_TZ") == "UTC"
    assert len(schedules) == 1, schedules
    fields = schedules[0].split(None, 5)
    assert fields[:5] == ["0", "2", "*", "*", "*"], fields
    steps = " ".join(shlex.split(fields[5])).split(" && ")
    assert steps[0] == "cd /opt/mediajobs", f"the command must run in the checkout: {steps}"
    argv = shlex.split(steps[-1])
    argv = argv[:next((i for i, a in enumerate(argv) if a.startswith((">", "2>"))), len(argv))]
    assert argv[0] == ".venv/bin/mediajobs", argv
    where = f"{rel(CRONTAB)} command"
    spec_path = assert_parses_as(argv, "submit", where)
    assert option_value(argv, "--address") == f"http://127.0.0.1:{JOBS_API_PORT}"
    assert "--wait" in argv and "--force" not in argv
    assert (REPO / spec_path).is_file(), f"{where}: {spec_path} is not in the repository"
    spec = load_spec(REPO / spec_path)
    assert not local_paths(yaml.safe_load((REPO / spec_path).read_text())), f"{spec_path}: submit needs s3:// URIs"
    assert spec.kind == "score"


# --- the image ----------------------------------------------------------------------------

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


# --- no secrets ---------------------------------------------------------------------------

SECRET_PATTERNS = {
    "an AWS secret key setting": r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{8,}",
    "an AWS access key id": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "a 40-character secret": r"(?i)secret\w*[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    "a literal Ray token": r"\bRAY_AUTH_TOKEN\s*[:=]\s*[\"']?[A-Za-z0-9_\-.]{8,}",
    "a Ray token in a Dockerfile ENV": r"(?m)^\s*ENV\s+RAY_AUTH_TOKEN\b",
    "a literal Secret value": r"--from-literal=[\w.-]+=[\"']?[A-Za-z0-9_\-/+=]{8,}",
    "a private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "credentials in a URL": r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@",
}


def find_secrets(text: str) -> list[str]:
    return [what for what, pattern in SECRET_PATTERNS.items() if re.search(pattern, text)]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=rel)
def test_no_config_file_under_cluster_holds_a_secret(path: Path):
    assert not find_secrets(path.read_text()), f"{rel(path)} seems to hold {find_secrets(path.read_text())}"


@pytest.mark.parametrize("leak", [
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "- name: AWS_ACCESS_KEY_ID\n  value: AKIAIOSFODNN7EXAMPLE",
    "secretKey: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "export RAY_AUTH_TOKEN=3f2c9a7e1b5d4c8f9a0e",
    "RAY_AUTH_TOKEN: '3f2c9a7e1b5d4c8f9a0e'",
    "ENV RAY_AUTH_TOKEN=x",
    "kubectl create secret generic t --from-literal=auth_token=3f2c9a7e1b5d4c8f",
    "-----BEGIN RSA PRIVATE KEY-----",
    "endpoint: http://admin:hunter22@s3.local:8333",
])
def test_the_secret_scanner_catches_leaks(leak: str):
    assert find_secrets(leak)


@pytest.mark.parametrize("clean", [
    "- name: RAY_AUTH_TOKEN\n  valueFrom:\n    secretKeyRef: {name: mediajobs-ray-token, key: auth_token}",
    "authOptions: {mode: token, secretName: mediajobs-ray-token}",
    "RAY_AUTH_TOKEN_PATH=/home/mediajobs/.ray/auth_token",
    'export RAY_AUTH_TOKEN="$(cat ~/.ray/auth_token)"',
    "kubectl create secret generic mediajobs-ray-token --from-file=auth_token=$HOME/.ray/auth_token",
    "IamInstanceProfile: {Arn: arn:aws:iam::123456789012:instance-profile/mediajobs-s3}",
    "--address http://mediajobs-head-svc:8265",
])
def test_the_secret_scanner_passes_references_to_secrets(clean: str):
    assert not find_secrets(clean)


def test_no_kubernetes_secret_or_aws_key_is_committed():
    assert not [str(doc) for doc in all_documents() if doc.kind == "Secret"], "Secrets are created out of band"
    for where, _, container in containers():
        keys = set(env_of(container)) & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
        assert not keys, f"{where}: {sorted(keys)}; S3 access comes from IRSA"
