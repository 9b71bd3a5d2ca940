"""The MFCC + LSTM audio classifier: decoder (audio bytes to MFCC windows) and model.

An audio object becomes consecutive, non-overlapping windows of `window_seconds`, one
model example each: a (frames, n_mfcc) float32 MFCC matrix. A file is labelled (at
scoring) by the per-window predictions, which `jobs` aggregates per object.
"""

from __future__ import annotations

import functools
import io
import time
from dataclasses import dataclass, field

import numpy as np

from tasks.definition import Architecture, TaskDefinition
from tasks.media import MediaDecodeError
from tasks.protocols import Classifier, FittedFeatures
from tasks.registry import DecodedMedia, Task, define, register

MFCC_LSTM = Architecture("mfcc-lstm", refused_hint="mfcc-lstm takes its input shape from the `audio` section")
ARCHITECTURES = (MFCC_LSTM.name,)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
# A last, shorter window is kept when it holds at least this fraction of a window; a
# clip shorter than one window is always kept (as one padded window).
MIN_LAST_WINDOW_FRACTION = 0.25
# MFCC frames past the real end of a short window hold this value in every coefficient,
# and the model's Masking layer skips them. It cannot collide with real audio: librosa
# clips the log-mel spectrum to an 80 dB range (top_db), so every coefficient but c0 is
# bounded by 40 * sqrt(n_mels) (~453 for the default 128 mel bands), and c1 is never
# -1000. 0.0 has no such guarantee (it is a legal value of every coefficient), and
# silence is no special case: it gives c0 = -100 * sqrt(n_mels), c1.. = 0.
PAD_VALUE = -1000.0
# Decoding reads this many seconds of the source at a time, so memory holds the mono,
# resampled signal plus one block, whatever the source's rate and channel count.
_READ_BLOCK_SECONDS = 10.0
_LSTM_UNITS = 64
_NORM_EPSILON = 1e-3

# Leading bytes of formats that are surely not audio, for a clear error before decoding.
_NOT_AUDIO_SIGNATURES = (
    (0, b"\xff\xd8\xff", "a JPEG image"), (0, b"\x89PNG", "a PNG image"), (0, b"GIF8", "a GIF image"),
    (8, b"WEBP", "a WebP image"), (8, b"AVI ", "an AVI video"), (4, b"ftyp", "an MP4/MOV container"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"), (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"), (0, b"\x1f\x8b", "a gzip archive"),
)


@dataclass(frozen=True)
class DecodedAudio(DecodedMedia):
    """DecodedMedia plus facts about the source (`duration_s`, rate, channels) for the
    per-file table; `jobs.workers.decoding` reads `info` when a decoder provides it."""

    info: dict = field(default_factory=dict)


def build_mfcc_lstm(example_shape: tuple[int, int], num_classes: int, learning_rate: float = 1e-3,
                    statistics: dict | None = None):
    """The audio model, compiled: Masking -> fitted normalisation -> LSTM(64) over every frame
    -> mean over the real frames -> softmax.

    `statistics` (`feature_statistics` of the training examples: per-coefficient `mean` and
    `variance`) become the constants of a frozen BatchNormalization layer, so the exported
    model carries them and scoring normalises exactly as training did; without them the
    inputs go in unscaled (c0 ~ -1100..0, the rest ~ +-50), which learns badly.

    Measured on 4 espeak-ng words, 8 voices to train and 2 unheard to test, 10 epochs
    (docs/training.md, "The audio classifier"): the seeds' model (batch statistics learnt by
    BatchNorm, the LSTM's last state) reached 0.54-0.79 per file; fixed statistics alone
    0.75-1.0; with the LSTM's outputs averaged over the real frames, 1.0 for every seed.
    The average gives every frame a direct path to the loss; the last state of a 101-step
    sequence must carry a word spoken in its first half through the silence after it.

    The loss is sparse categorical cross-entropy (integer class ids as labels). Nothing
    needs `adapt()`, so it builds inside `strategy.scope()` for distributed training.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    n_mfcc = example_shape[-1]
    mean = [float(v) for v in (statistics or {}).get("mean", [0.0] * n_mfcc)]
    variance = [float(v) for v in (statistics or {}).get("variance", [1.0] * n_mfcc)]
    model = tf.keras.Sequential(
        [
            layers.Input(shape=tuple(example_shape)),
            layers.Masking(mask_value=PAD_VALUE),
            # Frozen (trainable=False runs it in inference mode): its moving statistics are
            # the training set's, never updated, and it is mask-aware like every layer here.
            layers.BatchNormalization(
                trainable=False, epsilon=_NORM_EPSILON, name="fitted_normalisation",
                moving_mean_initializer=tf.keras.initializers.Constant(mean),
                moving_variance_initializer=tf.keras.initializers.Constant(variance)),
            layers.LSTM(_LSTM_UNITS, return_sequences=True),
            layers.GlobalAveragePooling1D(),  # the mean over the frames the mask keeps
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="mfcc_lstm",
    )
    model.compile(
        # AMSGrad: Adam's step is m / sqrt(v), and once the loss is ~0, v decays towards 0, so
        # one unlucky batch makes every weight jump by ~3x the learning rate at once; seen:
        # a model at 100% train accuracy fell back to chance at epoch 20 and stayed there.
        # AMSGrad divides by the largest v seen instead, which rules that jump out.
        optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate, amsgrad=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def feature_moments(examples: np.ndarray) -> np.ndarray:
    """(3, n_mfcc) float64: the count, sum and sum of squares of each coefficient over the
    real (unpadded) frames of `examples`; moments of several batches add up."""
    frames = examples.reshape(-1, examples.shape[-1]).astype(np.float64)
    real = frames[(frames != PAD_VALUE).any(axis=1)]
    return np.stack([np.full(frames.shape[1], len(real), np.float64), real.sum(axis=0), (real ** 2).sum(axis=0)])


def feature_statistics(moments: np.ndarray) -> dict:
    """Per-coefficient `mean` and `variance` (and the `frames` they come from) of summed
    `feature_moments`, as JSON-ready lists for the model and its metadata."""
    count = float(moments[0][0])
    if count == 0:
        raise ValueError("no real MFCC frames to fit the normalisation on")
    mean = moments[1] / count
    variance = np.maximum(moments[2] / count - mean ** 2, 0.0)
    return {"mean": [round(float(v), 6) for v in mean], "variance": [round(float(v), 6) for v in variance],
            "frames": int(count)}


def read_mono(data: bytes, sample_rate: int, max_seconds: float, deadline: float | None = None):
    """Audio bytes (WAV, FLAC, OGG, MP3) to a mono float32 signal at `sample_rate`.

    Integer and float samples alike end up in [-1, 1] (float files are clipped, NaN is
    silence); channels are averaged; resampling uses soxr at librosa's default quality
    ("soxr_hq"), streamed block by block.

    A WAV file that ends inside its data chunk (an interrupted upload) decodes to the
    samples that are there, and info gets a `warning` saying how much is missing.

    Returns:
        (signal, info) with info `duration_s`, `source_sample_rate`, `channels` and,
        for a truncated file, `warning`.

    Raises:
        MediaDecodeError: empty, not audio, no samples, undecodable, longer than
            `max_seconds` (refused from the header when it states the length), or past
            the deadline.
    """
    import soundfile as sf

    if not data:
        raise MediaDecodeError("empty object (0 bytes)")
    looks_like = _sniff_not_audio(data)
    if looks_like:
        raise MediaDecodeError(f"not audio: looks like {looks_like}")
    try:
        with sf.SoundFile(io.BytesIO(data)) as source:
            rate, channels = source.samplerate, source.channels
            pieces, read = _read_resampled(source, sample_rate, max_seconds, deadline)
    except sf.SoundFileError as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        raise MediaDecodeError(f"not decodable audio ({reason})") from None
    signal = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if read == 0 or signal.size == 0:
        raise MediaDecodeError("no audio samples (the data holds no decodable frames)")
    np.nan_to_num(signal, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(signal, -1.0, 1.0, out=signal)  # float sources may exceed full scale; resampling overshoots
    info = {"duration_s": read / rate, "source_sample_rate": rate, "channels": channels}
    warning = _truncation_warning(data, read / rate)
    if warning:
        info["warning"] = warning
    return signal, info


def _read_resampled(source, sample_rate: int, max_seconds: float,
                    deadline: float | None) -> tuple[list[np.ndarray], int]:
    """An open `soundfile.SoundFile` read block by block, each block averaged to mono and
    resampled to `sample_rate`: the signal's pieces, and how many source frames were read.

    Raises:
        MediaDecodeError: no samples, longer than `max_seconds`, or past the deadline.
    """
    import soxr

    rate, frames = source.samplerate, source.frames
    if frames == 0:
        raise MediaDecodeError("no audio samples (a header without data)")
    if frames / rate > max_seconds:
        raise MediaDecodeError(f"audio too long: {frames / rate:.1f} s (limit {max_seconds:g} s)")
    # The header may understate the length (e.g. a VBR MP3): stop reading there too.
    limit = int(np.ceil(max_seconds * rate))
    resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ") \
        if rate != sample_rate else None
    pieces, read = [], 0
    for block in source.blocks(blocksize=int(_READ_BLOCK_SECONDS * rate), dtype="float32", always_2d=True):
        _check_deadline(deadline, f"reading audio at {read / rate:.0f} s")
        read += len(block)
        if read > limit:
            raise MediaDecodeError(f"audio too long: more than {max_seconds:g} s")
        mono = block.mean(axis=1, dtype=np.float32)
        pieces.append(resampler.resample_chunk(mono) if resampler else mono)
    if resampler:
        pieces.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    return pieces, read


def _truncation_warning(data: bytes, seconds_read: float) -> str | None:
    """The `warning` of a WAV file that ends inside its data chunk; None for a whole file."""
    missing = _wav_data_missing(data)
    if not missing:
        return None
    # libsndfile silently shortens such a file to the data present: scored as it
    # is, the object would look whole. Like a truncated video, it keeps its windows
    # and gets a decode-partial errors row.
    declared_s = seconds_read * (1 + missing[0] / max(missing[1], 1))
    return (f"truncated WAV: the header declares {declared_s:.1f} s of audio, the file holds "
            f"{seconds_read:.1f} s")


def _wav_data_missing(data: bytes) -> tuple[int, int] | None:
    """(bytes missing, bytes present) of a RIFF/WAVE file's data chunk when the file ends
    before the chunk's declared end; None for complete files and other formats."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    position = 12
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4: position + 8], "little")
        if data[position: position + 4] == b"data":
            present = len(data) - position - 8
            # 0 and 0xFFFFFFFF mark a length the writer never filled in (streamed WAVs).
            return (size - present, present) if present < size < 0xFFFFFFFF else None
        position += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def window_lengths(num_samples: int, window: int) -> list[int]:
    """Real (unpadded) lengths of the consecutive windows cut from `num_samples`."""
    full, rest = divmod(num_samples, window)
    keep_rest = rest > 0 and (full == 0 or rest >= MIN_LAST_WINDOW_FRACTION * window)
    return [window] * full + ([rest] if keep_rest else [])


def mfcc_window(samples: np.ndarray, sample_rate: int, window: int, n_mfcc: int, n_fft: int,
                hop_length: int) -> np.ndarray:
    """(1 + window // hop_length, n_mfcc) float32 MFCCs of up to `window` samples.

    Equal to `librosa.feature.mfcc(y=samples, ...)` transposed (its defaults: 128 mel
    bands, top_db 80, constant padding at the edges), with the mel basis computed once;
    frames past the real end of a short window are PAD_VALUE.
    """
    import librosa

    real_frames = 1 + len(samples) // hop_length
    padded = np.zeros(window, np.float32)
    padded[: len(samples)] = samples
    power = np.abs(librosa.stft(padded, n_fft=n_fft, hop_length=hop_length)) ** 2
    log_mel = librosa.power_to_db(_mel_basis(sample_rate, n_fft) @ power)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc).T.astype(np.float32)
    # Frames whose centre lies in the padding are exactly those librosa would not have
    # produced for the unpadded samples; the ones before them see the same zeros as
    # librosa's own edge padding, so they equal librosa's values.
    mfcc[real_frames:] = PAD_VALUE
    return mfcc


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft)


def _check_deadline(deadline: float | None, doing: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise MediaDecodeError(f"decode time limit exceeded while {doing}")


def _sniff_not_audio(data: bytes) -> str | None:
    """What the bytes look like when they are surely not audio; None when they may be."""
    for offset, magic, what in _NOT_AUDIO_SIGNATURES:
        if data[offset: offset + len(magic)] == magic:
            return what
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of the head
            return None
        text = head[: exc.start].decode("utf-8")
    if text and all(ch.isprintable() or ch in "\t\n\r\f" for ch in text):
        return "text"
    return None


@register("audio-classifier")
@dataclass(frozen=True)
class AudioClassifier(Task):
    """Classifies audio by MFCC windows with an LSTM: one example per window."""

    sample_rate: int = 16000
    n_mfcc: int = 13
    window_seconds: float = 1.0
    hop_length: int = 160  # 10 ms at 16 kHz
    n_fft: int = 400  # 25 ms at 16 kHz
    max_seconds: float = 3600.0

    reads = "bytes"
    suffixes = AUDIO_SUFFIXES
    position_columns = ("window_start_s", "window_end_s")
    example_dtype = "float32"
    output_tables = ("predictions", "files")  # (one row per window, one row per audio file)
    count_column = "windows_scored"

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mfcc", "window_seconds", "hop_length", "n_fft", "max_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.window_samples < self.n_fft:
            raise ValueError(f"window_seconds={self.window_seconds} is shorter than one FFT frame "
                             f"(n_fft={self.n_fft} samples at {self.sample_rate} Hz)")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def example_shape(self) -> tuple[int, int]:
        # librosa centres frames (center=True): frame t covers sample t * hop_length.
        return (1 + self.window_samples // self.hop_length, self.n_mfcc)

    def decode(self, data: bytes, deadline: float | None = None) -> DecodedAudio:
        """Audio bytes to one MFCC example per window, with each window's start and real end.

        Raises:
            MediaDecodeError: see `read_mono`; also when `deadline` passes between windows.
        """
        signal, info = read_mono(data, self.sample_rate, self.max_seconds, deadline)
        warning = info.pop("warning", None)
        window = self.window_samples
        lengths = window_lengths(len(signal), window)
        examples = np.empty((len(lengths), *self.example_shape), np.float32)
        positions = []
        for i, length in enumerate(lengths):
            _check_deadline(deadline, f"computing MFCCs, window {i + 1} of {len(lengths)}")
            start = i * window
            examples[i] = mfcc_window(signal[start: start + length], self.sample_rate, window, self.n_mfcc,
                                      self.n_fft, self.hop_length)
            # Resampling can add a fraction of a sample: no window ends after the source.
            end = min((start + length) / self.sample_rate, info["duration_s"])
            positions.append({"window_start_s": start / self.sample_rate, "window_end_s": end})
        return DecodedAudio(examples, positions, warning, info=info)

    def feature_moments(self, examples: np.ndarray) -> np.ndarray:
        """Summable moments of a batch of examples; the train job fits the model's
        normalisation on the whole training set from them (`feature_statistics`)."""
        return feature_moments(examples)

    def feature_statistics(self, moments: np.ndarray) -> dict:
        return feature_statistics(moments)

    def build_model(self, architecture: str, num_classes: int, learning_rate: float,
                    statistics: dict | None = None):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        return build_mfcc_lstm(self.example_shape, num_classes, learning_rate, statistics)


# The `audio` section shapes the model's input (rate, MFCCs, window): a train spec records it.
DEFINITION = define(TaskDefinition("audio-classifier", AudioClassifier, (MFCC_LSTM,), modality="audio",
                                   sections=("audio",), filled_sections=("audio",), example_table="windows"))
# mypy checks the class against the contract the job layers rely on (tasks.protocols).
_CONTRACT: type[Classifier] = AudioClassifier
_FITTED: type[FittedFeatures] = AudioClassifier
