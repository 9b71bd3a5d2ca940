"""AdaIN arbitrary style transfer (Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time
with Adaptive Instance Normalization"): a frozen encoder, the AdaIN layer, a trained decoder,
and export as a SavedModel with the TF Hub arbitrary-image-stylization signature.

Images enter the networks as float32 RGB in [0, 1]; the trainer's `train_step` and `call`
take uint8-range pixels, like the other tasks' models.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from tasks.style_encoders import ENCODER_DOWNSAMPLING

logger = logging.getLogger(__name__)

# The paper's relu1_1 ... relu4_1 (Keras' conv layers include the ReLU): style statistics are
# matched at all of them, content at the last.
VGG19_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
EPSILON = 1e-5
# (filters per conv, "up" for 2x nearest upsampling): the encoders mirrored, as in the paper.
_DECODER_PLANS = {
    "vgg19": (256, "up", 256, 256, 256, 128, "up", 128, 64, "up", 64),
    "tiny": (32, "up", 32, 16, "up", 16),
}
_TINY_ENCODER = (16, 32, 64)  # conv filters, a 2x2 max-pool between consecutive convs
_TINY_SEED = 20170321  # the tiny encoder is a fixed random feature extractor: same weights everywhere
# How convolutions pad their border: "SYMMETRIC" repeats the edge row for a 3x3 kernel, which
# works at every size ("REFLECT" needs 2 pixels: a 1-pixel-wide deep feature map fails).
PAD_MODE = "SYMMETRIC"


def channel_stats(features: tf.Tensor, epsilon: float = EPSILON) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-example, per-channel mean and standard deviation over height and width ([B, 1, 1, C])."""
    mean, variance = tf.nn.moments(features, axes=[1, 2], keepdims=True)
    return mean, tf.sqrt(variance + epsilon)


def adain(content_features: tf.Tensor, style_features: tf.Tensor, epsilon: float = EPSILON) -> tf.Tensor:
    """Adaptive instance normalization: the content features with each channel's mean and
    standard deviation replaced by the style features'. Batches of 1 broadcast."""
    content_mean, content_std = channel_stats(content_features, epsilon)
    style_mean, style_std = channel_stats(style_features, epsilon)
    return style_std * (content_features - content_mean) / content_std + style_mean


@tf.keras.saving.register_keras_serializable(package="mediajobs")
class MirrorPaddedConv2D(tf.keras.layers.Conv2D):
    """A size-keeping convolution whose border is padded with the image's own pixels, mirrored
    (`PAD_MODE`), not with zeros: zero padding makes every conv see a dark frame, and the
    decoder learned to paint one on every result.

    Same weights and config as `Conv2D(padding="same")` (odd kernels, stride 1), so
    checkpoints of the zero-padded networks restore into it.
    """

    def __init__(self, *args, padding: str = "same", **kwargs) -> None:
        super().__init__(*args, padding="valid", **kwargs)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        rows, cols = (size // 2 for size in self.kernel_size)
        return super().call(tf.pad(inputs, [[0, 0], [rows, rows], [cols, cols], [0, 0]], mode=PAD_MODE))

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": "same"}


class _CaffePreprocess(tf.keras.layers.Layer):
    """[0, 1] RGB to what the ImageNet VGG19 weights expect: 0-255 BGR minus the ImageNet mean."""

    def call(self, images: tf.Tensor) -> tf.Tensor:
        return images[..., ::-1] * 255.0 - tf.constant(IMAGENET_BGR_MEAN, tf.float32)


def keras_weights_dir() -> str:
    """Where tf-keras looks for (and downloads) application weights: `~/.keras/models`, or
    `/tmp/.keras/models` when `~/.keras` is not writable. tf-keras's `get_file` does not read
    $KERAS_HOME."""
    home = os.path.expanduser(os.path.join("~", ".keras"))
    return os.path.join(home if os.access(home, os.W_OK) else os.path.join("/tmp", ".keras"), "models")


def build_encoder(encoder: str, weights: str = "imagenet") -> tuple[tf.keras.Model, str]:
    """The frozen encoder ([0, 1] RGB to the style feature maps, content layer last) and which
    weights it got: "imagenet", or "random" when asked for, for "tiny", or when the VGG19
    ImageNet weights cannot be loaded (no network and no copy in `keras_weights_dir()`)."""
    images = tf.keras.Input((None, None, 3), name="images")
    if encoder == "vgg19":
        loaded = "random"
        if weights == "imagenet":
            try:
                vgg = tf.keras.applications.VGG19(include_top=False, weights="imagenet", input_shape=(None, None, 3))
                loaded = "imagenet"
            except Exception as error:  # Keras' get_file raises a bare Exception when offline
                logger.warning("VGG19 ImageNet weights unavailable, the encoder is RANDOM (encoder_weights="
                               "'random'); put vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 in "
                               "%s to use them offline. Cause: %s",
                               keras_weights_dir(), error)
        if loaded == "random":
            vgg = tf.keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
        features = _mirror_padded_vgg19(vgg)
        model = tf.keras.Model(images, features(_CaffePreprocess()(images)), name="vgg19_encoder")
    elif encoder == "tiny":
        loaded, x, outputs = "random", images, []
        for index, filters in enumerate(_TINY_ENCODER):
            if index:
                x = tf.keras.layers.MaxPooling2D(name=f"tiny_pool{index}")(x)
            x = MirrorPaddedConv2D(filters, 3, activation="relu", name=f"tiny_conv{index + 1}",
                                   kernel_initializer=tf.keras.initializers.HeNormal(seed=_TINY_SEED + index))(x)
            outputs.append(x)
        model = tf.keras.Model(images, outputs, name="tiny_encoder")
    else:
        raise ValueError(f"unknown encoder {encoder!r}; valid: {', '.join(ENCODER_DOWNSAMPLING)}")
    model.trainable = False
    return model, loaded


def _mirror_padded_vgg19(vgg: tf.keras.Model) -> tf.keras.Model:
    """VGG19 up to block4_conv1 (the same layers, names and weights as `vgg`'s), its convs
    padded by mirroring; outputs at `VGG19_LAYERS`."""
    images = tf.keras.Input((None, None, 3))
    x, outputs = images, {}
    for layer in vgg.layers[1:vgg.layers.index(vgg.get_layer(VGG19_LAYERS[-1])) + 1]:
        if isinstance(layer, tf.keras.layers.Conv2D):
            mirrored = MirrorPaddedConv2D(layer.filters, layer.kernel_size, activation=layer.activation,
                                          name=layer.name)
            x = mirrored(x)
            mirrored.set_weights(layer.get_weights())
        else:
            x = tf.keras.layers.MaxPooling2D.from_config(layer.get_config())(x)
        outputs[layer.name] = x
    return tf.keras.Model(images, [outputs[name] for name in VGG19_LAYERS])


def build_decoder(encoder: str, channels: int) -> tf.keras.Model:
    """Content-layer features ([B, h, w, channels]) to an image at `ENCODER_DOWNSAMPLING` times
    the size; linear output, clipped to [0, 1] only when stylizing."""
    layers = tf.keras.layers
    features = tf.keras.Input((None, None, channels), name="features")
    x = features
    for index, step in enumerate(_DECODER_PLANS[encoder]):
        if step == "up":
            x = layers.UpSampling2D(interpolation="nearest", name=f"up{index}")(x)
        else:
            x = MirrorPaddedConv2D(step, 3, activation="relu", name=f"conv{index}")(x)
    x = MirrorPaddedConv2D(3, 3, name="to_rgb")(x)
    return tf.keras.Model(features, x, name=f"{encoder}_decoder")


def _pad_to_multiple(images: tf.Tensor, multiple: int) -> tf.Tensor:
    """Mirror the last rows and columns (edge pixel included) until height and width divide by
    `multiple`; an image too small to mirror that far repeats its first row or column."""
    for axis in (1, 2):
        size = tf.shape(images)[axis]
        padded = tf.range(size + (multiple - size % multiple) % multiple)
        images = tf.gather(images, tf.maximum(tf.where(padded < size, padded, 2 * size - 1 - padded), 0), axis=axis)
    return images


def stylize_images(encoder: tf.keras.Model, decoder: tf.keras.Model, downsampling: int,
                   content: tf.Tensor, style: tf.Tensor, alpha: float = 1.0) -> tf.Tensor:
    """[0, 1] content (any size) in the style of [0, 1] style images, at the content's size.

    `alpha` blends content features (0) to the full AdaIN target (1), as in the paper.
    """
    height, width = tf.shape(content)[1], tf.shape(content)[2]
    content_features = encoder(_pad_to_multiple(content, downsampling), training=False)[-1]
    style_features = encoder(style, training=False)[-1]
    target = alpha * adain(content_features, style_features) + (1.0 - alpha) * content_features
    stylized = decoder(target, training=False)[:, :height, :width, :]
    return tf.clip_by_value(stylized, 0.0, 1.0)


def _statistics_distance(generated: tf.Tensor, style: tf.Tensor) -> tf.Tensor:
    """Per example: squared distance of channel means plus of channel standard deviations."""
    generated_mean, generated_std = channel_stats(generated)
    style_mean, style_std = channel_stats(style)
    squared = tf.square(generated_mean - style_mean) + tf.square(generated_std - style_std)
    return tf.reduce_mean(squared, axis=[1, 2, 3])


def _content_and_style_losses(generated_features: list, target: tf.Tensor, style_features: list):
    """Per example: the content loss (mean squared error of the generated image's content-layer
    features against the AdaIN target) and the style loss (`_statistics_distance` summed over
    the encoder's layers)."""
    content_loss = tf.reduce_mean(tf.square(generated_features[-1] - target), axis=[1, 2, 3])
    style_loss = tf.add_n([_statistics_distance(generated, wanted)
                           for generated, wanted in zip(generated_features, style_features)])
    return content_loss, style_loss


def stylization_losses(encoder: tf.keras.Model, downsampling: int, content: tf.Tensor, style: tf.Tensor,
                       stylized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The trainer's content and style losses of finished results: [0, 1] `stylized` images
    (any size, the contents') measured against the AdaIN target of their `content` and
    `style` images (a batch of 1 or of as many). Per example, float32.

    `stylized=content` gives the content image's own losses: how far it is from the style.
    """
    style_features = encoder(style, training=False)
    target = adain(encoder(_pad_to_multiple(content, downsampling), training=False)[-1], style_features[-1])
    generated_features = encoder(_pad_to_multiple(stylized, downsampling), training=False)
    return _content_and_style_losses(generated_features, target, style_features)


@tf.keras.saving.register_keras_serializable(package="mediajobs")
class AdaINTrainer(tf.keras.Model):
    """Trains the AdaIN decoder on batches of (content, style) uint8 images of one size.

    Loss per example = content loss (the decoded image re-encoded vs the AdaIN target, mean
    squared error) + `style_weight` * style loss (channel mean/std distances at every encoder
    layer), averaged over the global batch so it trains under MultiWorkerMirroredStrategy.
    The encoder is frozen; `encoder_weights` records what it got ("imagenet" | "random").
    Build and compile it inside `strategy.scope()` for distributed training.
    """

    def __init__(self, encoder: str = "tiny", style_weight: float = 10.0, encoder_weights: str = "imagenet",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if encoder not in ENCODER_DOWNSAMPLING:
            raise ValueError(f"unknown encoder {encoder!r}; valid: {', '.join(ENCODER_DOWNSAMPLING)}")
        if encoder_weights not in ("imagenet", "random"):
            raise ValueError(f"encoder_weights must be 'imagenet' or 'random', got {encoder_weights!r}")
        self.encoder_name = encoder
        self.style_weight = float(style_weight)
        self.downsampling = ENCODER_DOWNSAMPLING[encoder]
        self.encoder, self.encoder_weights = build_encoder(encoder, encoder_weights)
        self.decoder = build_decoder(encoder, self.encoder.outputs[-1].shape[-1])
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.content_tracker = tf.keras.metrics.Mean(name="content_loss")
        self.style_tracker = tf.keras.metrics.Mean(name="style_loss")
        # Every weight exists once the sub-models do; marking the trainer built lets
        # `load_model` restore the optimizer's state too (it is skipped for unbuilt models).
        self.built = True

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, self.content_tracker, self.style_tracker]

    def get_config(self) -> dict:
        return {"encoder": self.encoder_name, "style_weight": self.style_weight,
                "encoder_weights": self.encoder_weights, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> AdaINTrainer:
        # The saved weights replace the encoder's anyway: do not fetch ImageNet weights again.
        config = dict(config)
        recorded = config.pop("encoder_weights", "random")
        model = cls(**config, encoder_weights="random")
        model.encoder_weights = recorded
        return model

    def call(self, inputs, training: bool = False) -> tf.Tensor:
        """(content, style) pixels in 0-255 to the stylized content, float32 in 0-255."""
        content, style = inputs
        stylized = stylize_images(self.encoder, self.decoder, self.downsampling,
                                  tf.cast(content, tf.float32) / 255.0, tf.cast(style, tf.float32) / 255.0)
        return stylized * 255.0

    def per_example_losses(self, content: tf.Tensor, style: tf.Tensor, training: bool = False):
        """Content and style loss per example for uint8-range (content, style) batches."""
        content = tf.cast(content, tf.float32) / 255.0
        style_features = self.encoder(tf.cast(style, tf.float32) / 255.0, training=False)
        target = adain(self.encoder(content, training=False)[-1], style_features[-1])
        generated_features = self.encoder(self.decoder(target, training=training), training=False)
        return _content_and_style_losses(generated_features, target, style_features)

    def train_step(self, data) -> dict:
        content, style = _unpack_pairs(data)
        with tf.GradientTape() as tape:
            content_loss, style_loss = self.per_example_losses(content, style, training=True)
            total = content_loss + self.style_weight * style_loss
            loss = tf.nn.compute_average_loss(total)  # over the global batch: replicas' gradients sum
        variables = self.decoder.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._track(total, content_loss, style_loss)

    def test_step(self, data) -> dict:
        content, style = _unpack_pairs(data)
        content_loss, style_loss = self.per_example_losses(content, style)
        return self._track(content_loss + self.style_weight * style_loss, content_loss, style_loss)

    def _track(self, total: tf.Tensor, content_loss: tf.Tensor, style_loss: tf.Tensor) -> dict:
        # Mean metrics sum across replicas when read, so logs are global means, not replica 0's.
        self.loss_tracker.update_state(total)
        self.content_tracker.update_state(content_loss)
        self.style_tracker.update_state(style_loss)
        return {metric.name: metric.result() for metric in self.metrics}


def _unpack_pairs(data) -> tuple[tf.Tensor, tf.Tensor]:
    """(content, style) from a dataset element: a (content, style) pair or a dict with both keys."""
    if isinstance(data, dict):
        return data["content"], data["style"]
    content, style = data[0], data[1]
    if isinstance(content, dict):  # ({"content": ..., "style": ...},) from Ray Data's to_tf
        return content["content"], content["style"]
    return content, style


class _HubStylizer(tf.Module):
    """The TF Hub stylization signature: `module(content, style) -> [stylized]`, all [0, 1],
    and `module.stylization_losses(content, style, stylized)`: the encoder's content and style
    losses of results (`stylization_losses`), {"content_loss": [B], "style_loss": [B]}."""

    def __init__(self, trainer: AdaINTrainer) -> None:
        super().__init__(name="adain_stylizer")
        self.encoder = trainer.encoder
        self.decoder = trainer.decoder
        self.downsampling = trainer.downsampling

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="content"),
                                  tf.TensorSpec([None, None, None, 3], tf.float32, name="style")])
    def __call__(self, content: tf.Tensor, style: tf.Tensor) -> list[tf.Tensor]:
        return [stylize_images(self.encoder, self.decoder, self.downsampling, content, style)]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="content"),
                                  tf.TensorSpec([None, None, None, 3], tf.float32, name="style"),
                                  tf.TensorSpec([None, None, None, 3], tf.float32, name="stylized")])
    def stylization_losses(self, content: tf.Tensor, style: tf.Tensor, stylized: tf.Tensor) -> dict[str, tf.Tensor]:
        content_loss, style_loss = stylization_losses(self.encoder, self.downsampling, content, style, stylized)
        return {"content_loss": content_loss, "style_loss": style_loss}


def export_stylizer(trainer: AdaINTrainer, path: str) -> str:
    """Writes the trained stylizer as a SavedModel that `hub.load(path)` (and so
    `load_stylizer`) calls exactly like the TF Hub arbitrary-image-stylization module; it also
    has `stylization_losses` (see `_HubStylizer`), which the TF Hub module has not.

    `assets.extra/stylizer.json` records the encoder and its weights ("random" weights make a
    usable but weaker stylizer). Under MultiWorkerMirroredStrategy call it on every worker
    (non-chief workers to a throwaway directory): saving runs collective ops.
    """
    path = str(path)
    tf.saved_model.save(_HubStylizer(trainer), path)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, "assets.extra", "stylizer.json"), "w") as handle:
        json.dump({"model": "adain", "encoder": trainer.encoder_name, "encoder_weights": trainer.encoder_weights,
                   "downsampling": trainer.downsampling}, handle)
    return path
