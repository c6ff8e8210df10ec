"""Fixed labellings of the base images that learned labels are measured against.

- the teacher's labels (docs/method.md section 3, not in the paper): the softmax, at a temperature
  chosen on validation, of a model of the same architecture trained on the whole
  target training split;
- uniform labels (every entry 1/C), the labels learning starts from;
- across datasets: each source class mapped to one target class, by the best
  one-to-one mapping chosen on the validation split.

Each gives a label matrix; the caller then chooses the step count on validation and
trains the test repetitions as for every other labelling.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from scipy.optimize import linear_sum_assignment

from kerasdistill.config import TEACHER_EPOCH_CHOICES
from kerasdistill.data.splits import TargetSplits
from kerasdistill.errors import DistillError
from kerasdistill.models.registry import ModelFactory
from kerasdistill.training.trainer import EvaluationTrainer, choose_num_steps


@dataclasses.dataclass(frozen=True)
class TeacherBudget:
    """How the teacher is trained and its temperature chosen.

    Adam (learning rate 1e-3, PyTorch's and Keras's default) on minibatches of the
    target training split with its true labels, for `epochs` epochs; the weights of
    the epoch with the best validation accuracy are kept (`epoch_choice="search"`:
    every epoch's weights are candidates). Each (epoch,) temperature's labels go
    through the baselines' step-count search on validation; the lowest validation
    error wins.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    temperatures: tuple = (1.0, 2.0, 4.0, 8.0, 16.0)
    epoch_choice: str = "best_accuracy"

    def __post_init__(self):
        if self.epoch_choice not in TEACHER_EPOCH_CHOICES:
            raise DistillError(f"teacher_epoch_choice must be one of {TEACHER_EPOCH_CHOICES}, "
                               f"got {self.epoch_choice!r}")
        if self.epochs <= 0 or self.batch_size <= 0 or self.learning_rate <= 0:
            raise DistillError(f"the teacher's epochs, batch size and learning rate must be "
                               f"positive, got {self.epochs}, {self.batch_size}, "
                               f"{self.learning_rate}")
        if not self.temperatures or min(self.temperatures) <= 0:
            raise DistillError(f"teacher temperatures must be positive and at least one, got "
                               f"{self.temperatures}")


def train_teacher(factory: ModelFactory, target: TargetSplits, budget: TeacherBudget,
                  seed: int, verbose: int = 0,
                  epoch_weights: list | None = None) -> tuple[keras.Model, dict]:
    """A model of `factory`'s architecture trained on the target's training split with
    `model.fit`, the epoch of best validation accuracy kept; returns it and a record
    (per-epoch validation accuracy, the epoch kept). `epoch_weights`, a list, receives
    the weights at the end of every epoch."""
    keras.utils.set_random_seed(seed)  # initialisation and fit's shuffling
    model = factory.build(seed)
    model.compile(optimizer=keras.optimizers.Adam(budget.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    # patience = epochs: never stops early, only restores the best epoch at the end.
    keep_best = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                              patience=budget.epochs,
                                              restore_best_weights=True)
    callbacks = [keep_best]
    if epoch_weights is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: epoch_weights.append(model.get_weights())))
    history = model.fit(target.train_images, target.train_labels,
                        batch_size=budget.batch_size, epochs=budget.epochs,
                        validation_data=(target.validation_images, target.validation_labels),
                        callbacks=callbacks, verbose=verbose)
    curve = [float(a) for a in history.history["val_accuracy"]]
    best = int(np.argmax(curve))
    return model, {"epochs": budget.epochs, "batch_size": budget.batch_size,
                   "learning_rate": budget.learning_rate,
                   "validation_accuracy_per_epoch": curve, "epoch_kept": best + 1,
                   "validation_accuracy": curve[best]}


def softmax_at(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T), rows summing to 1, in float64 then float32."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    probabilities = np.exp(scaled)
    return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)


def teacher_labels(teacher: keras.Model, base_images, trainer: EvaluationTrainer,
                   budget: TeacherBudget, checkpoints, seed: int,
                   target: TargetSplits,
                   epoch_weights: list | None = None) -> tuple[np.ndarray, int, dict]:
    """The teacher's softmax on the base images at the temperature whose labels train
    the best model on validation; returns (labels, step count, record). With
    `epoch_weights` (the teacher's weights after each epoch, `epoch_choice="search"`)
    every epoch's teacher is a candidate too, and the record says which won."""
    def logits_of(weights=None):
        if weights is not None:
            teacher.set_weights(weights)
        return np.asarray(teacher.predict(np.asarray(base_images), verbose=0))
    candidates = ([(None, logits_of())] if epoch_weights is None else
                  [(epoch, logits_of(weights))
                   for epoch, weights in enumerate(epoch_weights, start=1)])
    choices = []
    for epoch, logits in candidates:
        for temperature in budget.temperatures:
            labels = softmax_at(logits, temperature)
            steps, curve = choose_num_steps(trainer, labels, checkpoints, seed,
                                            target.validation_images, target.validation_labels)
            choices.append({**({"epoch": epoch} if epoch is not None else {}),
                            "temperature": float(temperature), "num_train_steps": steps,
                            "validation_error": min(p["validation_error"] for p in curve),
                            "curve": curve})
    best = min(choices, key=lambda choice: choice["validation_error"])  # first on ties
    logits = dict(candidates)[best.get("epoch")]
    record = {"temperature": best["temperature"], "temperature_search": choices}
    if epoch_weights is not None:
        record["epoch_chosen"] = best["epoch"]
    return softmax_at(logits, best["temperature"]), best["num_train_steps"], record


def uniform_labels(num_examples: int, num_classes: int) -> np.ndarray:
    return np.full((num_examples, num_classes), 1.0 / num_classes, np.float32)


def best_class_mapping(confusion: np.ndarray) -> np.ndarray:
    """For a confusion matrix counts[target class, source class], the source -> target
    map with the most target examples right, among the maps that are one-to-one.

    With as many source as target classes it is a permutation (an assignment problem).
    With more source classes (letters -> digits) one-to-one is impossible: the map must
    then reach every target class, and the best such map is again an assignment, of the
    sources to T columns "target t" (worth counts[t, s]) and S - T free columns (worth
    counts' best for s, taken by the sources mapped where they fit best). With fewer
    source classes the map is one-to-one into the target classes.
    """
    num_target, num_source = confusion.shape
    values = confusion.T.astype(np.float64)                  # source x target
    if num_source > num_target:
        free = np.repeat(values.max(axis=1, keepdims=True), num_source - num_target, axis=1)
        values = np.concatenate([values, free], axis=1)      # square: S x S
    sources, columns = linear_sum_assignment(-values)
    mapping = np.empty(num_source, np.int64)
    mapping[sources] = np.where(columns < num_target, columns,
                                np.argmax(confusion[:, sources], axis=0))
    return mapping


def class_mapping_labels(source_trainer: EvaluationTrainer, base_source_labels,
                         num_source_classes: int, num_target_classes: int, checkpoints,
                         seed: int, target: TargetSplits) -> tuple[np.ndarray, dict]:
    """One-hot labels of the target class that each base image's source class is mapped
    to, by the mapping best on the validation split.

    A model trained on a relabelling pi(source class) is, in distribution, a model
    trained on the source classes with its outputs renamed by pi (fresh models treat
    their output units alike). So one model is trained on the source classes, and at
    each step count of the baselines' search its predictions on the validation split
    give a confusion matrix; the mapping and step count with the most validation
    examples right win. `source_trainer` trains models with num_source_classes outputs.
    """
    one_hot = np.eye(num_source_classes, dtype=np.float32)[np.asarray(base_source_labels)]
    learner, done, best = source_trainer.solver.init_learner(seed), 0, None
    for steps in checkpoints:
        learner = source_trainer.train(learner, one_hot, steps - done, seed, first_step=done)
        done = steps
        predicted = source_trainer.predictions(learner, target.validation_images)
        confusion = np.zeros((num_target_classes, num_source_classes), np.int64)
        np.add.at(confusion, (target.validation_labels, predicted), 1)
        mapping = best_class_mapping(confusion)
        right = int(confusion[mapping, np.arange(num_source_classes)].sum())
        if best is None or right > best["right"]:
            best = {"right": right, "steps": steps, "mapping": mapping}
    labels = np.eye(num_target_classes, dtype=np.float32)[best["mapping"][
        np.asarray(base_source_labels)]]
    return labels, {"mapping": best["mapping"].tolist(), "chosen_at_steps": best["steps"],
                    "mapped_validation_accuracy": best["right"] / len(target.validation_labels)}
