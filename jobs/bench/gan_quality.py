"""The GAN example's quality as a number, measured in one process (no Ray, no S3).

Trains the DCGAN of `jobs/examples/train-gan.yaml` (its epochs, batch size, learning rate,
seed, image shape) and the CIFAR-10 CNN of `train-cifar10.yaml` (its input shape, epochs,
batch size) on scikit-learn's digits as `mediajobs ingest digits` writes them, then
judges `generate-gan.yaml`'s samples (its count and seed) with the classifier, exactly as
a generate job with a `quality` section does (`tasks.sample_quality`).

    python -m jobs.bench.gan_quality --json gan-quality.json --out DIR   # DIR/grid.png: the final samples

One worker trains with the example's global batch, which is what two MWMS workers
compute together; the 2-core machines here share their cores with other work, and the
stack's start-up would double the time.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).parents[1] / "examples"
HELD_OUT = 0.2  # the classifier's held-out share of the digits, for its accuracy


def digits_as_decoded(input_shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(28x28x1 GAN training images, the same digits decoded for the classifier at
    `input_shape`, labels): the PNGs `mediajobs ingest digits` writes, decoded as the
    train jobs decode them."""
    from jobs.datasets.digits import digit_images
    from jobs.runs.generate import encode_png
    from tasks.gan import DEFAULT_IMAGE_SHAPE
    from tasks.image_classifier import decode_image

    gan_images, classifier_images, labels = [], [], []
    for key, image in digit_images("sklearn"):
        png = encode_png(image[..., np.newaxis])
        gan_images.append(decode_image(png, DEFAULT_IMAGE_SHAPE))
        classifier_images.append(decode_image(png, input_shape))
        labels.append(int(key.split("/", 1)[0]))
    return np.stack(gan_images), np.stack(classifier_images), np.asarray(labels)


def train_classifier(images: np.ndarray, labels: np.ndarray, spec, seed: int, echo: Callable[[str], None]):
    """(the CNN, held-out accuracy, held-out images): trained on the rest, one process."""
    import tensorflow as tf

    from tasks.image_classifier import build_cnn

    tf.keras.utils.set_random_seed(seed)
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(order) * (1 - HELD_OUT))
    train, held = order[:cut], order[cut:]
    model = build_cnn(spec.model.architecture, spec.model.input_shape, 10, spec.training.learning_rate)
    model.fit(images[train], labels[train], batch_size=spec.training.batch_size, epochs=spec.training.epochs,
              shuffle=True, verbose=0)
    accuracy = float(np.mean(np.argmax(model(images[held], training=False).numpy(), axis=1) == labels[held]))
    echo(f"classifier: {spec.model.architecture} {list(spec.model.input_shape)}, {spec.training.epochs} epochs on "
         f"{len(train)} digits; held-out accuracy {accuracy:.3f} on {len(held)}")
    return model, accuracy, images[held]


def train_gan(images: np.ndarray, spec, every: int, judge: Callable[[object, int], dict],
              echo: Callable[[str], None]):
    """The DCGAN trained as the example says; `judge(generator, epoch)` after every `every` epochs."""
    import tensorflow as tf

    from tasks.gan import build_dcgan

    tf.keras.utils.set_random_seed(spec.training.seed)
    dcgan = build_dcgan(spec.model.image_shape, spec.model.latent_dim, spec.training.learning_rate)
    examples = tf.constant(images)
    batches = (tf.data.Dataset.range(len(images))
               .shuffle(len(images), seed=spec.training.seed, reshuffle_each_iteration=True)
               .batch(spec.training.batch_size, drop_remainder=True)
               .map(lambda picks: tf.gather(examples, picks))
               .prefetch(tf.data.AUTOTUNE))
    trajectory = []
    for epoch in range(1, spec.training.epochs + 1):
        began = time.time()
        logs = dcgan.fit(batches, epochs=1, verbose=0).history
        line = (f"epoch {epoch:3d}: g_loss {logs['g_loss'][-1]:.3f}  d_loss {logs['d_loss'][-1]:.3f}  "
                f"{time.time() - began:.1f}s")
        if epoch % every == 0 or epoch == spec.training.epochs:
            figures = judge(dcgan.generator, epoch)
            trajectory.append({"epoch": epoch, **figures})
            line += f"  confident {figures['confident_share']:.1%}, rare: {figures['rare_classes'] or 'none'}"
        echo(line)
    return dcgan, trajectory


def measure(count: int | None = None, every: int = 10, out: Path | None = None, epochs: int | None = None,
            echo: Callable[[str], None] = print) -> dict:
    """Train both models, judge the samples; returns the figures (the JSON document)."""
    from jobs.spec.load import GenerateSpec, TrainSpec, load_spec_of
    from tasks.gan import generate_images, sample_grid_png
    from tasks.sample_quality import DEFAULT_CONFIDENT, QualityTally, classify_samples, input_adaptation

    began = time.time()
    gan_spec = load_spec_of(TrainSpec, EXAMPLES / "train-gan.yaml", [f"training.epochs={epochs}"] if epochs else [])
    classifier_spec = load_spec_of(TrainSpec, EXAMPLES / "train-cifar10.yaml")
    generate_spec = load_spec_of(GenerateSpec, EXAMPLES / "generate-gan.yaml")
    count = count or generate_spec.count
    # Validation fills each architecture's defaults: the classifier's shape, the DCGAN's sizes.
    input_shape, image_shape = classifier_spec.model.input_shape, gan_spec.model.image_shape
    latent_dim = gan_spec.model.latent_dim
    assert input_shape is not None and image_shape is not None and latent_dim is not None
    gan_images, classifier_images, labels = digits_as_decoded(input_shape)
    classifier, accuracy, held_out = train_classifier(classifier_images, labels, classifier_spec,
                                                      classifier_spec.training.seed, echo)
    class_names = [str(digit) for digit in range(10)]

    def figures_of(classes, confidences) -> dict:
        tally = QualityTally(len(class_names), DEFAULT_CONFIDENT)
        tally.add(classes, confidences)
        return tally.figures(class_names).as_summary()

    real = figures_of(*classify_samples(classifier, held_out, input_shape))
    echo(f"held-out real digits: {real['confident_share']:.1%} confident")
    adaptation = input_adaptation(image_shape, input_shape)
    echo(f"generated {'x'.join(map(str, image_shape))} images: {adaptation or 'fed as they are'}")

    def judge(generator, epoch: int) -> dict:
        n = count if epoch == gan_spec.training.epochs else min(count, 2000)
        images = generate_images(generator, (generate_spec.seed, 0, n), latent_dim)
        return figures_of(*classify_samples(classifier, images, input_shape))

    dcgan, trajectory = train_gan(gan_images, gan_spec, every, judge, echo)
    final = trajectory[-1]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        grid = generate_images(dcgan.generator, (generate_spec.seed, 0, 64), latent_dim)
        (out / "grid.png").write_bytes(sample_grid_png(grid, columns=8, scale=2))
    return {"date": time.strftime("%Y-%m-%d", time.gmtime()), "seconds": round(time.time() - began, 1),
            "gan": {"epochs": gan_spec.training.epochs, "batch_size": gan_spec.training.batch_size,
                    "learning_rate": gan_spec.training.learning_rate, "training_images": len(gan_images)},
            "classifier": {"architecture": classifier_spec.model.architecture, "input_shape": list(input_shape),
                           "epochs": classifier_spec.training.epochs, "held_out_accuracy": round(accuracy, 4),
                           "held_out_figures": real, "input_adaptation": adaptation},
            "samples": {"count": count, "seed": generate_spec.seed},
            "quality": final, "trajectory": trajectory,
            "aim_met": final["confident_share"] >= 0.7 and min(final["class_shares"].values()) >= 0.03}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help="samples judged after the last epoch (default: generate-gan.yaml's)")
    parser.add_argument("--epochs", type=int, help="GAN epochs (default: train-gan.yaml's)")
    parser.add_argument("--every", type=int, default=10, help="judge 2,000 samples every this many epochs too")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--out", type=Path, help="write the final grid.png into this folder")
    args = parser.parse_args(argv)
    figures = measure(args.count, args.every, args.out, args.epochs, echo=lambda line: print(line, flush=True))
    quality = figures["quality"]
    print(f"after {figures['gan']['epochs']} epochs: {quality['confident_share']:.1%} of {quality['samples']} samples "
          f"confident (>= {quality['confident_threshold']}); shares: "
          + ", ".join(f"{k} {v:.1%}" for k, v in quality["class_shares"].items())
          + f"; aim (>= 70% confident, every class >= 3%) {'met' if figures['aim_met'] else 'not met'}; "
          f"{figures['seconds'] / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
