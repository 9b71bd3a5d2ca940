"""The style-transfer task's training plan, for the AdaIN trainer (`tasks.adain`): content images
(`data.train`) paired on the fly with random style images (`data.style`, held whole by every
worker), the trainer checkpointed as a TF checkpoint, a hub-signature SavedModel exported as
`stylizer/`.

TensorFlow loads only when a worker builds, loads or saves the trainer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tasks.architecture import Architecture
from tasks.protocols import Trainable
from tasks.training import (
    TaskArchitectures,
    TrainingConfig,
    TrainingContext,
    TrainingDataError,
    TrainingObjects,
    TrainingPlan,
    WholeExamples,
)

STYLIZER_DIR = "stylizer"  # the exported SavedModel of a style-transfer job
STYLE_STATE = "adain"  # a style-transfer checkpoint: networks and optimizer (TF checkpoint), config
MAX_STYLE_IMAGES = 2048  # every worker holds all decoded style images in memory


class StylePlan(TrainingPlan):
    exported = (STYLIZER_DIR,)  # content ("train") is split; every worker reads all style images

    def __init__(self) -> None:
        # The pair rank 0 stylizes after each epoch for TensorBoard (`after_epoch`): the first
        # style image as content, in the style of the second, both from the data every worker holds.
        self.preview: tuple[Any, Any] | None = None

    def list_objects(self, spec: Any, task: Trainable, known: TaskArchitectures,
                     context: TrainingContext) -> TrainingObjects:
        uris, sizes = context.list_all(spec.data.train, task.suffixes, "data.train")
        style_uris, style_sizes = context.list_all(spec.data.style, task.suffixes, "data.style")
        if len(style_uris) > MAX_STYLE_IMAGES:
            raise TrainingDataError(f"data.style: {len(style_uris)} style images under {spec.data.style}; every "
                                    f"worker holds all of them, so at most {MAX_STYLE_IMAGES}: point data.style at "
                                    "a smaller folder")
        return TrainingObjects({"train": uris, "style": style_uris}, {"train": sizes, "style": style_sizes},
                               {"train": [0] * len(uris), "style": [0] * len(style_uris)})

    def check_decoded(self, counts: dict[str, int]) -> None:
        if not counts.get("style"):
            raise TrainingDataError("data.style: none of the style images could be decoded")

    def extra_metadata(self, checkpoint_dir: str) -> dict[str, Any]:
        with open(os.path.join(checkpoint_dir, STYLIZER_DIR, "assets.extra", "stylizer.json")) as handle:
            info = json.load(handle)
        return {"encoder_weights": info["encoder_weights"], "stylizer": STYLIZER_DIR}

    def load(self, checkpoint_dir: str, config: TrainingConfig) -> Any:
        import tensorflow as tf

        from tasks.adain import AdaINTrainer

        state = os.path.join(checkpoint_dir, STYLE_STATE)
        with open(os.path.join(state, "config.json")) as handle:
            saved = json.load(handle)
        # The encoder's weights come from the checkpoint: never fetch ImageNet weights again.
        model = AdaINTrainer(encoder=saved["encoder"], style_weight=saved["style_weight"], encoder_weights="random")
        model.encoder_weights = saved["encoder_weights"]
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=config.learning_rate))
        model.optimizer.build(model.decoder.trainable_variables)  # slots first: restored in place
        _style_checkpoint(model).read(os.path.join(state, "state")).assert_existing_objects_matched()
        model.optimizer.learning_rate = config.learning_rate
        return model

    def save(self, model: Any, directory: str) -> None:
        # Not `model.save(...keras)`: a .keras AdaINTrainer does not load back inside an MWMS
        # scope (its SyncOnRead metric variables fail to restore), and after
        # `tf.saved_model.save` tf-keras silently switches `.keras` saving to HDF5, which
        # refuses subclassed models. A TF checkpoint of the networks and optimizer does both.
        from tasks.adain import export_stylizer

        state = os.path.join(directory, STYLE_STATE)
        _style_checkpoint(model).write(os.path.join(state, "state"))
        with open(os.path.join(state, "config.json"), "w") as handle:
            json.dump(model.get_config(), handle)
        export_stylizer(model, os.path.join(directory, STYLIZER_DIR))

    def train_data(self, shard: Any, config: TrainingConfig, datasets: Mapping[str, WholeExamples],
                   context: TrainingContext) -> Any:
        import numpy as np
        import tensorflow as tf

        styles = tf.constant(np.concatenate([examples for examples, _ in datasets["style"].batches(256)]))
        count = styles.shape[0]
        self.preview = (styles[0].numpy(), styles[min(1, count - 1)].numpy())
        content = super().train_data(shard, config, datasets, context)

        def with_random_styles(images, _labels):
            # A fresh random style for every content image in every epoch.
            picks = tf.random.uniform([tf.shape(images)[0]], 0, count, dtype=tf.int32)
            return images, tf.gather(styles, picks)

        return content.map(with_random_styles)

    def evaluate(self, model: Any, datasets: Mapping[str, WholeExamples], config: TrainingConfig,
                 architecture: Architecture) -> dict[str, float]:
        return {}

    def after_epoch(self, checkpoint_dir: str, epoch: int, config: TrainingConfig,
                    context: TrainingContext) -> dict[str, bytes] | None:
        """The epoch's stylizer (exported in the checkpoint) on the preview pair: content, style
        and result side by side, for TensorBoard."""
        if self.preview is None:
            return None
        import cv2
        import numpy as np
        import tensorflow as tf

        from tasks.stylizing import stylize

        content, style = (np.asarray(image, dtype=np.uint8) for image in self.preview)
        # This job's own export, just written: loaded as it is (no hub resolution, no op check).
        module = tf.saved_model.load(os.path.join(checkpoint_dir, STYLIZER_DIR))
        result = stylize(module, content, style)
        height = content.shape[0]
        panels = [cv2.resize(image, (image.shape[1] * height // image.shape[0], height), interpolation=cv2.INTER_AREA)
                  for image in (content, style, result)]
        ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(panels, axis=1), cv2.COLOR_RGB2BGR))
        return {"stylized": png.tobytes()} if ok else None


def _style_checkpoint(model):
    """The trainer's state a checkpoint holds: both networks and the optimizer."""
    import tensorflow as tf

    return tf.train.Checkpoint(encoder=model.encoder, decoder=model.decoder, optimizer=model.optimizer)
