"""Rank 0's training curves as TensorBoard event files under `<output>/tensorboard/`.

Each epoch: every numeric metric of the epoch as a scalar (loss, accuracy, the validation
metrics, steps, epoch seconds) and the images the task's plan shows people (a GAN's sample
grid) at step = the epoch's number. TensorFlow writes the event file locally (its own S3
support left core TensorFlow) and the file is uploaded whole after each epoch, so
`<output>/tensorboard/` always holds the curves so far. A resumed job adds an event file
of its own; TensorBoard reads a folder's files as one run.

    aws s3 sync s3://bucket/models/x/tensorboard/ ./tb && tensorboard --logdir ./tb
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from jobs.storage.objects import parse_uri, upload_file

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"


class EpochBoard:
    """Rank 0's event file: `log` each epoch, `close` at the end."""

    def __init__(self, output_uri: str) -> None:
        import tensorflow as tf

        self.local = tempfile.mkdtemp(prefix="tensorboard-")
        self.writer = tf.summary.create_file_writer(self.local)
        self.target = parse_uri(output_uri).join(TENSORBOARD_DIR)

    def log(self, epoch: int, metrics: dict, images: dict[str, bytes] | None = None) -> None:
        """Write the epoch (`epoch` counts from 1) and upload the event file. A failure is
        logged, not raised: the curves are worth less than the training."""
        try:
            self._write(epoch, metrics, images or {})
            for path in Path(self.local).iterdir():
                upload_file(path, self.target.join(path.name).uri)
        except Exception as exc:  # noqa: BLE001 - TensorFlow's, boto3's and the store's errors alike
            log.warning("the TensorBoard events of epoch %d were not written to %s: %s", epoch, self.target.uri, exc)

    def _write(self, epoch: int, metrics: dict, images: dict[str, bytes]) -> None:
        import tensorflow as tf

        with self.writer.as_default(step=epoch):
            for name, value in metrics.items():
                if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    tf.summary.scalar(name, float(value))
            for name, png in images.items():
                tf.summary.image(name, tf.io.decode_png(png, channels=3)[tf.newaxis], max_outputs=1)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        shutil.rmtree(self.local, ignore_errors=True)
