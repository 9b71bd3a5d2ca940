"""Helpers of the crash-matrix and split-brain tests: the driver run through the proxy,
the write points a few at a time, outputs copied server-side, the tables as a reader sees
them, the test archive and model."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Callable, Iterable, TypeVar

from jobs.storage.delta import open_table
from jobs.storage.objects import list_objects, parse_uri, s3_client, write_bytes
from support import lifecycle_driver
from support.paths import ROOT, TESTS, python_path
from support.store_proxy import StoreProxy

DRIVER = TESTS / "support" / "lifecycle_driver.py"
NIGHTS = ("2026-11-20", "2026-11-21")
# Write points tried at once. A point is mostly waiting (the driver's start-up, a held or
# killed write, the store): three at a time on two cores take about half the time of one
# (measured: 2 at a time 0.6x, 3 0.5x, 4 no better).
POINTS_AT_ONCE = 3
Point = TypeVar("Point")


def driver(proxy: StoreProxy, stack, *args: str) -> subprocess.Popen:
    """tests/support/lifecycle_driver.py in its own process group, talking to the store through `proxy`."""
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint, "AWS_ACCESS_KEY_ID": stack.access_key,
           "AWS_SECRET_ACCESS_KEY": stack.secret_key, "AWS_REGION": stack.region,
           "PYTHONPATH": python_path()}
    return subprocess.Popen([sys.executable, str(DRIVER), *args], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def baseline(proxy: StoreProxy, stack, *args: str) -> list[tuple[int, str, str]]:
    """The writes a whole run makes (its write points)."""
    proxy.reset()
    proxy.on_write = None
    proc = driver(proxy, stack, *args)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    return list(proxy.writes)


def each_point(stack, points: Iterable[Point], check: Callable[[StoreProxy, Point], None]) -> None:
    """`check(proxy, point)` for every point, POINTS_AT_ONCE at a time, each check with a proxy
    of its own for as long as it runs (so write numbers and holds never mix). Every point
    writes its own output; a failed check fails the test with its own assertion."""
    with ExitStack() as proxies, ThreadPoolExecutor(POINTS_AT_ONCE) as pool:
        idle: queue.Queue[StoreProxy] = queue.Queue()
        for _ in range(POINTS_AT_ONCE):
            idle.put(proxies.enter_context(StoreProxy(stack.s3_endpoint)))

        def on_a_proxy(point: Point) -> None:
            proxy = idle.get()
            try:
                check(proxy, point)
            finally:
                idle.put(proxy)

        futures = [pool.submit(on_a_proxy, point) for point in points]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.cancel()


def copy_prefix(source: str, target: str) -> None:
    """Every object under `source` copied (server-side) under `target`: a state to start from."""
    client, src, dst = s3_client(), parse_uri(source), parse_uri(target)
    for obj in list_objects(source):
        key = parse_uri(obj.uri).key
        client.copy_object(Bucket=dst.bucket, Key=dst.key + key[len(src.key):],
                           CopySource={"Bucket": src.bucket, "Key": key})


def table(output: str, name: str):
    """A Delta table's latest version as a reader sees it; None where there is none."""
    handle = open_table(parse_uri(output).as_prefix().join(name))
    return None if handle is None else handle.to_pyarrow_table()


def left_behind(output: str) -> list[str]:
    return [o.uri for o in list_objects(output) if "/_staging/" in o.uri or o.uri.endswith("/_lock.json")]


def archive(prefix: str, night: int) -> None:
    """Night 1: 10 images (2 bad); night 2 adds 5 (1 bad) and changes one."""
    names = [f"{'bad' if i % 5 == 4 else 'img'}-{i:02d}.jpg" for i in range(10 if night == 1 else 15)]
    for i, name in enumerate(names):
        changed = night == 2 and i == 0
        if night == 1 or i >= 10 or changed:
            write_bytes(prefix + name, f"object {i} {'v2' if changed else 'v1'}".encode())


def model(uri: str) -> str:
    return lifecycle_driver.stub_model(uri, "crash-model-1")


def night_rows(output: str, name: str, night: str) -> int:
    rows = table(output, name)
    return 0 if rows is None else sum(1 for d in rows.column("run_date").to_pylist() if d == night)
