"""tests/support/store_proxy.py, the write-counting HTTP forwarder for crash and split-brain tests:
byte-exact forwarding against a recording fake upstream, then boto3, pyarrow and delta-rs
through it to the real SeaweedFS of the session's stack, and a client process SIGKILLed
before / after, or SIGSTOPped during, its 2nd write."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.store_proxy import StoreProxy

BUCKET = "it-proxy"
MB = 1024 * 1024


# --- a recording fake upstream (no stack needed) -------------------------------------------


# --- the real store --------------------------------------------------------------------------

def _s3(local_stack, endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=local_stack.access_key,
                        aws_secret_access_key=local_stack.secret_key, region_name=local_stack.region,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                      s3={"addressing_style": "path"}))


@pytest.fixture(scope="module")
def direct(local_stack):
    """A boto3 client straight to the store (not through any proxy), with the test bucket."""
    client = _s3(local_stack, local_stack.s3_endpoint)
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return client


@pytest.fixture()
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def _exists(client, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=BUCKET, Key=key)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _writes(proxy: StoreProxy) -> list[tuple[str, str]]:
    """(method, path without query) of each write, checking the numbering is 1..n in order."""
    assert [w[0] for w in proxy.writes] == list(range(1, len(proxy.writes) + 1))
    return [(method, path.split("?")[0]) for _, method, path in proxy.writes]


@pytest.mark.integration
def test_boto3_through_proxy(local_stack, direct, prefix):
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    big = os.urandom(6 * MB)
    multi = os.urandom(11 * MB)
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        s3 = _s3(local_stack, proxy.endpoint)
        key = f"{prefix}/a.txt"
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"one")
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"one"
        with pytest.raises(ClientError) as failed:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"two", IfNoneMatch="*")
        assert failed.value.response["Error"]["Code"] == "PreconditionFailed"
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/big.bin", Body=big)
        s3.upload_fileobj(io.BytesIO(multi), BUCKET, f"{prefix}/multi.bin",
                          Config=TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB,
                                                use_threads=False))
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
        assert sorted(o["Key"] for o in listed["Contents"]) == [f"{prefix}/{n}" for n in ("a.txt", "big.bin", "multi.bin")]
        assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}/big.bin")["Body"].read() == big
        s3.delete_object(Bucket=BUCKET, Key=key)
        assert proxy.errors == []

        base = f"/{BUCKET}/{prefix}"
        assert _writes(proxy) == [("PUT", f"{base}/a.txt"), ("PUT", f"{base}/a.txt"), ("PUT", f"{base}/big.bin"),
                                  ("POST", f"{base}/multi.bin"), ("PUT", f"{base}/multi.bin"),
                                  ("PUT", f"{base}/multi.bin"), ("PUT", f"{base}/multi.bin"),
                                  ("POST", f"{base}/multi.bin"), ("DELETE", f"{base}/a.txt")]
        queries = [path.partition("?")[2] for _, _, path in proxy.writes]
        assert "uploads" in queries[3].split("&") and "partNumber=3" in queries[6] and "uploadId=" in queries[7]
    assert not _exists(direct, key)
    assert direct.get_object(Bucket=BUCKET, Key=f"{prefix}/multi.bin")["Body"].read() == multi


@pytest.mark.integration
def test_pyarrow_through_proxy(local_stack, direct, prefix):
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(1000)), "name": [f"row-{i}" for i in range(1000)]})
    blob = os.urandom(12 * MB)  # past pyarrow's multipart threshold
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        fs = pafs.S3FileSystem(endpoint_override=proxy.host_port, scheme="http", access_key=local_stack.access_key,
                               secret_key=local_stack.secret_key, region=local_stack.region,
                               retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))
        pq.write_table(table, f"{BUCKET}/{prefix}/t.parquet", filesystem=fs)
        assert pq.read_table(f"{BUCKET}/{prefix}/t.parquet", filesystem=fs).equals(table)
        parquet_writes = _writes(proxy)
        with fs.open_output_stream(f"{BUCKET}/{prefix}/blob.bin") as out:
            out.write(blob)
        with fs.open_input_stream(f"{BUCKET}/{prefix}/blob.bin") as stream:
            assert stream.read() == blob
        assert proxy.errors == []
        assert ("PUT", f"/{BUCKET}/{prefix}/t.parquet") in parquet_writes
        blob_writes = _writes(proxy)[len(parquet_writes):]
        assert blob_writes and set(blob_writes) <= {("PUT", f"/{BUCKET}/{prefix}/blob.bin"),
                                                    ("POST", f"/{BUCKET}/{prefix}/blob.bin")}
        assert sum(1 for w in blob_writes if w[0] == "PUT") >= 2  # uploaded in parts
    assert pq.read_table(io.BytesIO(direct.get_object(Bucket=BUCKET, Key=f"{prefix}/t.parquet")["Body"].read())).equals(table)


@pytest.mark.integration
def test_deltalake_through_proxy(local_stack, direct, prefix):
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "v": pa.array(["a", "b", "c"])})
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        options = {"AWS_ENDPOINT_URL": proxy.endpoint, "AWS_ACCESS_KEY_ID": local_stack.access_key,
                   "AWS_SECRET_ACCESS_KEY": local_stack.secret_key, "AWS_REGION": local_stack.region,
                   "AWS_ALLOW_HTTP": "true", "conditional_put": "etag"}
        uri = f"s3://{BUCKET}/{prefix}/t"
        write_deltalake(uri, table, storage_options=options)
        write_deltalake(uri, table, mode="append", storage_options=options)
        got = DeltaTable(uri, storage_options=options).to_pyarrow_table()
        assert got.sort_by("id").equals(pa.concat_tables([table, table]).sort_by("id"))
        assert proxy.errors == []
        writes = _writes(proxy)
        log = f"/{BUCKET}/{prefix}/t/_delta_log/"
        assert ("PUT", log + "00000000000000000000.json") in writes
        assert ("PUT", log + "00000000000000000001.json") in writes
        assert writes.index(("PUT", log + "00000000000000000000.json")) < writes.index(
            ("PUT", log + "00000000000000000001.json"))
        assert sum(1 for m, p in writes if m == "PUT" and p.endswith(".parquet")) == 2
    assert _exists(direct, f"{prefix}/t/_delta_log/00000000000000000001.json")


# --- a client process stopped at a write ----------------------------------------------------

CLIENT = """
import os, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["PROXY_ENDPOINT"], aws_access_key_id=os.environ["TEST_KEY"],
                  aws_secret_access_key=os.environ["TEST_SECRET"], region_name=os.environ["TEST_REGION"],
                  config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
for i in (1, 2, 3):
    s3.put_object(Bucket=os.environ["TEST_BUCKET"], Key=f"{os.environ['TEST_PREFIX']}/obj-{i}", Body=f"client-{i}".encode())
"""


def _client(local_stack, proxy: StoreProxy, prefix: str) -> subprocess.Popen:
    env = dict(os.environ, PROXY_ENDPOINT=proxy.endpoint, TEST_KEY=local_stack.access_key,
               TEST_SECRET=local_stack.secret_key, TEST_REGION=local_stack.region, TEST_BUCKET=BUCKET,
               TEST_PREFIX=prefix)
    return subprocess.Popen([sys.executable, "-c", CLIENT], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.integration
@pytest.mark.parametrize("when", ["kill-before", "kill-after"])
def test_client_killed_at_second_write(local_stack, direct, prefix, when):
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        proc = None
        proxy.on_kill = lambda: os.killpg(proc.pid, signal.SIGKILL)
        # Later writes (a retry racing the kill) are never forwarded either.
        proxy.on_write = proxy.act_at(2, when, after="kill-before")
        proc = _client(local_stack, proxy, prefix)
        try:
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            _end(proc)
        assert [w[1:] for w in proxy.writes] == [("PUT", f"/{BUCKET}/{prefix}/obj-1"), ("PUT", f"/{BUCKET}/{prefix}/obj-2")]
        assert proxy.errors == []
    assert _exists(direct, f"{prefix}/obj-1")
    assert _exists(direct, f"{prefix}/obj-2") == (when == "kill-after")
    assert not _exists(direct, f"{prefix}/obj-3")


@pytest.mark.integration
def test_client_held_at_second_write_lands_late(local_stack, direct, prefix):
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        proc = None
        proxy.on_hold = lambda: os.killpg(proc.pid, signal.SIGSTOP)
        proxy.on_write = proxy.act_at(2, "hold")
        proc = _client(local_stack, proxy, prefix)
        try:
            assert proxy.wait_held(30)
            deadline = time.monotonic() + 5
            while _state(proc.pid) != "T" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _state(proc.pid) == "T"
            # Meanwhile another run writes the same key directly.
            assert not _exists(direct, f"{prefix}/obj-2")
            direct.put_object(Bucket=BUCKET, Key=f"{prefix}/obj-2", Body=b"other-run")
            time.sleep(0.2)
            assert _state(proc.pid) == "T" and not _exists(direct, f"{prefix}/obj-3")
            os.killpg(proc.pid, signal.SIGCONT)
            proxy.release()
            _, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 0, stderr.decode()
        finally:
            _end(proc)
        assert [w[1:] for w in proxy.writes] == [("PUT", f"/{BUCKET}/{prefix}/obj-{i}") for i in (1, 2, 3)]
        assert proxy.errors == []
    # The held write landed after the other run's: it overwrote it.
    assert direct.get_object(Bucket=BUCKET, Key=f"{prefix}/obj-2")["Body"].read() == b"client-2"
    assert direct.get_object(Bucket=BUCKET, Key=f"{prefix}/obj-3")["Body"].read() == b"client-3"
