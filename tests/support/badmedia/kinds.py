"""The corpus's kinds: each a maker `(seed) -> {key: bytes}` with the outcome the pipeline must
give its objects, registered by `@kind` (in `images`, `video`, `audio`); the constants the
makers and the tests share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MODALITIES = ("image", "video", "audio")
# The task, architecture and task config that decode and score each modality's corpus.
TASKS = {"image": ("image-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]}),
         "video": ("video-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]}),
         "audio": ("audio-classifier", "mfcc-lstm", {"sample_rate": 16000, "n_mfcc": 13, "window_seconds": 1.0})}
SCORED, ERROR, PARTIAL = "scored", "error", "partial"
# Seconds of the long audio file: 10 min at 8 kHz, 8-bit: 4.8 MB, 600 one-second windows.
LONG_AUDIO_SECONDS = 600
# Key names that break naive URL handling: each is a real object with good media in it.
ODD_NAMES = {
    "space": "with space {n}",
    "unicode": "ünïcødé 日本語 {n}",
    "percent": "100% sure {n}",
    "percent-escape": "not%20a%20space {n}",  # must not be unquoted into spaces
    "hash": "take#{n}",  # must not be cut as a URL fragment
    "question": "what?{n}=1",  # must not be cut as a URL query
    "plus": "a+b {n}",  # '+' is a space only in form encoding
    "dots": "dir..{n}/up..{n}",  # '..' inside names (SeaweedFS refuses whole '.' and '..' segments)
    "tab": "tab\there {n}",
    "symbols": "~$@&=,;!'()[] {n}",
}


@dataclass(frozen=True)
class Kind:
    """One kind of bad or unusual object and what the pipeline must do with it."""

    name: str
    modality: str
    expect: str  # SCORED, ERROR or PARTIAL
    make: Callable[[int], dict[str, bytes]]
    reason: str = ""  # a regular expression the errors row's reason must match (ERROR, PARTIAL)


KINDS: dict[str, Kind] = {}


def kind(modality: str, expect: str, reason: str = "", name: str | None = None):
    """Register a maker as a corpus kind (its name: the function name, '_' to '-')."""

    def register(make: Callable[[int], dict[str, bytes]]) -> Callable[[int], dict[str, bytes]]:
        kind_name = name or make.__name__.strip("_").replace("_", "-")
        KINDS[kind_name] = Kind(kind_name, modality, expect, make, reason)
        return make

    return register
