"""A train job's `<output>/tensorboard/` as TensorBoard reads it: downloaded, then loaded by
TensorBoard's own event reader (what `tensorboard --logdir` shows)."""

from __future__ import annotations

from pathlib import Path


def read_board(output_uri: str, into: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[int]]]:
    """(scalars: tag -> [(step, value)], images: tag -> [step]) of the job's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from jobs.storage.objects import download_prefix

    folder = download_prefix(output_uri.rstrip("/") + "/tensorboard/", into)
    board = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    board.Reload()
    tags = board.Tags()
    # tf.summary (TF 2) writes scalars and images as tensors; TensorBoard's data plugins read them so.
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    images: dict[str, list[int]] = {}
    for tag in tags.get("tensors", []):
        events = board.Tensors(tag)
        metadata = board.SummaryMetadata(tag)
        if metadata.plugin_data.plugin_name == "images":
            images[tag] = [e.step for e in events]
        else:
            scalars[tag] = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events]
    return scalars, images
