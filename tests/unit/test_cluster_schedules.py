"""Checks cluster/schedules/: the nightly CronJob, crontab and Airflow DAG submit valid specs through
the real CLI at 02:00 UTC."""

from __future__ import annotations

import re
import shlex

import yaml
from support.cluster_configs import (CRONTAB, JOBS_API_PORT, REPO, assert_parses_as, configmaps, documents_of,
                                     local_paths, mounted_configmap_key, option_value, rel)


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


AIRFLOW_DAG = REPO / "cluster" / "schedules" / "airflow_nightly_dag.py"


def _calls(tree, name: str) -> list[dict]:
    """The keyword arguments (literals) of every call to `name` in the module."""
    import ast

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name:
            kwargs = {}
            for keyword in node.keywords:
                try:
                    kwargs[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:  # a non-literal (datetime, k8s models, a name): kept as source
                    kwargs[keyword.arg] = ast.unparse(keyword.value)
            found.append(kwargs)
    return found


def test_the_airflow_dag_submits_the_nightly_spec_once_a_night_and_skips_on_exit_3():
    """Airflow itself is not installed here: the DAG file is read as Python source, its
    command line is parsed by the real CLI with a rendered `{{ ds }}`."""
    import ast

    tree = ast.parse(AIRFLOW_DAG.read_text())
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    (dag,) = _calls(tree, "DAG")
    assert dag["schedule"] == "0 2 * * *" and dag["catchup"] is False and dag["max_active_runs"] == 1
    (pod,) = _calls(tree, "KubernetesPodOperator")
    assert constants[pod["skip_on_exit_code"]] == 3  # mediajobs' "already submitted / output held"
    argv = [*pod["cmds"], *pod["arguments"]]
    assert argv[argv.index("--run-date") + 1] == "{{ ds }}"
    rendered = [arg.replace("{{ ds }}", "2026-12-06") for arg in argv]
    where = f"{rel(AIRFLOW_DAG)} command"
    spec_path = assert_parses_as(rendered, "submit", where)
    assert "--wait" in argv and "--force" not in argv
    (raycluster,) = documents_of("RayCluster")
    assert option_value(argv, "--address") == f"http://{raycluster.name}-head-svc:{JOBS_API_PORT}"
    # The spec is the ConfigMap's, mounted where the command reads it; the token from the Secret.
    assert spec_path == "/specs/nightly-score.yaml" and "nightly-score.yaml" in configmaps()["mediajobs-specs"]
    assert "mount_path='/specs'" in pod["volume_mounts"] and "name='mediajobs-specs'" in pod["volumes"]
    assert "secret_key_ref=k8s.V1SecretKeySelector(name='mediajobs-ray-token', key='auth_token')" in pod["env_vars"]
