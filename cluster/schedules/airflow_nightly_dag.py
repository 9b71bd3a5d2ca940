"""Nightly scoring from Apache Airflow: the same submission as nightly-cronjob.yaml, as a DAG.

Copy this file into the DAGs folder of an Airflow 2.7+ deployment with
`apache-airflow-providers-cncf-kubernetes` 7.0+, running in (or allowed into) the namespace of
cluster/kuberay/raycluster.yaml, after the specs ConfigMap and the token Secret exist:
    kubectl apply -f cluster/kuberay/rayjob.yaml -l app.kubernetes.io/component=job-specs

What the settings are for:
- `--run-date {{ ds }}`: the run date is the run's logical date, not the clock's, so a retry,
  a clear-and-rerun or a late start submits the same date and gets the same submission id
  (<spec name>-<run date>-<spec hash>): one job per night, whatever Airflow does.
- exit 3 is "already submitted" (that night's job exists: a retry after the submission) or
  "another run holds the output" (a run still going): nothing to do, so the task is
  skipped, not failed (`skip_on_exit_code`). Exit 1 (the job failed) and 2 (a bad spec)
  fail the task; 1 is retried, after which the run resumes what the failed attempt staged.
- `catchup=False`: an incremental night scores the archive as it is when it runs, whatever
  its date says; replaying missed nights would score today's archive under old dates, one
  after another, for nothing. The next night picks up everything new.
- `max_active_runs=1`: nights commit in date order to one output; a second run at once
  would only be refused by the output's lease (exit 3, skipped), so do not start it.
- `--wait`: the task follows the job and ends with its outcome (0 succeeded, 1 failed).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

ALREADY_DONE = 3  # mediajobs' exit code: already submitted, or the output is held by another run

with DAG(
    dag_id="mediajobs_nightly_score",
    description="Incremental scoring of the media archive (mediajobs submit --wait)",
    schedule="0 2 * * *",  # 02:00 UTC, as the CronJob
    start_date=datetime(2026, 12, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["mediajobs"],
) as dag:
    KubernetesPodOperator(
        task_id="submit_and_follow",
        name="mediajobs-nightly-score",
        image="mediajobs:0.1.0",
        cmds=["mediajobs"],
        arguments=["submit", "/specs/nightly-score.yaml", "--address", "http://mediajobs-head-svc:8265",
                   "--wait", "--run-date", "{{ ds }}"],
        skip_on_exit_code=ALREADY_DONE,
        env_vars=[
            k8s.V1EnvVar(name="TF_USE_LEGACY_KERAS", value="1"),
            k8s.V1EnvVar(name="AWS_REGION", value="us-west-2"),  # travels with the job; not a secret
            k8s.V1EnvVar(name="RAY_AUTH_MODE", value="token"),
            k8s.V1EnvVar(name="RAY_AUTH_TOKEN", value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name="mediajobs-ray-token", key="auth_token"))),
        ],
        volumes=[k8s.V1Volume(name="job-specs", config_map=k8s.V1ConfigMapVolumeSource(name="mediajobs-specs"))],
        volume_mounts=[k8s.V1VolumeMount(name="job-specs", mount_path="/specs", read_only=True)],
        # After 6 h the task stops following; the Ray job keeps running (`mediajobs status`).
        execution_timeout=timedelta(hours=6),
        get_logs=True,
        on_finish_action="delete_pod",
    )
