"""First-order label distillation with ridge regression (docs/method.md section 2b, "LD RR").

The learner is a feature extractor g_theta, a global linear classifier W over
[g(x), 1] (a bias row, starting at zero) and a learned scale s. Each step solves
ridge regression on the inner batch in closed form (differentiable in the labels),
moves W a pseudo-gradient step towards that solution, and judges the result on
the outer batch. The label gradient flows only through the ridge solution, so the
outer batch needs a forward pass of g and nothing else: no backprop through the
1024 outer images, which is what makes this algorithm cheap.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from kerasdistill.errors import DistillError
from kerasdistill.hardware import resolve_outer_precision, warn_if_slow_bfloat16
from kerasdistill.layers.ridge import RidgeRegression, append_bias_column
from kerasdistill.models.registry import ModelFactory
from kerasdistill.training.adam import AdamState, adam_init, adam_update
from kerasdistill.training.learner import (FunctionalModel, error_rate, outer_shards,
                                           soft_cross_entropy)
from kerasdistill.training.solver import InnerSolver, SolverStep


class RidgeLearnerState(NamedTuple):
    """Feature extractor weights and Adam state, global classifier W, scale s."""

    weights: tuple
    non_trainable: tuple
    optimizer: AdamState
    classifier: tf.Tensor        # (d + 1) x C
    scale: tf.Tensor             # scalar
    scale_optimizer: AdamState


class RidgeRegressionSolver(InnerSolver):
    """docs/method.md section 2b with the paper's settings: lambda = 1, beta = 0.01, Adam 1e-3 for
    theta and 1e-2 for the scale."""

    name = "ridge_regression"

    def __init__(self, factory: ModelFactory, l2: float = 1.0, pseudo_gradient_rate: float = 0.01,
                 learner_learning_rate: float = 1e-3, scale_learning_rate: float = 1e-2,
                 outer_precision: str | None = None, outer_splits: int = 2):
        if not 0 < pseudo_gradient_rate <= 1:
            raise DistillError(f"pseudo_gradient_rate must be in (0, 1], got {pseudo_gradient_rate}")
        self.factory = factory
        self.features = FunctionalModel(factory.build_feature_extractor(seed=0))
        outer_precision = resolve_outer_precision(outer_precision)
        self.outer_precision = factory.with_precision(outer_precision).precision
        warn_if_slow_bfloat16(outer_precision)
        self.outer_features = self.features if self.outer_precision == factory.precision else (
            FunctionalModel(factory.with_precision(outer_precision).build_feature_extractor(0)))
        self.ridge = RidgeRegression(l2=l2, dtype="float64" if factory.precision == "float64"
                                     else "float32")
        self.feature_dim = int(self.features.model.output.shape[-1])
        self.pseudo_gradient_rate = pseudo_gradient_rate
        self.learner_learning_rate = learner_learning_rate
        self.scale_learning_rate = scale_learning_rate
        self.outer_splits = self.features.outer_splits(outer_splits)
        self.dtype = tf.float64 if factory.precision == "float64" else tf.float32

    def init_learner(self, seed: int) -> RidgeLearnerState:
        weights, non_trainable = self.factory.initial_feature_weights(seed)
        scale = tf.ones([], self.dtype)
        return RidgeLearnerState(
            weights=tuple(weights), non_trainable=tuple(non_trainable),
            optimizer=adam_init(weights),
            classifier=tf.zeros([self.feature_dim + 1, self.factory.num_classes], self.dtype),
            scale=scale, scale_optimizer=adam_init([scale]))

    def recipe(self) -> dict:
        return {"model_kind": "ridge_regression", "architecture": self.factory.architecture,
                "optimizer": "adam", "learning_rate": self.learner_learning_rate,
                "scale_learning_rate": self.scale_learning_rate, "ridge_l2": self.ridge.l2,
                "pseudo_gradient_rate": self.pseudo_gradient_rate,
                "loss": "soft-label cross-entropy of [g(x), 1] (s W)",
                "prediction": "[g(x), 1] W (docs/method.md section 2b)",
                "minibatches": "a random subset of inner_batch_size base images per step",
                "initialization": ("kerasdistill.models (docs/method.md section 4, "
                                   "PyTorch's defaults)")}

    def _logits(self, features, classifier, scale):
        features = tf.cast(features, classifier.dtype)
        return tf.matmul(append_bias_column(features), scale * classifier)

    def _solve(self, learner: RidgeLearnerState, weights, images, soft_labels):
        """docs/method.md section 2b steps 2 and 3: W after the pseudo-gradient step towards the
        ridge solution of this inner batch; returns (features, W, non-trainable weights)."""
        features, non_trainable = self.features(weights, learner.non_trainable, images)
        local = self.ridge(features, soft_labels)
        beta = self.pseudo_gradient_rate
        classifier = (1.0 - beta) * tf.stop_gradient(learner.classifier) + beta * local
        return features, classifier, non_trainable

    def _learn(self, learner: RidgeLearnerState, images, ridge_labels, loss_labels):
        """docs/method.md section 2b step 5: theta and s by Adam on the soft cross-entropy of the
        inner batch against `loss_labels` (held fixed), W solved with `ridge_labels`; theta's
        gradient also flows through the ridge solution, as in the reference code.
        Returns (inner loss, updated learner)."""
        weights = list(learner.weights)
        with tf.GradientTape() as tape:
            tape.watch(weights)
            tape.watch(learner.scale)
            features, classifier, non_trainable = self._solve(learner, weights, images,
                                                              tf.stop_gradient(ridge_labels))
            logits = self._logits(features, classifier, learner.scale)
            inner_loss = soft_cross_entropy(logits, tf.stop_gradient(loss_labels))
        grads = tape.gradient(inner_loss, weights + [learner.scale])
        new_weights, optimizer = adam_update(learner.weights, grads[:-1], learner.optimizer,
                                             self.learner_learning_rate)
        (scale,), scale_optimizer = adam_update([learner.scale], grads[-1:],
                                                learner.scale_optimizer, self.scale_learning_rate)
        return inner_loss, RidgeLearnerState(tuple(new_weights), non_trainable, optimizer,
                                             tf.stop_gradient(classifier), scale,
                                             scale_optimizer)

    def meta_gradient(self, learner, inner_images, inner_labels, outer_images,
                      outer_labels) -> SolverStep:
        # The outer features do not depend on the labels: a forward pass, no tape.
        outer_features = tf.concat(
            [self.outer_features(learner.weights, learner.non_trainable, shard)[0]
             for (shard,) in outer_shards((outer_images,), self.outer_splits)], axis=0)
        with tf.GradientTape() as label_tape:
            label_tape.watch(inner_labels)
            features, classifier, _ = self._solve(learner, list(learner.weights),
                                                  inner_images, inner_labels)
            outer_logits = self._logits(outer_features, classifier, learner.scale)
            outer_loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(outer_labels, outer_logits))
        label_grad = label_tape.gradient(outer_loss, inner_labels)
        inner_loss = soft_cross_entropy(self._logits(features, classifier, learner.scale),
                                        inner_labels)
        # The learner is updated in after_label_update, with the updated labels.
        return SolverStep(inner_label_grad=label_grad, learner=learner, outer_loss=outer_loss,
                          outer_error=error_rate(outer_logits, outer_labels),
                          inner_loss=inner_loss)

    def after_label_update(self, step, learner, inner_images, inner_labels,
                           updated_inner_labels):
        # As the reference: W from the ridge solve with the labels before the update
        # (its graph), theta and s trained towards the labels after it.
        return self._learn(learner, inner_images, inner_labels, updated_inner_labels)[1]

    def train_step(self, learner: RidgeLearnerState, images, soft_labels) -> RidgeLearnerState:
        return self._learn(learner, images, soft_labels, soft_labels)[1]

    def predicts_with_batch_statistics(self) -> bool:
        # The authors' LD RR models use nn.BatchNorm2d and call eval() before measuring:
        # running averages at prediction (batch statistics in the meta steps, as there).
        return False

    def predict(self, learner: RidgeLearnerState, images) -> tf.Tensor:
        features, _ = self.features(learner.weights, learner.non_trainable, images,
                                    training=False)
        # Evaluation models predict with [g(x), 1] W (docs/method.md section 2b); s > 0 would not
        # change the argmax anyway.
        return self._logits(features, learner.classifier, tf.ones([], learner.classifier.dtype))
