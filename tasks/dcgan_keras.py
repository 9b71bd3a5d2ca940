"""The DCGAN Keras model (served as `tasks.dcgan.DCGAN` and `tasks.gan.DCGAN`): a generator and
a discriminator trained against each other by `fit`, and their training step.

This module imports TensorFlow (the class's base is tf.keras.Model); `tasks.dcgan` imports it
only when the class is first asked for, so importing a task module never loads TensorFlow.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["DCGAN"]


class DCGAN(tf.keras.Model):
    """A generator and a discriminator trained against each other by `fit`.

    `fit` takes batches of uint8-range images, or `(images, labels)` (labels are
    ignored). Logs `g_loss` and `d_loss`: epoch means over all examples of all
    replicas, the same on every worker.

    Under a distribution strategy each replica's loss is its per-example sum divided
    by the global batch size (local batch x replicas in sync), so the summed
    gradients the optimizers apply are those of the global mean. Replicas should
    therefore get equal batches (drop the last, smaller batch).
    """

    def __init__(self, generator, discriminator, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(generator.input_shape[-1])
        self.g_loss_tracker = tf.keras.metrics.Mean(name="g_loss")
        self.d_loss_tracker = tf.keras.metrics.Mean(name="d_loss")
        # train_step returns epoch means of losses already all-reduced across replicas,
        # the same on every replica. The default "auto" sums step outputs again across
        # workers: with 2 MWMS workers the per-batch logs showed twice the loss (fit's
        # epoch logs were right: it rereads the metrics). "first" takes them as they are.
        self.distribute_reduction_method = "first"

    @property
    def metrics(self):
        return [self.g_loss_tracker, self.d_loss_tracker]  # reset by fit at each epoch

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        # The discriminator's optimizer doubles as `self.optimizer`, so callbacks that
        # read `model.optimizer.iterations` count training steps.
        super().compile(optimizer=d_optimizer, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    def call(self, latent, training=None):
        return self.generator(latent, training=training)

    def save(self, filepath, *args, **kwargs):
        # Model.save of this subclass writes a `.keras` file that load_model cannot
        # read back ("Could not locate class 'DCGAN'"); fail loudly instead.
        raise NotImplementedError(
            f"a DCGAN is not saved with model.save({str(filepath)!r}): use "
            "tasks.gan.save_gan(model, directory) and load_gan(directory, learning_rate)")

    def train_step(self, data):
        images = _images_of(data)
        real = tf.cast(images, tf.float32) / 127.5 - 1.0
        batch_size = tf.shape(real)[0]
        latent = tf.random.normal([batch_size, self.latent_dim])
        cross_entropy = tf.keras.losses.BinaryCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(latent, training=True)
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            # Non-saturating loss: the generator maximises log D(fake).
            g_loss = tf.nn.compute_average_loss(cross_entropy(tf.ones_like(fake_logits), fake_logits))
            d_loss = tf.nn.compute_average_loss(
                cross_entropy(tf.ones_like(real_logits), real_logits)
                + cross_entropy(tf.zeros_like(fake_logits), fake_logits))
        self.g_optimizer.apply_gradients(
            zip(g_tape.gradient(g_loss, self.generator.trainable_variables),
                self.generator.trainable_variables))
        self.d_optimizer.apply_gradients(
            zip(d_tape.gradient(d_loss, self.discriminator.trainable_variables),
                self.discriminator.trainable_variables))
        g_global, d_global = tf.distribute.get_replica_context().all_reduce("SUM", [g_loss, d_loss])
        self.g_loss_tracker.update_state(g_global)
        self.d_loss_tracker.update_state(d_global)
        return {"g_loss": self.g_loss_tracker.result(), "d_loss": self.d_loss_tracker.result()}


def _images_of(data):
    """The image tensor of a training batch: images, (images, labels...) or {name: images}."""
    if isinstance(data, dict):
        if len(data) != 1:
            raise ValueError(f"a GAN trains on images only; got a batch with columns {sorted(data)}")
        return next(iter(data.values()))
    if isinstance(data, (tuple, list)):
        return _images_of(data[0])
    return data
