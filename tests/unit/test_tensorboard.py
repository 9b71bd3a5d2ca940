"""Rank 0's TensorBoard file (jobs.workers.tensorboard) written to a local output and read back
by TensorBoard's own reader: scalars per epoch, an image, uploaded after every epoch."""

from __future__ import annotations

import cv2
import numpy as np
from support.tensorboard import read_board

from jobs.workers.tensorboard import EpochBoard


def test_each_epoch_lands_under_the_outputs_tensorboard_folder(tmp_path):
    output = (tmp_path / "out").as_uri() + "/"
    board = EpochBoard(output)
    grid = cv2.imencode(".png", np.full((8, 16, 3), 200, np.uint8))[1].tobytes()
    try:
        board.log(1, {"epoch": 1, "loss": 0.9, "val_accuracy": 0.5, "steps": 4}, {"samples": grid})
        scalars, _ = read_board(output, tmp_path / "after-1")  # already there after the first epoch
        assert [step for step, _ in scalars["loss"]] == [1]
        board.log(2, {"epoch": 2, "loss": 0.4, "val_accuracy": 0.75, "steps": 4}, {"samples": grid})
    finally:
        board.close()
    scalars, images = read_board(output, tmp_path / "after-2")
    assert scalars["loss"] == [(1, 0.8999999761581421), (2, 0.4000000059604645)]
    assert [step for step, _ in scalars["val_accuracy"]] == [1, 2] and "epoch" not in scalars
    assert images["samples"] == [1, 2]


def test_a_board_that_cannot_upload_does_not_stop_training(tmp_path, caplog):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output's folder would be")
    board = EpochBoard(blocker.as_uri() + "/")
    try:
        board.log(1, {"loss": 1.0})  # logged, not raised
    finally:
        board.close()
    assert "were not written" in caplog.text
