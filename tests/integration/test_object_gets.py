"""Whole-object GETs through obstore (jobs.storage.object_gets), against the session's real
SeaweedFS: the same bytes as pyarrow's read, and every failure worded as the rest of
jobs.storage reads it, so missing objects become error rows, refusals name their S3 code,
and a store that does not answer is waited out, never turned into error rows."""

from __future__ import annotations

import socket

import pytest

BUCKET = "it-object-gets"


@pytest.fixture(scope="module")
def stored(local_stack) -> tuple[str, bytes]:
    from jobs.storage.checks import ensure_bucket
    from jobs.storage.objects import s3_client

    ensure_bucket(f"s3://{BUCKET}/")
    data = bytes(range(256)) * 513  # not a multiple of any buffer size
    s3_client().put_object(Bucket=BUCKET, Key="a/photo.jpg", Body=data)
    return f"s3://{BUCKET}/a/photo.jpg", data


def test_an_object_reads_whole_and_the_same_as_through_pyarrow(stored):
    from jobs.storage.objects import read_bytes, read_sized

    uri, data = stored
    assert read_sized(uri, len(data)) == data == read_bytes(uri)
    assert read_sized(uri, 10) == data  # grown since it was listed: still read whole


def test_a_key_obstore_cannot_name_is_read_through_pyarrow(stored):
    from jobs.storage.objects import read_sized, s3_client

    data = b"\xff\xd8\xff not really a JPEG"
    for key in ("names/tab\there.jpg", "names/new\nline.jpg"):
        s3_client().put_object(Bucket=BUCKET, Key=key, Body=data)
        assert read_sized(f"s3://{BUCKET}/{key}", len(data)) == data, key


def test_a_missing_object_is_the_objects_fault(stored):
    from jobs.storage.objects import read_sized
    from jobs.storage.outage import is_transient
    from jobs.workers.decoding import fetch_object

    with pytest.raises(FileNotFoundError, match=f"^Path does not exist '{BUCKET}/a/missing.jpg'$") as caught:
        read_sized(f"s3://{BUCKET}/a/missing.jpg", 10)
    assert not is_transient(caught.value)
    source, error = fetch_object(f"s3://{BUCKET}/a/missing.jpg", 10, "bytes", "/tmp")
    assert source is None and error == f"Path does not exist '{BUCKET}/a/missing.jpg'"


def test_a_wrong_secret_is_refused_with_its_code(stored, local_stack, monkeypatch):
    from jobs.storage.objects import describe_storage_error, read_sized, refusal_code

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", local_stack.s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", local_stack.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(PermissionError) as caught:
        read_sized(stored[0], len(stored[1]))
    assert refusal_code(caught.value) == "SignatureDoesNotMatch"
    assert "not-the-secret" not in describe_storage_error(caught.value)


def test_a_store_that_does_not_answer_is_waited_out_then_fails_the_read(stored, local_stack, monkeypatch):
    from jobs.storage.objects import read_sized
    from jobs.storage.outage import StoreUnavailableError, is_transient, retry_while_unavailable

    with socket.socket() as unused:  # a port nothing listens on: connection refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", local_stack.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", local_stack.secret_key)
    with pytest.raises(OSError) as caught:
        read_sized(stored[0], len(stored[1]))
    assert is_transient(caught.value) and "NETWORK_CONNECTION" in str(caught.value)
    waits: list[float] = []
    clock = iter(range(1000))
    with pytest.raises(StoreUnavailableError, match="did not answer"):
        retry_while_unavailable(lambda: read_sized(stored[0], len(stored[1])), "reading", budget=3.0,
                                clock=lambda: float(next(clock)), sleep=waits.append)
    assert waits  # waited before giving up: an outage is not the object's fault
