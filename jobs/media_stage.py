"""The fetch-and-decode stage shared by training and scoring pipelines.

Runs inside Ray Data `map_batches` tasks. Each object is fetched and decoded on its
own, so one bad object becomes an error row (`stage`, `error`) instead of failing the
block: every listed object comes out of this stage exactly once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Objects larger than this are refused before download: a "photo" this big is almost
# surely not one, and reading it whole would starve a worker of memory.
MAX_OBJECT_BYTES = 256 * 1024 * 1024
# Object fetches are I/O bound: overlap them within a batch.
FETCH_THREADS = 16


def _fetch(uri: str, size: int) -> tuple[bytes | None, str | None]:
    from jobs.storage import describe_storage_error, read_bytes

    if size > MAX_OBJECT_BYTES:
        return None, f"object too large: {size:,} bytes (limit {MAX_OBJECT_BYTES:,})"
    try:
        return read_bytes(uri), None
    except OSError as exc:  # pyarrow raises OSError subclasses for missing/denied/network
        return None, describe_storage_error(exc)


def fetch_and_decode(batch: dict[str, np.ndarray], *, task: Any, keep_errors: bool) -> dict[str, np.ndarray]:
    """Fetch each `uri` in the batch and decode it with `task.decode`.

    Adds `image` (uint8, task.input_shape) and, when `keep_errors`, `stage` and `error`
    string columns ("" where decoding succeeded; the image is zeros where it failed).
    Empty strings rather than None: Ray's block conversions may turn an all-None object
    column into NaN floats.
    Without `keep_errors`, failed rows are dropped (training skips bad examples).
    """
    from tasks.media import MediaDecodeError

    uris = [str(u) for u in batch["uri"]]
    sizes = [int(s) for s in batch["size"]] if "size" in batch else [0] * len(uris)
    with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, max(1, len(uris)))) as pool:
        fetched = list(pool.map(_fetch, uris, sizes))

    images = np.zeros((len(uris), *task.input_shape), dtype=np.uint8)
    stages: list[str | None] = [None] * len(uris)
    errors: list[str | None] = [None] * len(uris)
    for i, (data, fetch_error) in enumerate(fetched):
        if fetch_error is not None:
            stages[i], errors[i] = "read", fetch_error
            continue
        try:
            images[i] = task.decode(data)
        except MediaDecodeError as exc:
            stages[i], errors[i] = exc.stage, exc.reason
        except Exception as exc:  # noqa: BLE001 - an exotic file must not kill the job; it is recorded
            stages[i], errors[i] = "decode", f"{type(exc).__name__}: {exc}"

    out = {name: np.asarray(values) for name, values in batch.items()}
    out["image"] = images
    if keep_errors:
        out["stage"] = np.array([s or "" for s in stages], dtype=object)
        out["error"] = np.array([e or "" for e in errors], dtype=object)
        return out
    keep = np.array([e is None for e in errors], dtype=bool)
    return {name: values[keep] for name, values in out.items()}
