"""One label per object from its examples (an image is one example; a video, its sampled
frames; an audio file, its windows): the majority of the examples' labels, ties broken by
the mean class scores (then by class order); its score and top-k are the mean class scores.

Vectorised over many objects at once (NumPy over the flattened class scores), so a commit
aggregates a window of hundreds of thousands of rows without a Python loop per row. The
plain score run's per-object tables, the nightly predictions and `summarize_video` (what
`mediajobs predict` says of a video) share this one rule (`winners`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Votes", "object_votes", "winners"]


def winners(votes: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Per object (last axis: classes): the class with the most votes, ties broken by the
    higher mean score, then by class order."""
    return np.where(votes == votes.max(axis=-1, keepdims=True), means, -np.inf).argmax(axis=-1)


@dataclass
class Votes:
    """Per object, in the order of the examples given."""

    uris: pa.Array
    first_row: np.ndarray  # the index of each object's first example
    examples: np.ndarray  # how many examples each object has
    best: np.ndarray  # the winning class's index
    means: np.ndarray  # [objects, classes] mean class scores
    scored_at: pa.Array | None  # the latest example's time

    def labels(self, class_names: list[str]) -> list[str]:
        return [class_names[i] for i in self.best]

    def scores(self) -> np.ndarray:
        return self.means[np.arange(len(self.best)), self.best]

    def top_k(self, class_names: list[str], k: int) -> tuple[pa.Array, pa.Array]:
        """(top_labels, top_scores) list arrays: the k best mean scores, best first."""
        import pyarrow as pa

        order = np.argsort(-self.means, axis=1, kind="stable")[:, :k]
        offsets = pa.array((np.arange(len(order) + 1) * order.shape[1]).astype(np.int32))
        names = pa.array(np.asarray(class_names, dtype=object)[order.ravel()], pa.string())
        values = pa.array(np.take_along_axis(self.means, order, axis=1).ravel().astype(np.float32))
        return pa.ListArray.from_arrays(offsets, names), pa.ListArray.from_arrays(offsets, values)


def object_votes(examples: pa.Table) -> Votes:
    """Vote over `examples` (columns `uri`, `probabilities`, optionally `scored_at`), whose
    rows of one object are consecutive (sorted by URI)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = examples.num_rows
    uris = examples.column("uri").combine_chunks()
    if n == 0:
        return Votes(uris, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0)),
                     None)
    changes = np.asarray(pc.not_equal(uris.slice(1), uris.slice(0, n - 1)), dtype=bool) if n > 1 else np.zeros(0, bool)
    starts = np.concatenate([[0], np.flatnonzero(changes) + 1])
    counts = np.diff(np.append(starts, n))
    probabilities = examples.column("probabilities").combine_chunks()
    flat = pc.list_flatten(probabilities).to_numpy(zero_copy_only=False).astype(np.float64)
    if flat.size % n or pc.min(pc.list_value_length(probabilities)).as_py() * n != flat.size:
        raise ValueError("the examples' class scores differ in length (two models' rows in one vote)")
    scores = flat.reshape(n, -1)
    means = np.add.reduceat(scores, starts, axis=0) / counts[:, None]
    votes = np.zeros_like(means)
    np.add.at(votes, (np.repeat(np.arange(len(starts)), counts), scores.argmax(axis=1)), 1)
    best = winners(votes, means)
    scored_at = None
    if "scored_at" in examples.column_names:
        column = examples.column("scored_at").combine_chunks()
        latest = np.maximum.reduceat(pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False), starts)
        scored_at = pa.array(latest, pa.int64()).cast(column.type)
    return Votes(uris.take(pa.array(starts)), starts, counts, best, means, scored_at)
