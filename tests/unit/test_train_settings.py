"""The batch size a train job takes, and early stopping's decisions (no cluster needed)."""

from __future__ import annotations

import pytest

from jobs.errors import MediaJobsError
from jobs.spec.load import parse_spec
from jobs.workers.train_settings import MIN_STEPS_PER_EPOCH, BatchSize, EarlyStop, batch_size_for

TRAIN = {"version": 1, "kind": "train", "name": "words", "task": "audio-classifier",
         "model": {"architecture": "mfcc-lstm"}, "data": {"train": "s3://media/words/train/"},
         "output": "s3://models/words/"}


def test_an_unset_batch_size_is_lowered_to_give_an_epoch_enough_steps():
    # 96 clips (the spoken words): 64 would be 1 step per epoch.
    one, two = batch_size_for(64, False, 96, 1), batch_size_for(64, False, 96, 2)

    assert one.size == two.size == 12 and one.steps_per_epoch == two.steps_per_epoch == 8 >= MIN_STEPS_PER_EPOCH
    assert "training.batch_size is unset: 12 instead of 64" in two.reason and "6 per worker on 2" in two.reason


def test_an_unset_batch_size_stays_the_default_when_the_data_is_large():
    assert batch_size_for(64, False, 50_000, 2) == BatchSize(64, 781)
    assert batch_size_for(64, False, 50_000, 3) == BatchSize(64, 781)  # TensorFlow splits 22 + 21 + 21
    assert batch_size_for(64, False, 20, 4).size == 4


def test_a_set_batch_size_is_global_taken_as_given_or_refused():
    explicit = batch_size_for(64, True, 128, 2)  # 32 per worker and step: two steps per epoch, as asked, and said
    assert (explicit.size, explicit.steps_per_epoch) == (64, 2)
    assert explicit.reason == ("training.batch_size: 64 as set gives an epoch 2 steps over 128 examples; unset, it "
                               "would be lowered to fit the data")
    assert batch_size_for(64, True, 50_000, 2) == BatchSize(64, 781)
    # The message, word for word: each worker batches the global batch from its share.
    with pytest.raises(MediaJobsError, match=r"training.batch_size: 64 is larger than each worker's share of the "
                                             r"96 decoded training examples \(48\); lower training.batch_size or "
                                             r"resources.num_workers$"):
        batch_size_for(64, True, 96, 2)
    with pytest.raises(MediaJobsError, match="training.batch_size: 1 is smaller than the 2 workers"):
        batch_size_for(1, True, 96, 2)


def test_too_few_examples_for_the_workers_is_refused_even_unset():
    with pytest.raises(MediaJobsError, match="3 decoded training examples are too few for 4 workers"):
        batch_size_for(64, False, 3, 4)


def test_early_stop_keeps_the_best_epoch_and_stops_after_patience():
    stop = EarlyStop("val_loss", patience=2)
    decisions = []
    for epoch, value in enumerate([0.9, 0.5, 0.6, 0.55, 0.4], start=1):
        improved = stop.update(epoch, value)
        decisions.append((improved, stop.should_stop(epoch)))

        if decisions[-1][1]:
            break  # the job stops here: epoch 5 never runs

    assert decisions == [(True, False), (True, False), (False, False), (False, True)]
    assert (stop.best_epoch, stop.best_value, stop.stopped_after) == (2, 0.5, 4)
    assert stop.reason(10) == "epoch 2 had the lowest val_loss (0.5); stopped after epoch 4 of 10: no improvement in 2 epochs"


def test_early_stop_on_accuracy_wants_it_higher_and_survives_a_resume():
    stop = EarlyStop("val_accuracy", patience=3)
    stop.update(1, 0.5), stop.update(2, 0.75), stop.update(3, 0.7)
    resumed = EarlyStop.from_config({"monitor": "val_accuracy", "patience": 3, "restore_best": True}, stop.state())

    assert (resumed.best_epoch, resumed.best_value) == (2, 0.75)
    assert not resumed.should_stop(4) and resumed.should_stop(5)
    assert resumed.reason(5).startswith("epoch 2 had the highest val_accuracy (0.75)")


def test_early_stopping_spec_errors_name_the_field_and_the_fix():
    from jobs.spec.load import SpecError

    with pytest.raises(SpecError, match="training: early_stopping.monitor: val_loss is measured on held-out data; add "
                                        "data.validation: s3://bucket/validation/ or monitor loss"):
        parse_spec({**TRAIN, "training": {"early_stopping": {"patience": 2}}})
    gan = {**TRAIN, "task": "gan", "model": {"architecture": "dcgan"}, "training": {"early_stopping": {"monitor": "loss"}}}
    with pytest.raises(SpecError, match="early_stopping: applies to classifier tasks only"):
        parse_spec(gan)
    spec = parse_spec({**TRAIN, "data": {"train": "s3://m/t/", "validation": "s3://m/v/"},
                       "training": {"early_stopping": {"patience": 2}}})
    assert spec.training.early_stopping.model_dump() == {"monitor": "val_loss", "patience": 2, "restore_best": True}
