"""The bad-media corpus (tests/support/badmedia/) through the real score jobs, and its kinds through
the decoders alone.

Integration tests upload every kind to the real local S3 store and score it on the real
local Ray with seeded, untrained models: each object must be scored or refused with a
reason naming the problem, the job must return, and no input object may change.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from support import badmedia as bm

from tasks.media import MediaDecodeError

BUCKET = "it-badmedia"
TASKS = bm.TASKS


# --- the corpus and the decoders, without Ray ----------------------------------------------------


def test_corpus_covers_25_kinds_across_modalities_and_is_seeded():
    per_modality = Counter(kind.modality for kind in bm.KINDS.values())
    assert len(bm.KINDS) >= 25 and set(per_modality) == set(bm.MODALITIES), per_modality
    assert all(kind.reason for kind in bm.KINDS.values() if kind.expect != bm.SCORED)
    again = {key: data for key, (_, data) in bm.corpus("image", seed=4).items()}
    assert again == {key: data for key, (_, data) in bm.corpus("image", seed=4).items()}
    assert again != {key: data for key, (_, data) in bm.corpus("image", seed=5).items()}
    mix = bm.random_corpus(11, count=12)
    assert sum(map(len, mix.values())) == 12
    assert {m: sorted(v) for m, v in mix.items()} == {m: sorted(v) for m, v in bm.random_corpus(11, 12).items()}


def _decode_alone(kind: bm.Kind, key: str, data: bytes):
    """What the modality's task decodes the object to (DecodedMedia), as a worker would."""
    from tasks import get_task

    name, _, config = TASKS[kind.modality]
    task = get_task(name)(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    if task.reads == "bytes":
        return task.decode(data, deadline=time.monotonic() + 60)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("spool" + Path(key).suffix)
        path.write_bytes(data)
        return task.decode(str(path), deadline=time.monotonic() + 60)


@pytest.mark.parametrize("kind_name", sorted(name for name in bm.KINDS if name != "audio-long"))
def test_each_kind_decodes_or_is_refused_with_its_reason(kind_name):
    kind = bm.KINDS[kind_name]
    for key, data in kind.make(0).items():
        if kind.expect == bm.ERROR:
            with pytest.raises(MediaDecodeError, match=kind.reason):
                _decode_alone(kind, key, data)
            continue
        decoded = _decode_alone(kind, key, data)
        assert len(decoded.examples) >= 1, key
        assert np.isfinite(np.asarray(decoded.examples, dtype=np.float64)).all(), key
        if kind.expect == bm.PARTIAL:
            assert decoded.warning and re.search(kind.reason, decoded.warning), (key, decoded.warning)
        else:
            assert not decoded.warning, (key, decoded.warning)


def test_exif_orientation_is_applied():
    from tasks.image_classifier import decode_image

    # Stored 48x24, red left; orientation 6 displays it 24x48, red on top.
    pixels = decode_image(bm.exif_rotated_jpeg_bytes(), (32, 32, 3)).astype(int)
    top, bottom = pixels[:12].mean(axis=(0, 1)), pixels[-12:].mean(axis=(0, 1))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], (top, bottom)


def test_declared_bombs_are_refused_before_decoding():
    from tasks.image_classifier import decode_image

    began = time.perf_counter()
    for data, declared in ((bm.png_declaring(60000, 60000), "3,600,000,000"),
                           (bm.jpeg_declaring(16000, 16000), "256,000,000"),
                           (bm.jpeg_declaring(10000, 10000), "10000x10000")):
        with pytest.raises(MediaDecodeError, match=f"image too large: {declared}"):
            decode_image(data, (32, 32, 3))
    assert time.perf_counter() - began < 2.0  # nothing was decoded


def test_truncated_wav_keeps_its_windows_with_a_warning():
    from tasks.audio_classifier import AudioClassifier

    decoded = AudioClassifier().decode(bm.KINDS["audio-truncated-wav"].make(0)["truncated.wav"])
    assert len(decoded.examples) == 2 and decoded.info["duration_s"] == pytest.approx(1.5)
    assert decoded.warning == "truncated WAV: the header declares 3.0 s of audio, the file holds 1.5 s"


@pytest.mark.parametrize("key", ["take#2.jpg", "what?x=1.jpg", "100%25 sure.jpg", "dir/../up.jpg"])
def test_object_keys_survive_uri_parsing(key):
    from jobs.storage.objects import parse_uri

    location = parse_uri(f"s3://{BUCKET}/{key}")
    assert (location.bucket, location.key, location.uri) == (BUCKET, key, f"s3://{BUCKET}/{key}")


# --- through the score jobs on the real local stack ----------------------------------------------


