"""A corpus of bad and unusual media, made by code, for the scoring pipelines' bad-input tests.

Each kind is one maker `(seed) -> {key: bytes}` with the outcome the pipeline must
give it: `scored` (decodable, normalised), `error` (one errors row whose reason matches
`reason`) or `partial` (examples scored and a `decode-partial` errors row). Keys are
relative to a modality's prefix. `random_corpus` draws a seeded mix of kinds under
random names, for a corpus no test was written against. Nothing is downloaded; every
maker is deterministic for its seed and small (the long audio file is the largest, 4.8 MB).
"""

from __future__ import annotations

import random
from pathlib import Path

from support.badmedia.kinds import (ERROR, KINDS, LONG_AUDIO_SECONDS, MODALITIES, ODD_NAMES, PARTIAL, SCORED, TASKS,
                                    Kind, kind)

# The kinds register themselves on import, in the order `corpus` lists them: images, video, audio.
from support.badmedia import images, video, audio  # noqa: F401  # isort: skip
from support.badmedia.images import exif_rotated_jpeg_bytes, jpeg_declaring, png_declaring
from support.media import image_bytes

__all__ = ["ERROR", "KINDS", "LONG_AUDIO_SECONDS", "MODALITIES", "ODD_NAMES", "PARTIAL", "SCORED", "TASKS", "Kind",
           "corpus", "exif_rotated_jpeg_bytes", "image_bytes", "jpeg_declaring", "kind", "png_declaring",
           "random_corpus", "random_name"]


def corpus(modality: str | None = None, seed: int = 0) -> dict[str, tuple[Kind, bytes]]:
    """Every kind (of one modality, or all), made with `seed`: key -> (kind, bytes)."""
    out: dict[str, tuple[Kind, bytes]] = {}
    for item in KINDS.values():
        if modality in (None, item.modality):
            for key, data in item.make(seed).items():
                if key in out:
                    raise ValueError(f"kind {item.name!r} repeats key {key!r}")
                out[key] = (item, data)
    return out


# --- a random corpus ----------------------------------------------------------------------------

_NAME_PIECES = ("clip", "IMG_", "Scan", "ü", "日本", "é", " ", "%", "%2F", "#", "+", "=", "&", "?", "(1)",
                "[x]", "'", "..", "~", "$", "@", ",", ";", "!", "—", "😀")


def random_name(rng: random.Random) -> str:
    """A random key stem built of characters that trouble URL and path handling."""
    pieces = [rng.choice(_NAME_PIECES) for _ in range(rng.randint(1, 5))]
    folder = rng.choice(["", "", "sub/", "a b/", "x..y/", "ü/"])
    stem = "".join(pieces).strip() or "blank"
    return folder + ("n" + stem if stem.startswith(".") else stem)  # a leading dot would hide it


def random_corpus(seed: int, count: int = 24) -> dict[str, dict[str, tuple[Kind, bytes]]]:
    """`count` objects of random kinds, each made with its own random seed, under random
    names, keeping each kind's own extension: modality -> {key: (kind, bytes)}."""
    rng = random.Random(seed)
    out: dict[str, dict[str, tuple[Kind, bytes]]] = {m: {} for m in MODALITIES}
    kinds = sorted(KINDS)
    while sum(len(v) for v in out.values()) < count:
        chosen = KINDS[rng.choice(kinds)]
        if chosen.name == "audio-long":
            continue  # minutes of windows: too slow for a quick random run
        made = chosen.make(rng.randrange(1 << 30))
        key, data = rng.choice(sorted(made.items()))
        suffix = Path(key).suffix
        name = f"{random_name(rng)}-{len(out[chosen.modality])}{suffix}"
        out[chosen.modality][name] = (chosen, data)
    return out
