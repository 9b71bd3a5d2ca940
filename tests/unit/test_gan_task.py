"""Fast unit tests of the gan task: the DCGAN, its training step, saving and sampling (no Ray)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from support import media
from support.paths import python_path
from tasks.gan import (GENERATE_BATCH, GRID_PADDING, GanTask, export_generator, generate_images, latent_vector,
                       load_gan, load_generator, sample_grid_png, save_gan, to_uint8)
from tasks.image_classifier import IMAGE_SUFFIXES
from tasks.registry import Task

TASK = GanTask()
BLOB, BACKGROUND = 230, 20
DARK = 77  # below 0.3 of full scale


def _blob_images(count: int, seed: int) -> np.ndarray:
    """Bright discs on a dark background, 28x28x1 uint8: about 92 % of pixels are dark."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    images = np.empty((count, 28, 28, 1), dtype=np.uint8)
    for image in images:
        cy, cx, radius = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(3, 6)
        image[..., 0] = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2, BLOB, BACKGROUND)
    return images


def _discriminator_accuracy(model, real: np.ndarray, fake: np.ndarray) -> float:
    """Mean of D's accuracy on real (logit > 0) and on fake (logit < 0) images, uint8 inputs."""
    def logits(images):
        return model.discriminator(images.astype(np.float32) / 127.5 - 1.0, training=False).numpy()[:, 0]

    return float((np.mean(logits(real) > 0) + np.mean(logits(fake) < 0)) / 2)


@pytest.fixture(scope="module")
def trained():
    """A DCGAN trained for 3 epochs on 256 blob images (batch 32, learning rate 1e-3), and
    what its generator made before training. Deterministic for the seed on CPU."""
    import tensorflow as tf

    images = _blob_images(256, seed=0)
    tf.keras.utils.set_random_seed(0)
    model = TASK.build_model("dcgan", 0, 1e-3)
    before = generate_images(model.generator, (7, 0, 128))
    dataset = tf.data.Dataset.from_tensor_slices(images).shuffle(256, seed=0).batch(32)  # images only
    history = model.fit(dataset, epochs=3, verbose=0).history
    return {"model": model, "images": images, "before": before, "history": history}


# --- the task protocol -----------------------------------------------------------------------


def test_task_declares_the_protocol():
    assert isinstance(TASK, Task) and GanTask.name == "gan"
    assert (TASK.reads, TASK.suffixes, TASK.position_columns) == ("bytes", IMAGE_SUFFIXES, ())
    assert (TASK.example_shape, TASK.example_dtype) == ((28, 28, 1), "uint8")
    assert (TASK.output_tables, TASK.count_column) == (("index", None), "")
    assert (TASK.image_shape, TASK.latent_dim) == ((28, 28, 1), 100)
    assert GanTask(image_shape=(32, 32, 3)).example_shape == (32, 32, 3)


def test_task_is_in_the_registry():
    from tasks import get_task, task_names

    assert "gan" in task_names()
    assert get_task("gan") is GanTask


@pytest.mark.parametrize("fields, message", [
    ({"image_shape": (30, 28, 1)}, "height and width must be multiples of 4.*got 30x28"),
    ({"image_shape": (28, 28, 2)}, "channels must be 1 .grayscale. or 3 .RGB., got 2"),
    ({"image_shape": (28, 28)}, r"image_shape must be \(height, width, channels\)"),
    ({"latent_dim": 0}, "latent_dim must be a whole number >= 1, got 0"),
])
def test_task_refuses_fields_that_cannot_work(fields, message):
    with pytest.raises(ValueError, match=message):
        GanTask(**fields)


def test_decode_gives_one_example_at_the_image_shape():
    gray = TASK.decode(media.image_bytes("PNG", size=(40, 30), seed=1))
    rgb = GanTask(image_shape=(32, 32, 3)).decode(media.image_bytes("JPEG", size=(50, 60), seed=2))

    assert gray.examples.shape == (1, 28, 28, 1) and gray.examples.dtype == np.uint8
    assert rgb.examples.shape == (1, 32, 32, 3) and rgb.examples.dtype == np.uint8
    assert gray.positions == [{}] and gray.warning is None


@pytest.mark.parametrize("image_shape, start", [((28, 28, 1), (7, 7)), ((32, 32, 3), (8, 8))])
def test_networks_have_the_dcgan_shapes(image_shape, start):
    model = GanTask(image_shape=image_shape).build_model("dcgan", 10, 1e-4)
    reshape = next(layer for layer in model.generator.layers if layer.__class__.__name__ == "Reshape")

    assert model.generator.input_shape == (None, 100)
    assert reshape.output_shape == (None, *start, 256)
    assert model.generator.output_shape == (None, *image_shape)
    assert model.discriminator.input_shape == (None, *image_shape)
    assert model.discriminator.output_shape == (None, 1)
    images = generate_images(model.generator, (0, 0, 2))
    assert images.shape == (2, *image_shape) and images.dtype == np.uint8


def test_build_model_refuses_an_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'wgan'; valid: dcgan"):
        TASK.build_model("wgan", 0, 1e-4)


# --- training --------------------------------------------------------------------------------


def test_training_moves_the_generator_toward_the_data(trained):
    history, images, before = trained["history"], trained["images"], trained["before"]
    after = generate_images(trained["model"].generator, (7, 0, 128))

    assert set(history) == {"g_loss", "d_loss"} and len(history["d_loss"]) == 3
    assert np.all(np.isfinite(history["g_loss"])) and np.all(np.isfinite(history["d_loss"]))
    # An untrained generator outputs tanh(~0): mid-grey, no dark pixels. The data are 92 % dark.
    assert np.mean(images < DARK) > 0.9
    assert np.mean(before < DARK) < 0.01 and abs(before.mean() / 255 - 0.5) < 0.02
    assert np.mean(after < DARK) > 0.15
    assert after.mean() < before.mean() - 0.03 * 255
    # The discriminator tells real from fake (chance is 0.5).
    assert _discriminator_accuracy(trained["model"], images[:128], after) > 0.75


def test_training_under_multi_worker_mirrored_strategy_ignores_labels():
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one local worker
    with strategy.scope():
        model = TASK.build_model("dcgan", 0, 1e-4)
    images = _blob_images(64, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(64, dtype=np.int64))).batch(32)

    history = model.fit(dataset, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["g_loss"])) and np.all(np.isfinite(history["d_loss"]))
    # An untrained D's loss is near log(2) + log(2), G's near log(2).
    assert 0.9 < history["d_loss"][0] < 2.0 and 0.3 < history["g_loss"][0] < 1.5


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _mwms_worker(index: int, ports: list[int], checkpoint: str) -> dict:
    """One of two MultiWorkerMirroredStrategy workers (run in its own process by the test
    below): trains on its own data, saves on every worker, resumes from the chief's save."""
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                          "task": {"type": "worker", "index": index}})
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    images = _blob_images(128, seed=index)  # each worker its own images
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(32, drop_remainder=True).with_options(options)
    with strategy.scope():
        model = TASK.build_model("dcgan", 0, 1e-4)
    batch_d_losses = []
    record = tf.keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_d_losses.append(float(logs["d_loss"])))
    history = model.fit(dataset, epochs=2, verbose=0, callbacks=[record]).history
    # Every worker saves (MWMS saving is collective); only the chief's copy is kept.
    save_gan(model, checkpoint if index == 0 else tempfile.mkdtemp())
    with strategy.scope():
        resumed = load_gan(checkpoint, learning_rate=1e-4)
    restored_steps = int(resumed.g_optimizer.iterations.numpy())
    resumed.fit(dataset, epochs=1, verbose=0)
    return {"history": history, "batch_d_losses": batch_d_losses, "restored_steps": restored_steps,
            "resumed_steps": int(resumed.g_optimizer.iterations.numpy()),
            "sample": generate_images(resumed.generator, (1, 0, 4)).tolist()}


def test_two_multi_worker_mirrored_workers_agree_and_resume(tmp_path):
    ports = _free_ports(2)
    checkpoint = str(tmp_path / "checkpoint")
    workers = [subprocess.Popen([sys.executable, __file__, "--mwms-worker", str(index), ",".join(map(str, ports)),
                                 checkpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": python_path()})
               for index in range(2)]
    try:
        outputs = [worker.communicate(timeout=240) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    chief, other = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs)

    assert chief == other  # the same losses, step counts and weights on both workers
    assert (chief["restored_steps"], chief["resumed_steps"]) == (8, 12)  # 2 epochs x 4 steps, + 4
    # Global means (~2 log 2 for an untrained D), not their sum over the 2 workers (~2.77).
    assert all(0.9 < loss < 2.0 for loss in chief["batch_d_losses"] + chief["history"]["d_loss"])


# --- saving ----------------------------------------------------------------------------------


def test_save_and_load_restore_both_networks_and_optimizers(trained, tmp_path):
    model = trained["model"]
    save_gan(model, str(tmp_path / "checkpoint"))
    loaded = load_gan(str(tmp_path / "checkpoint"), learning_rate=5e-4)
    probe = trained["images"][:16].astype(np.float32) / 127.5 - 1.0

    np.testing.assert_array_equal(generate_images(loaded.generator, (3, 0, 20)),
                                  generate_images(model.generator, (3, 0, 20)))
    np.testing.assert_array_equal(loaded.discriminator(probe, training=False).numpy(),
                                  model.discriminator(probe, training=False).numpy())
    for name in ("g_optimizer", "d_optimizer"):
        saved, restored = getattr(model, name), getattr(loaded, name)
        assert int(restored.iterations.numpy()) == int(saved.iterations.numpy()) == 24  # 3 epochs x 8 batches
        for a, b in zip(saved.variables(), restored.variables()):
            if a is not saved.iterations:
                np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert float(restored.learning_rate.numpy()) == pytest.approx(5e-4)


def test_exported_generator_samples_like_the_trained_one(trained, tmp_path):
    path = export_generator(trained["model"], str(tmp_path / "export"))

    assert path.endswith("generator.keras")
    for where in (path, str(tmp_path / "export")):
        np.testing.assert_array_equal(generate_images(load_generator(where), (5, 10, 12)),
                                      generate_images(trained["model"].generator, (5, 10, 12)))


def test_saving_errors_name_the_fix(trained, tmp_path):
    with pytest.raises(NotImplementedError, match="use tasks.gan.save_gan"):
        trained["model"].save(str(tmp_path / "dcgan.keras"))
    with pytest.raises(FileNotFoundError, match="has no generator.keras; was it written by save_gan"):
        load_gan(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no generator at"):
        load_generator(str(tmp_path / "missing.keras"))


# --- sampling --------------------------------------------------------------------------------


def test_latent_vectors_come_from_seed_and_index():
    expected = np.random.default_rng([3, 17]).standard_normal(100).astype(np.float32)

    np.testing.assert_array_equal(latent_vector(3, 17), expected)
    assert not np.array_equal(latent_vector(3, 17), latent_vector(3, 18))
    assert not np.array_equal(latent_vector(3, 17), latent_vector(4, 17))


def test_generated_images_do_not_depend_on_the_batching(trained):
    generator = trained["model"].generator
    start = GENERATE_BATCH - 4  # a run that crosses a generator block boundary
    whole = generate_images(generator, (11, start, 10))
    split = np.concatenate([generate_images(generator, (11, start, 3)), generate_images(generator, (11, start + 3, 7))])
    pairs = [(11, start + i) for i in (9, 2, 5, 0, 7, 1, 8, 3, 6, 4)]
    shuffled = generate_images(generator, pairs)
    with_others = generate_images(generator, [(12, 0), *pairs[:5], (11, 200), (11, start + 2)])

    assert whole.tobytes() == split.tobytes()
    np.testing.assert_array_equal(shuffled, whole[[9, 2, 5, 0, 7, 1, 8, 3, 6, 4]])
    np.testing.assert_array_equal(with_others[1:6], shuffled[:5])
    np.testing.assert_array_equal(with_others[7], whole[2])
    assert not np.array_equal(with_others[0], whole[0])  # another seed, another image
    # ... and they are the generator's outputs for those latent vectors.
    latents = np.stack([latent_vector(11, start + i) for i in range(10)])
    direct = to_uint8(generator(latents, training=False).numpy()).astype(int)
    assert np.abs(direct - whole.astype(int)).max() <= 1


def test_generate_images_refuses_negative_seeds_and_indices():
    generator = TASK.build_model("dcgan", 0, 1e-4).generator
    with pytest.raises(ValueError, match=r"must be >= 0, got \(seed=1, index=-1\)"):
        generate_images(generator, [(1, -1)])
    with pytest.raises(ValueError, match="count must be >= 0, got -2"):
        generate_images(generator, (1, 0, -2))
    assert generate_images(generator, []).shape == (0, 28, 28, 1)


def test_tanh_output_maps_to_rounded_uint8():
    np.testing.assert_array_equal(to_uint8(np.array([-1.5, -1.0, -0.999, 0.0, 0.999, 1.0])),
                                  [0, 0, 0, 128, 255, 255])


@pytest.mark.parametrize("count, shape, columns, size, mode", [
    (10, (28, 28, 1), 4, (4 * (56 + GRID_PADDING) + GRID_PADDING, 3 * (56 + GRID_PADDING) + GRID_PADDING), "L"),
    (3, (32, 32, 3), 8, (3 * (64 + GRID_PADDING) + GRID_PADDING, 64 + 2 * GRID_PADDING), "RGB"),
])
def test_sample_grid_png_lays_out_the_images(count, shape, columns, size, mode):
    images = np.random.default_rng(0).integers(0, 256, (count, *shape), dtype=np.uint8)

    grid = Image.open(io.BytesIO(sample_grid_png(images, columns=columns, scale=2)))
    assert (grid.format, grid.size, grid.mode) == ("PNG", size, mode)
    pixels = np.asarray(grid).reshape(size[1], size[0], shape[2])
    last = count - 1
    y = GRID_PADDING + (last // columns) * (shape[0] * 2 + GRID_PADDING)
    x = GRID_PADDING + (last % columns) * (shape[1] * 2 + GRID_PADDING)
    np.testing.assert_array_equal(pixels[y:y + 2 * shape[0]:2, x:x + 2 * shape[1]:2], images[last])


def test_sample_grid_png_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="no images for a grid"):
        sample_grid_png(np.zeros((0, 28, 28, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="images must be uint8"):
        sample_grid_png(np.zeros((2, 28, 28, 1), dtype=np.float32))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--mwms-worker"]:  # tasks.gan, imported above, has chosen tf-keras
        result = _mwms_worker(int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")], sys.argv[4])
        print(json.dumps(result), flush=True)
