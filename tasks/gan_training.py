"""The gan task's training plan: every image under `data.train` (class folders allowed, labels
unused), `save_gan` checkpoints (both networks and both optimizers), a sample grid per epoch
under `<output>/samples/`, the generator exported.
"""

from __future__ import annotations

from typing import Any

from tasks.console import say
from tasks.dcgan import GENERATOR_FILE, generate_images, load_gan, load_generator, sample_grid_png, save_gan
from tasks.protocols import Trainable
from tasks.training import TaskArchitectures, TrainingConfig, TrainingContext, TrainingObjects, TrainingPlan

SAMPLES_DIR = "samples"  # GAN sample grids, one PNG per epoch
SAMPLE_SEED, SAMPLE_COUNT = 0, 64  # the same latent vectors every epoch: progress is comparable


class GanPlan(TrainingPlan):
    exported = (GENERATOR_FILE,)

    def list_objects(self, spec: Any, task: Trainable, known: TaskArchitectures,
                     context: TrainingContext) -> TrainingObjects:
        uris, sizes = context.list_all(spec.data.train, task.suffixes, "data.train")
        return TrainingObjects({"train": uris}, {"train": sizes}, {"train": [0] * len(uris)})

    def extra_metadata(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"generator": GENERATOR_FILE, "samples": SAMPLES_DIR}

    def build(self, task: Trainable, config: TrainingConfig) -> Any:
        return task.build_model(config.architecture, 0, config.learning_rate)

    def load(self, checkpoint_dir: str, config: TrainingConfig) -> Any:
        return load_gan(checkpoint_dir, config.learning_rate)

    def save(self, model: Any, directory: str) -> None:
        save_gan(model, directory)

    def after_epoch(self, checkpoint_dir: str, epoch: int, config: TrainingConfig,
                    context: TrainingContext) -> dict[str, bytes]:
        generator = load_generator(checkpoint_dir)  # a plain, local copy (see TrainingPlan.after_epoch)
        images = generate_images(generator, (SAMPLE_SEED, 0, SAMPLE_COUNT), int(generator.input_shape[-1]))
        uri = context.join(config.output, SAMPLES_DIR, f"epoch-{epoch + 1:03d}.png")
        grid = sample_grid_png(images, columns=8, scale=2)
        context.write_bytes(uri, grid)
        say(f"sample grid: {uri}")
        return {"samples": grid}
