"""What the checks of cluster/ share (tests/unit/test_cluster_*.py): the files, the pins in
pyproject.toml, the YAML documents and their pods and containers, and the real CLI's parser."""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import pytest
import yaml
from packaging.requirements import Requirement
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
                 "schedules/nightly-cronjob.yaml", "monitoring/alert-rules.yaml", "monitoring/prometheusrule.yaml",
                 "monitoring/podmonitor.yaml"}
LAUNCHER = "ray cluster-launcher config"  # `ray up` files have no `kind`: this names them here
RULES_FILE = "Prometheus rules file"  # nor have the plain `rule_files:` files
CHECKED_KINDS = {LAUNCHER, RULES_FILE, "RayCluster", "RayJob", "ConfigMap", "ServiceAccount", "CronJob",
                 "PrometheusRule", "PodMonitor"}

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
        if set(self.body) == {"groups"}:
            return RULES_FILE
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
