"""Connecting the driver to Ray: an explicit address, the local stack's head, or in-process.

Every Ray process that may import TensorFlow gets `TF_USE_LEGACY_KERAS=1` through the
job's `runtime_env` (shared/FACTS.md: Keras 3 breaks MultiWorkerMirroredStrategy).
Secrets are never put in a runtime_env: workers read S3 credentials from their own
environment (the local stack starts Ray with them) or from standard AWS config.
"""

from __future__ import annotations

import logging
import os
import socket

from cluster.localstate import LOOPBACK_ENV, NO_USAGE_STATS_ENV, ray_client_env, read_local_stack

log = logging.getLogger(__name__)

# Environment switches every worker needs. Nothing secret goes here.
WORKER_ENV = {
    "TF_USE_LEGACY_KERAS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ start-up chatter drowns job output
}


# mediajobs settings a driver passes on to its workers when set (never secrets).
# (MEDIAJOBS_URI_SCHEMES is not among them: where a job runs, that machine's setting rules.)
FORWARDED_SETTINGS = ("MEDIAJOBS_STORE_OUTAGE_SECONDS", "MEDIAJOBS_CREATE_BUCKETS",
                      # the decode limits (jobs.workers.decoding, jobs.workers.decode_isolation, tasks.media)
                      "MEDIAJOBS_DECODE_SECONDS", "MEDIAJOBS_DECODE_MEMORY_BYTES", "MEDIAJOBS_DECODE_ISOLATION",
                      "MEDIAJOBS_FETCH_BUDGET_BYTES", "MEDIAJOBS_MAX_PIXELS", "MEDIAJOBS_DECODE_FAULTS",
                      # where a nightly driver pushes its figures (jobs.runs.run_metrics); a URL, no secret
                      "MEDIAJOBS_PUSHGATEWAY")


def forwarded_settings() -> dict[str, str]:
    return {name: os.environ[name] for name in FORWARDED_SETTINGS if name in os.environ}


# Set by Ray's job supervisor in the driver of a job submitted through the Jobs API.
SUBMITTED_JOB_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def _reachable(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _use_local_stack_auth(stack) -> None:
    """Point Ray's client auth at the local stack's token (see cluster.localstate.ray_client_env)."""
    import sys

    client_env = ray_client_env(stack)
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would override the stack's token file
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        os.environ[name] = client_env[name]
    if stack.loopback_only:
        _stay_on_loopback()
    _without_usage_stats()
    if "ray" in sys.modules:
        # Ray reads its auth settings at import; a process that imported it already must
        # reload them, as Ray's own auto-enable does.
        import ray._raylet

        ray._raylet.Config.initialize("")  # type: ignore[attr-defined]  # missing from ray's _raylet.pyi


def _stay_on_loopback() -> None:
    """Make this process's Ray call 127.0.0.1 its own address (and bind a Ray it starts there).

    A driver must report the address its node was started with, or it finds no raylet:
    the local stack's head runs on 127.0.0.1 only (cluster._ray_head).
    """
    import sys

    os.environ.update(LOOPBACK_ENV)
    if "ray" in sys.modules:  # Ray read the switch at import: set the value it read
        import ray._private.ray_constants as ray_constants  # noqa: PLC2701 - where Ray keeps the value it read

        ray_constants.ENABLE_RAY_CLUSTER = False


def _without_usage_stats() -> None:
    """A cluster of our own (the local stack's head, an in-process Ray) collects no usage
    stats: tell this driver, unless the user chose otherwise (NO_USAGE_STATS_ENV)."""
    for name, value in NO_USAGE_STATS_ENV.items():
        os.environ.setdefault(name, value)


def _show_data_progress() -> None:
    """Ray Data progress as rich bars (rows, throughput, ETA) on a terminal; logged lines otherwise."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_rich_progress_bars = True
    context.use_ray_tqdm = False


def connect_ray(address: str | None = None) -> str:
    """Initialise Ray for this driver and say where it runs.

    Order: `address` argument, then `RAY_ADDRESS`, then the local stack's head when it
    is up, else an in-process Ray on this machine.

    Returns:
        A short description of the cluster, for the user.
    """
    runtime_env: dict[str, dict[str, str]] | None = {"env_vars": {**WORKER_ENV, **forwarded_settings()}}
    if os.environ.get(SUBMITTED_JOB_VARIABLE):
        # A submitted job (`mediajobs submit`): its runtime_env already carries WORKER_ENV,
        # and Ray refuses a driver runtime_env that sets the same variables again.
        runtime_env = None
    address = address or os.environ.get("RAY_ADDRESS")
    stack = read_local_stack()
    if not address and stack is not None and _reachable(stack.ray_address):
        address = stack.ray_address
    if stack is not None and address == stack.ray_address:
        _use_local_stack_auth(stack)

    import ray

    if ray.is_initialized():
        return "ray (already initialised)"
    _show_data_progress()
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True,
                 logging_level=logging.WARNING)
        return f"ray cluster at {address}"
    _stay_on_loopback()  # a Ray of this process alone has no business on other interfaces
    _without_usage_stats()
    ray.init(runtime_env=runtime_env, include_dashboard=False, logging_level=logging.WARNING)
    return "in-process ray (no cluster found; `mediajobs local up` starts one)"
