"""`mediajobs bench --driver-memory`: the nightly commit's peak driver memory over synthetic
staged tables, at N and 5N objects.

Scoring a million objects takes hours, but the commit only reads what scoring left on disk.
So `write_synthetic_night` writes that state directly, for a model-change night (every
object of the ledger, scored earlier by "model-old", staged again by "model-new"), and
`measure_commit` runs the commit alone in a fresh interpreter, whose peak RSS (VmHWM) is the
figure: the generator's own memory never counts. Local folders only: no Ray, no S3.

    write_synthetic_night ─▶ _manifest/ (the ledger) and _staging/run_date=D/: todo- and
      pending- lists, scored/<route>/<run_id>/<40 hex>.parquet ─▶ measure_commit:
      `python -m jobs.bench.driver_memory --child` ─▶ {peak_bytes, seconds, scored, errors}
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ARCHIVE = "s3://archive/media/"  # object URIs are only strings here: nothing is fetched
CLASSES = [f"c{i}" for i in range(10)]
ROUTES = (("image", "image-classifier", (".jpg",), ()),
          ("video", "video-classifier", (".mp4",), ("frame_index", "timestamp_s")))
PER_FILE = {"image": 1024, "video": 10}  # objects per staged file (an actor's block)
FILES_PER_BATCH = 64  # staged files generated at once: bounds the generator's own memory
NODES = [hashlib.sha256(f"node-{i}".encode()).hexdigest()[:56] for i in range(2)]
PEAK_LIMIT, GROWTH_LIMIT = 2 * 2 ** 30, 1.2  # the issue's: peak at 5N, and peak(5N) / peak(N)
_note = functools.partial(print, file=sys.stderr)  # the child's notes: its stdout carries only the figures


@dataclass
class SyntheticNight:
    """What `write_synthetic_night` wrote: enough for the commit and for checking its tables."""

    output_uri: str
    run_date: str
    run_id: str  # the attempt that staged the rows (the commit runs as it)
    previous_date: str
    previous_run: str
    routes: list[dict]
    objects: int
    videos: int
    frames_per_video: int
    frame_rows: int  # frames of the videos that scored: the frames table's rows
    errors: int  # objects that failed: the errors table's rows
    partial: int  # videos scored with a decode-partial warning row


def write_synthetic_night(output_uri: str, objects: int, run_date: str = "2026-12-02", frames: int = 300,
                          seed: int = 0, echo: Callable[[str], None] = print) -> SyntheticNight:
    """Write, under an empty local `output_uri`, what a nightly attempt leaves right after
    decide and score on a model-change night; its description goes beside the output
    (`<output>.night.json`), so that the output holds only what a real night's does."""
    from jobs.errors import UsageError
    from jobs.nightly.manifest import write_snapshot
    from jobs.runs.lifecycle import new_run_id
    from jobs.storage.objects import filesystem_for, parse_uri

    location = parse_uri(output_uri)
    if location.scheme != "file" or (os.path.isdir(location.fs_path) and os.listdir(location.fs_path)):
        raise UsageError(f"{output_uri}: the synthetic night needs an empty local folder")
    previous = (dt.date.fromisoformat(run_date) - dt.timedelta(days=1)).isoformat()
    previous_run = f"{previous.replace('-', '')}T020000Z-{secrets.token_hex(3)}"
    video, failed, partial = _layout(objects, seed)
    routes: list[dict[str, Any]] = [
        {"name": name, "media": name, "task_name": task, "model_uri": f"s3://models/{name}/@model-new",
         "model_id": "model-new", "class_names": CLASSES, "extensions": list(ext), "position_columns": list(pos)}
        for name, task, ext, pos in ROUTES]
    night = SyntheticNight(location.uri, run_date, new_run_id(), previous, previous_run, routes, objects,
                           int(video.sum()), frames, int((video & ~failed).sum()) * frames, int(failed.sum()),
                           int(partial.sum()))
    write_snapshot(location.uri, f"snapshot-{previous}-{previous_run}", _ledger(objects, video, previous, previous_run),
                   index_extra={"run_id": previous_run, "run_date": previous, "committed": {previous: previous_run}},
                   expected_current=None)
    fs, staging = filesystem_for(location), location.join("_staging", f"run_date={run_date}")
    rng = np.random.default_rng(seed)
    for route in routes:
        index = np.flatnonzero(video if route["media"] == "video" else ~video)
        _write_worklists(fs, staging, night.run_id, route["name"], index, video)
        _write_staged(fs, staging.join("scored", route["name"], night.run_id), night, route, index,
                      (video, failed, partial), rng)
    Path(location.fs_path + ".night.json").write_text(json.dumps(asdict(night), indent=1))
    echo(f"synthetic night {run_date}: {objects:,} objects ({night.videos:,} videos, {night.frame_rows:,} frame "
         f"rows, {night.errors:,} failed) under {location.uri}")
    return night


def synthetic_routes(night: SyntheticNight) -> list:
    """The night's routes as the commit gets them; each task is a stand-in holding only its
    position columns (nothing is decoded)."""
    from types import SimpleNamespace

    from jobs.nightly.routes import ResolvedRoute

    return [ResolvedRoute(r["name"], r["media"], r["task_name"], r["model_uri"], r["model_id"], list(r["class_names"]),
                      tuple(r["extensions"]), SimpleNamespace(position_columns=tuple(r["position_columns"])))
            for r in night.routes]


def _layout(objects: int, seed: int):
    """Which objects are videos (every 100th), failed (about 1%) or partly decoded (one
    video in 50): whole arrays, so every batch of the generator agrees."""
    video = np.arange(objects) % 100 == 99
    failed = np.random.default_rng(seed + 1).random(objects) < 0.01
    return video, failed, video & ~failed & (np.cumsum(video) % 50 == 1)


def _identity(index: np.ndarray, video: np.ndarray):
    """URIs, ETags and sizes of objects `index`: the same in the ledger, the lists and the rows."""
    uris = [f"{ARCHIVE}obj-{i:09d}.{'mp4' if v else 'jpg'}" for i, v in zip(index.tolist(), video[index].tolist())]
    etags = [hashlib.md5(b"%d" % i).hexdigest() for i in index.tolist()]
    return uris, etags, np.where(video[index], 4_000_000, 20_000) + (index * 7919) % 100_000


def _ledger(objects: int, video: np.ndarray, previous: str, previous_run: str, chunk: int = 65_536):
    """The previous night's ledger in URI order: every object predicted by model-old."""
    from jobs.nightly.manifest import PREDICTED, LedgerEntry

    for start in range(0, objects, chunk):
        uris, etags, sizes = _identity(np.arange(start, min(start + chunk, objects)), video)
        for uri, etag, size in zip(uris, etags, sizes.tolist()):
            yield LedgerEntry(uri, etag, size, "model-old", previous_run, previous, PREDICTED)


def _write_worklists(fs, staging, run_id: str, route: str, index: np.ndarray, video: np.ndarray) -> None:
    """The route's todo list as WorkListWriter writes it, and its pending list (the same:
    no earlier attempt finished anything)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.nightly.manifest import OTHER_MODEL
    from jobs.nightly.worklists import TODO_FLUSH_ROWS, TODO_SCHEMA

    for number, start in enumerate(range(0, len(index), TODO_FLUSH_ROWS)):
        uris, etags, sizes = _identity(index[start:start + TODO_FLUSH_ROWS], video)
        table = pa.table([uris, sizes, etags, [OTHER_MODEL] * len(uris)], schema=TODO_SCHEMA())
        for folder in ("todo", "pending"):
            path = staging.join(f"{folder}-{run_id}", route).fs_path
            fs.create_dir(path, recursive=True)
            pq.write_table(table, f"{path}/part-{run_id}-{number:05d}.parquet", filesystem=fs)


def _write_staged(fs, folder, night: SyntheticNight, route: dict, index: np.ndarray, layout, rng) -> None:
    """The route's staged rows, PER_FILE consecutive objects a file, made a batch of files
    at a time; files are named by a digest of their objects, as the actors name them."""
    import pyarrow.parquet as pq

    fs.create_dir(folder.fs_path, recursive=True)
    per_file = PER_FILE[route["media"]]
    for start in range(0, len(index), per_file * FILES_PER_BATCH):
        table, uris, rows = _staged_rows(index[start:start + per_file * FILES_PER_BATCH], night, route, layout, rng,
                                         start // per_file)
        offset = 0
        for k, count in enumerate(rows.tolist()):
            name = hashlib.sha256(f"{route['name']}:{uris[k * per_file]}:{count}".encode()).hexdigest()[:40]
            pq.write_table(table.slice(offset, count), f"{folder.fs_path}/{name}.parquet", filesystem=fs)
            offset += count


def _staged_rows(part: np.ndarray, night: SyntheticNight, route: dict, layout, rng, first_file: int):
    """What the classifier actors stage for consecutive objects `part` of one route, built
    as whole columns: a row per example; a failed object's one error row (stage "decode");
    a partly decoded video's frames, then its warning row (stage PARTIAL). Error and warning
    rows carry positions -1 / NaN, as the decoders leave them. Returns the table, the URIs
    of `part` and each file's row count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from jobs.runs.score_commit import PARTIAL, staged_schema
    from jobs.storage.contract import SCORED_AT

    video, failed, partial = layout
    positions, frames = tuple(route["position_columns"]), night.frames_per_video
    f, p = failed[part], partial[part]
    examples = np.where(f, 0, frames if positions else 1)
    counts = examples + (f | p)
    obj = np.repeat(np.arange(len(part)), counts)  # each row's object, then its place in it
    pos = np.arange(len(obj)) - np.repeat(np.cumsum(counts) - counts, counts)
    bad = pos >= examples[obj]  # the object's error or warning row
    n = len(obj)
    probs = rng.random((n, len(CLASSES)), dtype=np.float32)  # error rows' are masked out
    probs /= probs.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    top, names, null = np.take_along_axis(probs, order, axis=1), pa.array(CLASSES), pa.array(bad)

    def listed(flat: pa.Array, width: int) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(flat, width, mask=null).cast(pa.list_(flat.type))

    def per_row(values: list) -> pa.Array:
        return pc.take(pa.array(values, pa.string()), pa.array(obj))

    uris, etags, _ = _identity(part, video)
    extra = f'"duration_s": {frames / 10:.1f}, "fps": 10.0, "frame_count": {frames}, ' if positions else ""
    seconds = rng.gamma(2.0, 0.4 if positions else 0.002, len(part)).round(4).tolist()
    warning = np.where(p[obj], 1, 0)  # an error row's kind: 0 a failed object, 1 a partly decoded one
    file_of_row = first_file + obj // PER_FILE[route["media"]]
    base = int(dt.datetime.fromisoformat(night.run_date + "T02:00:00+00:00").timestamp() * 1e6)
    columns = {
        "uri": per_row(uris), "frame_index": pa.array(np.where(bad, -1, pos)),
        "timestamp_s": pa.array(np.where(bad, np.nan, pos / 10.0)),
        "label": pc.take(names, pa.array(order[:, 0], mask=bad)), "score": pa.array(top[:, 0], mask=bad),
        "top_labels": listed(pc.take(names, pa.array(order.ravel())), 3),
        "top_scores": listed(pa.array(top.ravel()), 3), "probabilities": listed(pa.array(probs.ravel()), len(CLASSES)),
        "object_info": per_row([f'{{{"" if x else extra}"seconds": {s}}}' for s, x in zip(seconds, f.tolist())]),
        "model_id": pa.array(np.full(n, route["model_id"], dtype=object), pa.string()),
        "run_id": pa.array(np.full(n, night.run_id, dtype=object), pa.string()),
        "stage": pa.array(np.array(["decode", PARTIAL], dtype=object)[warning], pa.string(), mask=~bad),
        "error": pa.array(np.array(["synthetic: not a decodable image",
                                    f"synthetic: decoding stopped after frame {frames - 1}"], dtype=object)[warning],
                          pa.string(), mask=~bad),
        "node_id": pc.take(pa.array(NODES), pa.array(file_of_row % len(NODES))), "etag": per_row(etags),
        "scored_at": pa.array(base + file_of_row * 250_000, SCORED_AT()),
    }
    schema = staged_schema(positions)
    return (pa.Table.from_arrays([columns[c] for c in schema.names], schema=schema), uris,
            np.bincount(file_of_row - first_file))


# -- the measurement --------------------------------------------------------------------------

def _commit(night: SyntheticNight):
    """The nightly commit of the synthetic night, as `jobs.runs.nightly._run_leased` calls it
    after decide and score: the one function to adapt when the commit changes."""
    from types import SimpleNamespace

    from jobs.nightly.manifest import OTHER_MODEL, read_current, snapshot_index
    from jobs.nightly.tables import TABLES
    from jobs.runs.lifecycle import Run
    from jobs.runs.nightly import Night
    from jobs.spec.sections import DriftConfig

    spec = SimpleNamespace(name="synthetic-night", input=ARCHIVE, output=night.output_uri, top_k=3, error_budget=None,
                           drift_settings=DriftConfig())
    with Run(night.output_uri, list(TABLES), staging_key=f"run_date={night.run_date}", echo=_note,
             run_id=night.run_id) as run:
        snapshot, version = read_current(run.output.uri)
        committed = dict(snapshot_index(snapshot).get("committed", {}))
        attempt = Night(spec, run, night.run_date, synthetic_routes(night), _note)
        attempt.listed = night.objects
        attempt.decisions[OTHER_MODEL] = night.objects
        return attempt.commit(snapshot, version, committed)


def _child() -> None:
    """In the fresh interpreter: commit the night read from stdin; print the figures as JSON.
    The libraries a driver has loaded anyway are loaded before the baseline RSS."""
    import deltalake  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import jobs.reports.thumbnails
    import jobs.runs.nightly  # noqa: F401

    night = SyntheticNight(**json.load(sys.stdin))
    jobs.reports.thumbnails._fetch = lambda uri: None  # the report's thumbnails: the URIs exist nowhere
    before, began = _status_bytes("VmRSS"), time.time()
    result = _commit(night)
    print(json.dumps({"peak_bytes": _status_bytes("VmHWM"), "rss_before_bytes": before,
                      "seconds": round(time.time() - began, 2), "scored": result.scored, "errors": result.errors,
                      "accounted": result.scored + result.errors == night.objects}))


def measure_commit(output_uri: str, cap_bytes: int | None = None) -> dict:
    """The commit's figures for the synthetic night at `output_uri`, from a fresh interpreter
    of this checkout. Past `cap_bytes` of RSS (default 70% of the memory available now) the
    child is killed, so a commit that does not fit cannot take the machine down; its peak
    is then the cap, marked `capped`.

    Raises:
        JobFailedError: the commit failed, or its result does not account for every object.
    """
    from jobs.errors import JobFailedError

    night = json.loads(Path(output_uri.rstrip("/") + ".night.json").read_text())
    cap = cap_bytes or int(0.7 * _status_bytes("MemAvailable", "/proc/meminfo"))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    seen, began = 0, time.time()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "jobs.bench.driver_memory", "--child"], cwd=root, env=env,
                                 stdin=subprocess.PIPE, stdout=out, stderr=err)
        assert child.stdin is not None  # a pipe
        child.stdin.write(json.dumps(night).encode())
        child.stdin.close()
        while child.poll() is None:
            seen = max(seen, _status_bytes("VmRSS", f"/proc/{child.pid}/status"))
            if seen > cap:
                child.kill()
                child.wait()
                return {"peak_bytes": cap, "capped": True, "seconds": round(time.time() - began, 2)}
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        if child.returncode != 0 or not lines:
            raise JobFailedError(f"the commit of the synthetic night failed (exit {child.returncode}):\n"
                                 + err.read().decode()[-3000:])
    figures = {**json.loads(lines[-1]), "capped": False, "sampled_peak_bytes": seen}
    if not figures["accounted"]:
        raise JobFailedError(f"the commit's result counts {figures['scored']} scored and {figures['errors']} "
                             f"failed objects of {night['objects']}")
    return figures


def run_driver_memory_bench(objects: int = 1_000_000, frames: int = 300, workdir: str | None = None,
                            echo: Callable[[str], None] = print, keep: bool = False,
                            cap_bytes: int | None = None) -> dict:
    """Generate and measure a night of N = objects // 5 and one of 5N = objects: the figures
    and the issue's targets. Each output is deleted once measured, unless `keep`."""
    root = tempfile.mkdtemp(prefix="mediajobs-driver-memory-", dir=workdir)
    scales: dict[str, dict] = {}
    try:
        for scale, count in (("n", objects // 5), ("5n", objects)):
            output, began = os.path.join(root, scale, "output"), time.time()
            night = write_synthetic_night(output, count, frames=frames, echo=echo)
            generated = time.time() - began
            figures = measure_commit(output, cap_bytes)
            scales[scale] = {"objects": count, "videos": night.videos, "frame_rows": night.frame_rows,
                             "errors_expected": night.errors, "partial_expected": night.partial,
                             "generate_seconds": round(generated, 1), **figures, "output_uri": output if keep else None}
            echo(f"  {scale.upper():<2} {count:>11,} objects ({night.videos:,} videos, {night.frame_rows:,} frame "
                 f"rows): peak RSS {_gib(figures['peak_bytes'])}{' (killed at the cap)' if figures['capped'] else ''}, "
                 f"commit {figures['seconds']:.1f} s (generated in {generated:.1f} s)")
            if not keep:
                shutil.rmtree(os.path.join(root, scale), ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    peak, growth = scales["5n"]["peak_bytes"], scales["5n"]["peak_bytes"] / scales["n"]["peak_bytes"]
    whole = not scales["5n"]["capped"]
    return {"date": time.strftime("%Y-%m-%d", time.gmtime()), "frames_per_video": frames, "scales": scales,
            "growth": round(growth, 3), "workdir": root if keep else None,
            "targets": [{"target": "peak at 5N", "value": peak, "below": PEAK_LIMIT,
                         "met": whole and peak < PEAK_LIMIT},
                        {"target": "peak(5N) / peak(N)", "value": round(growth, 3), "at_most": GROWTH_LIMIT,
                         "met": whole and growth <= GROWTH_LIMIT}]}


def run_driver_memory_command(objects: int, json_path: Path | None, echo: Callable[[str], None]) -> dict:
    """`mediajobs bench --driver-memory`: the bench, the targets met or missed, the JSON."""
    from jobs.bench import write_json

    echo(f"nightly commit, peak driver memory: synthetic model-change nights of {objects // 5:,} and {objects:,} "
         "objects (local files; each commit in a fresh process)")
    figures = run_driver_memory_bench(objects=objects, echo=echo)
    peak, growth = figures["targets"]
    echo(f"peak at 5N {_gib(peak['value'])} (target < {_gib(PEAK_LIMIT)}): {'met' if peak['met'] else 'MISSED'}; "
         f"peak(5N) / peak(N) {growth['value']:.2f}x (target <= {GROWTH_LIMIT:g}x): "
         f"{'met' if growth['met'] else 'MISSED'}")
    if json_path is not None:
        write_json(figures, str(json_path))
        echo(f"figures: {json_path}")
    return figures


def _status_bytes(key: str, path: str = "/proc/self/status") -> int:
    """A `kB` line of a /proc status file (VmRSS, VmHWM, MemAvailable) in bytes; 0 if gone."""
    try:
        with open(path) as status:
            return next((int(line.split()[1]) * 1024 for line in status if line.startswith(key + ":")), 0)
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _gib(value: float) -> str:
    return f"{value / 2 ** 30:.2f} GiB"


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
