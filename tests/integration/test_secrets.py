"""No secret in anything a job writes: the S3 secret key and the Ray token are grepped for in
the CLI's output, every object the job wrote, Ray's session logs, the stack's own logs and
what the Ray dashboard says about the job.

Issue 8: "No secret (S3 secret key, Ray token) appears in logs, job metadata, specs written
back, summaries or error messages (a test greps everything a job wrote for the secret)."
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from support.media import image_bytes
from support.paths import ROOT

EXAMPLES = ROOT / "jobs" / "examples"
# What the stack keeps on purpose: the key pair, the SeaweedFS identities, the token, the store.
SECRET_HOLDERS = {"credentials.json", "seaweed-s3.json", "ray_auth_token", "seaweed"}


def _secrets(local_stack) -> dict[str, str]:
    from cluster.localstate import ray_auth_token_file

    return {"S3 secret key": local_stack.secret_key, "Ray token": ray_auth_token_file().read_text().strip()}


def _leaks(text: str | bytes, secrets: dict[str, str]) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return [name for name, secret in secrets.items() if secret.encode() in data]


def _files_under(root: Path, skip: set[str] = frozenset()):
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not set(path.relative_to(root).parts) & skip:
            yield path


def _dashboard(local_stack, route: str, token: str) -> bytes:
    request = urllib.request.Request(local_stack.dashboard_url + route, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_nothing_a_job_writes_holds_a_secret(export_test_model, mediajobs_cli, local_stack, tmp_path):
    from cluster._ray_head import runtime_dir
    from jobs.storage.objects import list_objects, read_bytes, s3_client

    secrets = _secrets(local_stack)
    client = s3_client()
    client.create_bucket(Bucket="it-secrets")
    for i in range(6):
        client.put_object(Bucket="it-secrets", Key=f"in/good-{i}.jpg", Body=image_bytes(seed=i, size=(48, 40)))
    client.put_object(Bucket="it-secrets", Key="in/broken.jpg", Body=b"not a picture")  # an error row too
    export_test_model("s3://it-secrets/m/", "image-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]})

    overrides = ["--set", "model=s3://it-secrets/m/model/", "--set", "input=s3://it-secrets/in/",
                 "--set", "output=s3://it-secrets/out/"]
    scored = mediajobs_cli("--verbose", "run", str(EXAMPLES / "score-demo.yaml"), *overrides)
    assert scored.returncode == 0, (scored.stdout + scored.stderr)[-3000:]

    # A job whose S3 key is wrong fails; its message must not echo the wrong secret either.
    wrong = "Wr0ng" + local_stack.secret_key[5:][::-1]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": local_stack.access_key, "AWS_SECRET_ACCESS_KEY": wrong,
           "AWS_ENDPOINT_URL": local_stack.s3_endpoint, "AWS_DEFAULT_REGION": local_stack.region}
    refused = mediajobs_cli("run", str(EXAMPLES / "score-demo.yaml"), *overrides[:4], "--set", "output=s3://it-secrets/out-wrong/",
                           env=env)
    assert refused.returncode != 0
    assert not _leaks(refused.stdout + refused.stderr, {"wrong S3 secret key": wrong, **secrets})

    found: dict[str, list[str]] = {}
    console = scored.stdout + scored.stderr
    if leaks := _leaks(console, secrets):
        found["the CLI's output"] = leaks
    written = list(list_objects("s3://it-secrets/out/"))
    assert any(o.uri.endswith("summary.json") for o in written) and any("errors" in o.uri for o in written)
    for stored in written:
        if leaks := _leaks(read_bytes(stored.uri), secrets):
            found[stored.uri] = leaks

    home = Path(os.environ["MEDIAJOBS_HOME"])
    ray_files = list(_files_under(runtime_dir(home), skip={"sockets"}))
    assert any(p.name.startswith("worker-") for p in ray_files), "Ray's worker logs should be there to search"
    for path in [*ray_files, *_files_under(home, skip=SECRET_HOLDERS)]:
        try:
            data = path.read_bytes()
        except OSError:  # a socket or a file Ray is rotating
            continue
        if leaks := _leaks(data, secrets):
            found[str(path)] = leaks

    token = secrets["Ray token"]
    for route in ("/api/jobs/", "/api/v0/actors?detail=1&limit=1000", "/api/v0/tasks?detail=1&limit=1000",
                  "/nodes?view=summary"):
        body = _dashboard(local_stack, route, token)
        json.loads(body)  # a real answer, not an error page
        if leaks := _leaks(body, secrets):
            found[f"dashboard {route}"] = leaks

    assert not found, f"secrets found in: {found}"
