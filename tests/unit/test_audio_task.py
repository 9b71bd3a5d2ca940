"""Fast unit tests of the audio-classifier task without Ray: decoding to MFCC windows,
bad input, the model, and that the model learns tones and spoken words (tf-keras fit)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import tasks  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from support import media_audio as ma
from support.media import image_bytes
from tasks.audio_classifier import (ARCHITECTURES, PAD_VALUE, AudioClassifier, build_mfcc_lstm, mfcc_window,
                                    read_mono)
from tasks.media import MediaDecodeError

TASK = AudioClassifier()
FRAMES, N_MFCC = TASK.example_shape


def padded_frames(examples: np.ndarray) -> np.ndarray:
    """Per example, how many MFCC frames are padding (every coefficient PAD_VALUE)."""
    return (examples == PAD_VALUE).all(axis=-1).sum(axis=-1)


# --- task surface -----------------------------------------------------------------------------


def test_task_declares_the_protocol():
    assert AudioClassifier.name == "audio-classifier"
    assert TASK.reads == "bytes" and TASK.example_dtype == "float32"
    assert TASK.suffixes == (".wav", ".flac", ".ogg", ".mp3")
    assert TASK.position_columns == ("window_start_s", "window_end_s")
    assert ARCHITECTURES == ("mfcc-lstm",)


def test_registered_by_name():
    from tasks import get_task, task_names

    assert "audio-classifier" in task_names()
    assert get_task("audio-classifier") is AudioClassifier


@pytest.mark.parametrize("config", [{}, {"window_seconds": 0.5, "hop_length": 256, "n_mfcc": 20},
                                    {"sample_rate": 22050, "window_seconds": 1.5, "hop_length": 512, "n_fft": 2048}])
def test_example_shape_is_librosa_frame_count_of_a_full_window(config):
    import librosa

    task = AudioClassifier(**config)
    window = np.zeros(int(round(task.window_seconds * task.sample_rate)), np.float32)
    mfcc = librosa.feature.mfcc(y=window, sr=task.sample_rate, n_mfcc=task.n_mfcc, n_fft=task.n_fft,
                                hop_length=task.hop_length)
    assert task.example_shape == mfcc.T.shape


@pytest.mark.parametrize("config, match", [
    ({"sample_rate": 0}, "sample_rate must be positive"),
    ({"window_seconds": 0.01}, "shorter than one FFT frame"),
])
def test_bad_config_is_refused(config, match):
    with pytest.raises(ValueError, match=match):
        AudioClassifier(**config)


# --- windows and features ---------------------------------------------------------------------


@pytest.mark.parametrize("seconds, ends, padding", [
    (0.3, [0.3], [FRAMES - (1 + 4800 // 160)]),  # shorter than a window: one padded window
    (1.0, [1.0], [0]),
    (2.5, [1.0, 2.0, 2.5], [0, 0, FRAMES - (1 + 8000 // 160)]),
    (2.2, [1.0, 2.0], [0, 0]),  # a last 0.2 s is under a quarter window: dropped
    (2.25, [1.0, 2.0, 2.25], [0, 0, FRAMES - (1 + 4000 // 160)]),  # exactly a quarter: kept
])
def test_clip_becomes_windows_with_positions(seconds, ends, padding):
    decoded = TASK.decode(ma.tone_wav_bytes([330.0, 660.0], seconds))

    assert decoded.examples.shape == (len(ends), FRAMES, N_MFCC)
    assert decoded.examples.dtype == np.float32
    assert [p["window_start_s"] for p in decoded.positions] == pytest.approx([float(i) for i in range(len(ends))])
    assert [p["window_end_s"] for p in decoded.positions] == pytest.approx(ends)
    assert padded_frames(decoded.examples).tolist() == padding
    assert decoded.info["duration_s"] == pytest.approx(seconds)


def test_mfcc_window_equals_librosa_on_the_real_samples():
    import librosa

    rng = np.random.default_rng(0)
    signal = (0.2 * rng.standard_normal(16000)).astype(np.float32)
    full = mfcc_window(signal, 16000, 16000, 13, 400, 160)
    short = mfcc_window(signal[:7000], 16000, 16000, 13, 400, 160)

    reference_full = librosa.feature.mfcc(y=signal, sr=16000, n_mfcc=13, n_fft=400, hop_length=160).T
    reference_short = librosa.feature.mfcc(y=signal[:7000], sr=16000, n_mfcc=13, n_fft=400, hop_length=160).T
    np.testing.assert_allclose(full, reference_full, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(short[: len(reference_short)], reference_short, rtol=1e-5, atol=1e-3)
    assert (short[len(reference_short):] == PAD_VALUE).all()


def test_silence_is_not_an_error_and_never_looks_like_padding():
    decoded = TASK.decode(ma.encode_audio(np.zeros(24000), 16000))

    assert decoded.examples.shape == (2, FRAMES, N_MFCC)
    assert np.isfinite(decoded.examples).all()
    assert padded_frames(decoded.examples).tolist() == [0, FRAMES - (1 + 8000 // 160)]


# --- sample formats ---------------------------------------------------------------------------


VARIANTS = {
    "8-bit": {"subtype": "PCM_U8"}, "24-bit": {"subtype": "PCM_24"}, "32-bit": {"subtype": "PCM_32"},
    "float": {"subtype": "FLOAT"}, "stereo": {"channels": 2}, "8 kHz": {"sample_rate": 8000},
    "11.025 kHz": {"sample_rate": 11025}, "44.1 kHz stereo 24-bit": {"sample_rate": 44100, "channels": 2, "subtype": "PCM_24"},
    "48 kHz float": {"sample_rate": 48000, "subtype": "FLOAT"}, "flac": {"fmt": "FLAC"},
    "ogg vorbis": {"fmt": "OGG", "subtype": "VORBIS"},
    "mp3 22.05 kHz": {"fmt": "MP3", "subtype": "MPEG_LAYER_III", "sample_rate": 22050},
}


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_sample_formats_decode_to_the_same_windows(variant):
    tune = ([440.0, 880.0, 660.0], 1.5)
    reference = TASK.decode(ma.tone_wav_bytes(*tune))
    decoded = TASK.decode(ma.tone_wav_bytes(*tune, **VARIANTS[variant]))

    assert decoded.examples.shape == reference.examples.shape == (2, FRAMES, N_MFCC)
    assert [p["window_end_s"] for p in decoded.positions] == pytest.approx([1.0, 1.5], abs=1e-3)
    real = slice(0, 1 + 8000 // 160)  # the frames that are real in both windows
    similarity = np.corrcoef(decoded.examples[:, real].ravel(), reference.examples[:, real].ravel())[0, 1]
    assert similarity > 0.99


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_integer_and_float_samples_are_scaled_to_unit_range(subtype):
    signal, info = read_mono(ma.tone_wav_bytes(440.0, 0.5, subtype=subtype, amplitude=0.5), 16000, 60.0)

    assert signal.dtype == np.float32
    assert np.abs(signal).max() == pytest.approx(0.5, abs=0.01)
    assert info == {"duration_s": 0.5, "source_sample_rate": 16000, "channels": 1}


def test_float_samples_beyond_full_scale_are_clipped():
    signal, _ = read_mono(ma.tone_wav_bytes(440.0, 0.5, subtype="FLOAT", amplitude=3.0), 16000, 60.0)

    assert np.abs(signal).max() == pytest.approx(1.0)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("make, match", [
    (lambda: b"", r"^empty object \(0 bytes\)$"),
    (ma.header_only_wav_bytes, "^no audio samples"),
    (ma.truncated_wav_bytes, "^no audio samples"),
    (ma.text_as_wav_bytes, "^not audio: looks like text$"),
    (lambda: image_bytes("PNG"), "^not audio: looks like a PNG image$"),
    (lambda: image_bytes("JPEG"), "^not audio: looks like a JPEG image$"),
    (ma.mp4_header_bytes, "^not audio: looks like an MP4/MOV container$"),
    (ma.corrupt_wav_bytes, r"^not decodable audio \(.*fmt"),
    (lambda: bytes(range(256)) * 8, r"^not decodable audio \(Format not recognised"),
], ids=["empty", "header-only", "truncated", "text", "png", "jpeg", "mp4", "corrupt-fmt", "binary-junk"])
def test_bad_input_raises_with_a_reason(make, match):
    with pytest.raises(MediaDecodeError, match=match) as raised:
        TASK.decode(make())
    assert raised.value.stage == "decode"


def test_too_long_audio_is_refused_from_the_header():
    # Ten minutes of (well compressed) FLAC silence: the header states the length.
    data = ma.encode_audio(np.zeros(8000 * 600), 8000, fmt="FLAC")
    started = time.monotonic()

    with pytest.raises(MediaDecodeError, match=r"^audio too long: 600\.0 s \(limit 60 s\)$"):
        AudioClassifier(max_seconds=60).decode(data)
    assert time.monotonic() - started < 0.5  # refused without decoding 4.8 M samples


def test_deadline_in_the_past_stops_decoding():
    data = ma.tone_wav_bytes(440.0, 3.0)

    with pytest.raises(MediaDecodeError, match="^decode time limit exceeded"):
        TASK.decode(data, deadline=time.monotonic() - 1.0)
    assert len(TASK.decode(data, deadline=time.monotonic() + 60.0).examples) == 3


# --- the model --------------------------------------------------------------------------------


def test_model_builds_and_outputs_class_probabilities():
    model = TASK.build_model("mfcc-lstm", num_classes=3, learning_rate=1e-3)
    examples = TASK.decode(ma.tone_wav_bytes([300.0, 500.0], 1.6)).examples

    probabilities = model(examples, training=False).numpy()
    assert model.output_shape == (None, 3)
    assert model.loss == "sparse_categorical_crossentropy"
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown architecture 'cnn'; valid: mfcc-lstm"):
        TASK.build_model("cnn", 3, 1e-3)


def test_padded_frames_do_not_influence_the_model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    model = TASK.build_model("mfcc-lstm", 2, 1e-3)
    # Statistics as a trained model would have them, not the identity of a fresh one.
    norm = next(layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization))
    norm.set_weights([np.random.default_rng(1).uniform(0.5, 2.0, N_MFCC).astype(np.float32) * scale
                      for scale in (1.0, 0.1, -300.0, 900.0)])  # gamma, beta, moving mean, moving variance
    example = TASK.decode(ma.tone_wav_bytes(700.0, 0.4)).examples  # 41 real frames, 60 padded
    real = FRAMES - int(padded_frames(example)[0])
    unpadded = build_mfcc_lstm((real, N_MFCC), 2)
    unpadded.set_weights(model.get_weights())

    np.testing.assert_allclose(model(example, training=False).numpy(),
                               unpadded(example[:, :real], training=False).numpy(), rtol=1e-5, atol=1e-6)
    assert real == 41


def test_fitted_normalisation_ignores_padded_frames_and_is_part_of_the_model():
    # The statistics are fitted on the training set (summable moments per batch, as the train
    # job adds them up across Ray Data blocks) and become the model's constants.
    batch = np.random.default_rng(0).normal(-50.0, 30.0, (3, FRAMES, N_MFCC)).astype(np.float32)
    batch[0, 40:] = PAD_VALUE
    moments = TASK.feature_moments(batch[:1]) + TASK.feature_moments(batch[1:])
    statistics = TASK.feature_statistics(moments)
    model = TASK.build_model("mfcc-lstm", 2, 1e-3, statistics=statistics)
    masking, norm = model.layers[0], model.layers[1]
    masked = masking(batch)

    assert statistics["frames"] == 40 + 2 * FRAMES and not norm.trainable
    normalised = norm(masked, training=True, mask=masked._keras_mask).numpy()
    real = np.concatenate([batch[0, :40], batch[1], batch[2]])
    expected = (batch[1] - real.mean(axis=0)) / np.sqrt(real.var(axis=0) + norm.epsilon)
    np.testing.assert_allclose(normalised[1], expected, rtol=1e-4, atol=1e-4)


def test_model_builds_under_multi_worker_mirrored_strategy():
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one local worker
    with strategy.scope():
        model = TASK.build_model("mfcc-lstm", 2, 1e-3)
    examples = TASK.decode(ma.tone_wav_bytes(440.0, 2.0)).examples
    dataset = tf.data.Dataset.from_tensor_slices((examples, np.array([0, 1]))).batch(2)

    history = model.fit(dataset, epochs=1, verbose=0)
    assert model.output_shape == (None, 2)
    assert np.isfinite(history.history["loss"][0])


# --- learnability -----------------------------------------------------------------------------


def _windows_and_labels(root, class_names):
    examples, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((root / name).glob("*.wav")):
            decoded = TASK.decode(path.read_bytes())
            examples.append(decoded.examples)
            labels += [label] * len(decoded.examples)
    return np.concatenate(examples), np.array(labels)


def _held_out_accuracy(train_root, test_root, class_names, epochs, learning_rate):
    import tensorflow as tf

    x_train, y_train = _windows_and_labels(train_root, class_names)
    x_test, y_test = _windows_and_labels(test_root, class_names)
    tf.keras.utils.set_random_seed(0)
    model = TASK.build_model("mfcc-lstm", len(class_names), learning_rate)
    model.fit(x_train, y_train, epochs=epochs, batch_size=16, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"{class_names}: {len(x_train)} train windows, {len(x_test)} held-out windows, accuracy {accuracy:.3f}")
    return accuracy


def test_model_learns_tone_classes(tmp_path):
    splits = ma.write_tone_dataset(tmp_path, per_class_train=40, per_class_test=10, seed=0)

    assert _held_out_accuracy(splits["train"], splits["test"], ["high", "low"], epochs=4, learning_rate=1e-3) > 0.8


def test_model_learns_spoken_words_from_unheard_voices(tmp_path):
    # The held-out words are spoken by voice variants that are not in the training set.
    ma.spoken_word_wavs(tmp_path / "train", ("yes", "no"), per_word=30, seed=0,
                        variants=("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3"))
    ma.spoken_word_wavs(tmp_path / "test", ("yes", "no"), per_word=10, seed=1, variants=("m6", "m7", "f4", "f5"))

    assert _held_out_accuracy(tmp_path / "train", tmp_path / "test", ["no", "yes"], epochs=8, learning_rate=3e-3) > 0.8
