"""Second-order label distillation (docs/method.md section 2a): one unrolled SGD step.

The label hypergradient is d L_out(theta') / d y~ with theta' = theta - alpha g and
g = grad_theta L_in(theta, y~). Because L_in is linear in y~,

    L_in = -(1/n_i) sum_ij y~_ij log p_ij(theta)
    d L_out / d y~_ij = (alpha / n_i) * < v , grad_theta log p_ij(theta) >,  v = grad L_out(theta')

i.e. a forward-mode Jacobian-vector product of the inner batch's log-probabilities
in the direction v. This is exact (not a first-order approximation) and replaces
the reverse pass through the inner gradient ("double backprop") by one JVP over the
small inner batch. `hypergradient="reverse"` keeps the textbook nested-tape form;
the tests check that both agree with finite differences.

`unroll_steps=K > 1` (issue 13) looks further ahead: K SGD steps on K inner batches,
theta_k = theta_{k-1} - alpha grad L_in(theta_{k-1}, y~ of batch k), and the outer
loss at theta_K. The label hypergradient then passes through K - 1 Hessians, which
forward mode over the labels could only give with one JVP per label entry, so it is
taken in reverse mode through the unrolled steps (nested tapes). Memory: the tape
keeps the K inner passes (weights and the n_i images' activations, twice over for
the second-order terms); the outer pass is taken once, at theta_K, as for K = 1.
The learner itself still takes one Adam step per meta step on the first inner
batch, so step counts, resets and the validation protocol mean what they did.
"""

from __future__ import annotations

import tensorflow as tf

from kerasdistill.config import HYPERGRADIENT_MODES, one_of, rule_unroll_steps
from kerasdistill.hardware import resolve_outer_precision, warn_if_slow_bfloat16
from kerasdistill.models.registry import ModelFactory
from kerasdistill.training.adam import adam_update
from kerasdistill.training.learner import (FunctionalModel, LearnerState, error_rate, outer_shards,
                                           soft_cross_entropy)
from kerasdistill.training.model_stack import ModelStack, stackable
from kerasdistill.training.solver import InnerSolver, SolverStep


class UnrolledSGDSolver(InnerSolver):
    """docs/method.md section 2a. Hyperparameters as in the paper: alpha = 0.01, learner Adam
    1e-3."""

    name = "second_order"

    def __init__(self, factory: ModelFactory, inner_learning_rate: float = 0.01,
                 learner_learning_rate: float = 1e-3, hypergradient: str = "forward",
                 outer_splits: int = 2, outer_precision: str | None = None,
                 unroll_steps: int = 1):
        one_of(HYPERGRADIENT_MODES)("hypergradient", hypergradient)
        rule_unroll_steps(unroll_steps, hypergradient)
        self.inner_batches_per_step = unroll_steps
        self.factory = factory
        self.network = FunctionalModel(factory.build(seed=0))
        # The outer pass (1024 images) is most of the step's cost. It may run in
        # another precision than the inner pass: a second template with the same
        # weights' structure, run with the learner's weights.
        outer_precision = resolve_outer_precision(outer_precision)
        self.outer_precision = factory.with_precision(outer_precision).precision
        warn_if_slow_bfloat16(outer_precision)
        self.outer_network = self.network if self.outer_precision == factory.precision else (
            FunctionalModel(factory.with_precision(outer_precision).build(seed=0)))
        self.inner_learning_rate = inner_learning_rate
        self.learner_learning_rate = learner_learning_rate
        self.hypergradient = hypergradient
        self.outer_splits = self.network.outer_splits(outer_splits)

    def init_learner(self, seed: int) -> LearnerState:
        return self.network.fresh_learner(self.factory, seed)

    def recipe(self) -> dict:
        return {"model_kind": "ordinary", "architecture": self.factory.architecture,
                "optimizer": "adam", "learning_rate": self.learner_learning_rate,
                "adam_epsilon": 1e-8, "loss": "soft-label cross-entropy",
                "minibatches": "a random subset of inner_batch_size base images per step",
                "initialization": ("kerasdistill.models (docs/method.md section 4, "
                                   "PyTorch's defaults)")}

    def _inner_gradient(self, learner: LearnerState, images, soft_labels):
        return self._inner_gradient_at(learner.weights, learner.non_trainable, images,
                                       soft_labels)

    def _inner_gradient_at(self, weights, non_trainable, images, soft_labels):
        weights = list(weights)
        with tf.GradientTape() as tape:
            tape.watch(weights)
            logits, non_trainable = self.network(weights, non_trainable, images)
            loss = soft_cross_entropy(logits, soft_labels)
        return loss, tape.gradient(loss, weights), non_trainable

    def _outer_loss(self, fast_weights, non_trainable, images, labels):
        losses, errors = [], []
        for shard_images, shard_labels in outer_shards((images, labels), self.outer_splits):
            logits, _ = self.outer_network(fast_weights, non_trainable, shard_images)
            losses.append(tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(shard_labels, logits)))
            errors.append(error_rate(logits, shard_labels))
        return tf.add_n(losses) / len(losses), tf.add_n(errors) / len(errors)

    def meta_gradient(self, learner, inner_images, inner_labels, outer_images,
                      outer_labels) -> SolverStep:
        alpha = self.inner_learning_rate
        if self.inner_batches_per_step > 1:
            return self._unrolled_meta_gradient(learner, inner_images, inner_labels,
                                                outer_images, outer_labels)
        if self.hypergradient == "reverse":
            with tf.GradientTape() as label_tape:
                label_tape.watch(inner_labels)
                inner_loss, grads, non_trainable = self._inner_gradient(
                    learner, inner_images, inner_labels)
                fast = [w - alpha * g for w, g in zip(learner.weights, grads)]
                outer_loss, outer_error = self._outer_loss(
                    fast, learner.non_trainable, outer_images, outer_labels)
            label_grad = label_tape.gradient(outer_loss, inner_labels)
        else:
            inner_loss, grads, non_trainable = self._inner_gradient(
                learner, inner_images, inner_labels)
            # The fast weights are constants here: only v = grad L_out(theta') is needed.
            fast = [tf.stop_gradient(w - alpha * g) for w, g in zip(learner.weights, grads)]
            with tf.GradientTape() as outer_tape:
                outer_tape.watch(fast)
                outer_loss, outer_error = self._outer_loss(
                    fast, learner.non_trainable, outer_images, outer_labels)
            direction = outer_tape.gradient(outer_loss, fast)
            weights = list(learner.weights)
            with tf.autodiff.ForwardAccumulator(weights, direction) as accumulator:
                logits, _ = self.network(weights, learner.non_trainable, inner_images)
                log_probs = tf.nn.log_softmax(logits)
            batch = tf.cast(tf.shape(inner_labels)[0], log_probs.dtype)
            label_grad = (alpha / batch) * accumulator.jvp(log_probs)
        # docs/method.md section 2a step 5: the learner trains on L_in with the labels it saw (the
        # reference code reuses this very gradient), not on the updated labels.
        weights, optimizer = adam_update(learner.weights, grads, learner.optimizer,
                                         self.learner_learning_rate)
        return SolverStep(inner_label_grad=label_grad,
                          learner=LearnerState(weights, non_trainable, optimizer),
                          outer_loss=outer_loss, outer_error=outer_error, inner_loss=inner_loss)

    def _unrolled_meta_gradient(self, learner: LearnerState, inner_images, inner_labels,
                                outer_images, outer_labels) -> SolverStep:
        """K = inner_batches_per_step SGD steps, batch k on images[k] and labels[k], the
        hypergradient in reverse mode through all of them (module docstring)."""
        alpha = self.inner_learning_rate
        with tf.GradientTape() as label_tape:
            label_tape.watch(inner_labels)
            fast, non_trainable = list(learner.weights), learner.non_trainable
            for k in range(self.inner_batches_per_step):
                loss, grads, non_trainable = self._inner_gradient_at(
                    fast, non_trainable, inner_images[k], inner_labels[k])
                if k == 0:
                    first_loss, first_grads, first_non_trainable = loss, grads, non_trainable
                fast = [w - alpha * g for w, g in zip(fast, grads)]
            outer_loss, outer_error = self._outer_loss(
                fast, learner.non_trainable, outer_images, outer_labels)
        label_grad = label_tape.gradient(outer_loss, inner_labels)
        weights, optimizer = adam_update(learner.weights, first_grads, learner.optimizer,
                                         self.learner_learning_rate)
        return SolverStep(inner_label_grad=label_grad,
                          learner=LearnerState(weights, first_non_trainable, optimizer),
                          outer_loss=outer_loss, outer_error=outer_error,
                          inner_loss=first_loss)

    def train_step(self, learner: LearnerState, images, soft_labels) -> LearnerState:
        _, grads, non_trainable = self._inner_gradient(learner, images, soft_labels)
        weights, optimizer = adam_update(learner.weights, grads, learner.optimizer,
                                         self.learner_learning_rate)
        return LearnerState(weights, non_trainable, optimizer)

    def predicts_with_batch_statistics(self) -> bool:
        return self.network.uses_batch_statistics

    def model_stack(self):
        return ModelStack(self.network.model) if stackable(self.network.model) else None

    def train_step_stacked(self, stack: ModelStack, learners: LearnerState, images,
                           soft_labels) -> LearnerState:
        weights = list(learners.weights)
        with tf.GradientTape() as tape:
            tape.watch(weights)
            # The sum of each model's mean soft cross-entropy (equal batches: M times the
            # mean over all M x B), so each model's gradient is that of its own loss.
            num_models = weights[0].shape[0]
            loss = num_models * soft_cross_entropy(stack.logits(weights, images), soft_labels)
        grads = tape.gradient(loss, weights)
        weights, optimizer = adam_update(learners.weights, grads, learners.optimizer,
                                         self.learner_learning_rate)
        return LearnerState(weights, learners.non_trainable, optimizer)

    def predict(self, learner: LearnerState, images) -> tf.Tensor:
        return self.network.predict(learner.weights, learner.non_trainable, images)
