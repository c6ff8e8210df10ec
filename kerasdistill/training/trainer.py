"""Training fresh models on (base images, labels) and measuring them.

Every evaluation in the protocol (validation during distillation, the 20 test
repetitions, the baselines' step search) is "train a new learner for k steps of
Adam on random inner minibatches, then measure error". One compiled while-loop
does the training, so a 1,000-step model costs one function call. Where the
solver can stack its models (ModelStack: LeNet, AlexNet), the test and transfer
repetitions train `models_per_call` at a time in one while-loop, each with the
inner batches it would draw alone.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerasdistill.data.augmentation import NO_AUGMENTATION, Augmentation
from kerasdistill.data.pipeline import fold_in, random_subset
from kerasdistill.training.adam import AdamState
from kerasdistill.training.learner import stack_nests
from kerasdistill.training.solver import InnerSolver

# Models trained together per call when the solver can stack them. Measured with
# `python -m experiments.benchmark --measure=evaluation` (BENCHMARKS.md): on 2 CPU cores
# the time per model falls up to 20 models per call.
DEFAULT_MODELS_PER_CALL = 20
BATCH_STATISTICS_PREDICT_BATCH = 1024


class EvaluationTrainer:
    """Trains and measures evaluation models for one solver and one base set.

    Args:
      solver: gives the learner, its training step and its predictions.
      base_images: the n base images (normalised, NHWC).
      inner_batch_size: minibatch size n_i for training.
      predict_batch_size: batch size for measuring error on large splits.
      models_per_call: test repetitions trained together (1: one at a time).
      augmentation: applied to every training minibatch, drawn with the model's
        seed and step (so a stacked model sees what it would alone).
    """

    def __init__(self, solver: InnerSolver, base_images, inner_batch_size: int,
                 predict_batch_size: int = 2000,
                 models_per_call: int = DEFAULT_MODELS_PER_CALL,
                 augmentation: Augmentation = NO_AUGMENTATION):
        self.solver = solver
        self.augmentation = augmentation
        self.stack = solver.model_stack() if models_per_call > 1 else None
        self.models_per_call = models_per_call
        self.base_images = tf.convert_to_tensor(base_images)
        self.inner_batch_size = int(inner_batch_size)
        self.predict_batch_size = predict_batch_size
        # Models that normalise with each batch's own statistics (ResNet's batch norm,
        # as the authors' code runs it) predict on batches of the authors' size (the
        # outer batch, 1024) drawn in one fixed random order, so that no batch is made
        # of one class (our CIFAR-10 file is sorted by class; theirs is not).
        self.batch_statistics = solver.predicts_with_batch_statistics()
        if self.batch_statistics:
            self.predict_batch_size = BATCH_STATISTICS_PREDICT_BATCH
        num_base = int(self.base_images.shape[0])
        augmentation = self.augmentation

        def train(learner, soft_labels, num_steps, seed, first_step):
            def take_step(step, learner):
                draw = tf.stack([seed, first_step + step])
                indices = random_subset(num_base, self.inner_batch_size, draw)
                images = augmentation(tf.gather(self.base_images, indices),
                                      augmentation_seed(draw))
                return solver.train_step(learner, images, tf.gather(soft_labels, indices))

            return _repeat(num_steps, take_step, learner)

        def count_errors(learner, images, labels):
            return _misclassified(solver.predict(learner, images), labels)

        def predicted_classes(learner, images):
            return tf.argmax(solver.predict(learner, images), axis=-1)

        def train_stacked(learners, soft_labels, num_steps, seeds):
            def take_step(step, learners):
                draws = [tf.stack([seeds[m], step]) for m in range(seeds.shape[0])]
                indices = tf.stack([random_subset(num_base, self.inner_batch_size, draw)
                                    for draw in draws])
                images = tf.gather(self.base_images, indices)
                if augmentation:
                    images = tf.stack([augmentation(images[m], augmentation_seed(draw))
                                       for m, draw in enumerate(draws)])
                return solver.train_step_stacked(
                    self.stack, learners, images, tf.gather(soft_labels, indices))

            return _repeat(num_steps, take_step, learners)

        def count_errors_stacked(weights, images, labels):
            return _misclassified(self.stack.logits(weights, images), labels)

        self._train = tf.function(train, reduce_retracing=True)
        self._count_errors_stacked = tf.function(count_errors_stacked)
        # Not reduce_retracing: the number of models must stay a static shape.
        self._train_stacked = tf.function(train_stacked)
        self._count_errors = tf.function(count_errors, reduce_retracing=True)
        self._predicted_classes = tf.function(predicted_classes, reduce_retracing=True)

    def train(self, learner, soft_labels, num_steps: int, seed: int, first_step: int = 0):
        """Continues training `learner` for num_steps steps (0 leaves it as it is)."""
        if num_steps <= 0:
            return learner
        return self._train(learner, tf.convert_to_tensor(soft_labels, self.base_images.dtype),
                           tf.constant(num_steps, tf.int32), tf.constant(seed, tf.int32),
                           tf.constant(first_step, tf.int32))

    def _prediction_order(self, count: int) -> np.ndarray | None:
        """The fixed random order that models with batch statistics predict in."""
        return np.random.default_rng(count).permutation(count) if self.batch_statistics \
            else None

    def predictions(self, learner, images: np.ndarray) -> np.ndarray:
        """Predicted classes of `images`, in their order (batched as error_rate does)."""
        order = self._prediction_order(len(images))
        shuffled = images if order is None else images[order]
        classes = np.concatenate([
            self._predicted_classes(learner, tf.convert_to_tensor(
                shuffled[start:start + self.predict_batch_size])).numpy()
            for start in range(0, len(images), self.predict_batch_size)])
        if order is None:
            return classes
        unshuffled = np.empty_like(classes)
        unshuffled[order] = classes
        return unshuffled

    def error_rate(self, learner, images: np.ndarray, labels: np.ndarray) -> float:
        order = self._prediction_order(len(images))
        if order is not None:
            images, labels = images[order], labels[order]
        errors = 0
        for start in range(0, len(images), self.predict_batch_size):
            errors += int(self._count_errors(
                learner, tf.convert_to_tensor(images[start:start + self.predict_batch_size]),
                tf.convert_to_tensor(labels[start:start + self.predict_batch_size])))
        return errors / len(images)

    def fresh_model_error(self, soft_labels, num_steps: int, seed: int, images, labels) -> float:
        """Error of a new model trained from scratch for num_steps steps."""
        learner = self.train(self.solver.init_learner(seed), soft_labels, num_steps, seed)
        return self.error_rate(learner, images, labels)

    def test_accuracies(self, soft_labels, num_steps: int, seeds, images, labels) -> list[float]:
        """Accuracy of one fresh model per seed (the protocol's test repetitions),
        `models_per_call` trained together where the solver can stack them."""
        seeds = list(seeds)
        if self.stack is None or len(seeds) < 2 or num_steps <= 0:
            return [1.0 - self.fresh_model_error(soft_labels, num_steps, seed, images, labels)
                    for seed in seeds]
        accuracies = []
        for begin in range(0, len(seeds), self.models_per_call):
            weights = self.train_together(soft_labels, num_steps,
                                          seeds[begin:begin + self.models_per_call]).weights
            errors = 0
            # The M models' first-layer activations of a batch live at once.
            batch = max(self.predict_batch_size * 5 // len(weights[0]), 100)
            for start in range(0, len(images), batch):
                errors += self._count_errors_stacked(
                    weights, tf.convert_to_tensor(images[start:start + batch]),
                    tf.convert_to_tensor(labels[start:start + batch])).numpy()
            accuracies.extend((1.0 - errors / len(images)).tolist())
        return accuracies

    def train_together(self, soft_labels, num_steps: int, seeds):
        """Fresh models of `seeds` trained together for num_steps steps, as
        `train(solver.init_learner(seed), ...)` would train each; returns the stacked
        learner (`model_of` takes one model out)."""
        learners = [self.solver.init_learner(seed) for seed in seeds]
        stacked = stack_nests(learners)
        # All models step together: one shared Adam step count.
        stacked = stacked._replace(optimizer=stacked.optimizer._replace(
            step=learners[0].optimizer.step))
        trained = self._train_stacked(
            stacked, tf.convert_to_tensor(soft_labels, self.base_images.dtype),
            tf.constant(num_steps, tf.int32), tf.constant(seeds, tf.int32))
        return trained


def augmentation_seed(draw: tf.Tensor) -> tf.Tensor:
    """The augmentation's seed for a minibatch drawn with `draw` (its own stream)."""
    return fold_in(draw, AUGMENT_STREAM)


# Folded into a minibatch's draw to seed its augmentation: not the draw itself, so
# which images are picked and how they are transformed are independent.
AUGMENT_STREAM = 0x5A17


def baseline_checkpoints(num_base_examples: int, max_steps: int | None = None) -> list[int]:
    """docs/method.md section 3: evaluate after 10, 25, 75 and every 50 steps up to 1000 (1700 when
    n > 100); `max_steps` cuts the search shorter (the smoke budget)."""
    last = 1700 if num_base_examples > 100 else 1000
    last = last if max_steps is None else min(last, max_steps)
    return sorted(step for step in {10, 25, 75, *range(50, last + 1, 50)} if step <= last)


def choose_num_steps(trainer: EvaluationTrainer, soft_labels, checkpoints: list[int], seed: int,
                     images, labels) -> tuple[int, list[dict]]:
    """Trains one model, measuring validation error at each checkpoint; returns
    the step count with the lowest error (the first on ties) and the curve."""
    learner = trainer.solver.init_learner(seed)
    curve, done = [], 0
    for checkpoint in checkpoints:
        learner = trainer.train(learner, soft_labels, checkpoint - done, seed, first_step=done)
        done = checkpoint
        curve.append({"steps": checkpoint,
                      "validation_error": trainer.error_rate(learner, images, labels)})
    best = min(curve, key=lambda point: point["validation_error"])
    return best["steps"], curve


def _misclassified(logits, labels):
    """Misclassified examples: a count for logits B x C, one per model for M x B x C."""
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    return tf.reduce_sum(tf.cast(tf.not_equal(predictions, labels), tf.int64), axis=-1)


def _repeat(num_steps, take_step, state):
    """`state` after num_steps calls of take_step(step, state), as one while-loop."""
    _, state = tf.while_loop(lambda step, _: step < num_steps,
                             lambda step, state: (step + 1, take_step(step, state)),
                             (tf.constant(0, tf.int32), state))
    return state


def model_of(stacked, index: int):
    """Model `index` of a stack of learners, as a learner of its own."""
    optimizer = stacked.optimizer
    return stacked._replace(
        weights=tuple(w[index] for w in stacked.weights),
        non_trainable=tuple(w[index] for w in stacked.non_trainable),
        optimizer=AdamState(optimizer.step, tuple(m[index] for m in optimizer.first_moments),
                            tuple(v[index] for v in optimizer.second_moments)))
