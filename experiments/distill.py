r"""Distil labels (or run a baseline) with the paper's protocol.

  python -m experiments.distill --target=mnist --num_base_examples=100 \
      --data_dir=../shared/data --model_dir=runs/mnist_n100

The architecture, inner batch size and epochs default to the paper's budget table
for the target and n (SPEC 3, kerasdistill/budget.py); the run prints them first.

Writes config.json and results.json into --model_dir, with a checkpoint that a
rerun of the same command resumes from, and TensorBoard summaries.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import entry_point

from kerasdistill.hardware import DEFAULT_OUTER_PRECISION, OUTER_PRECISIONS

FLAGS = flags.FLAGS
flags.DEFINE_string("target", "mnist", "Target dataset (whose test accuracy counts).")
flags.DEFINE_string("source", None, "Dataset the base examples come from (default: target).")
flags.DEFINE_string("algorithm", "second_order",
                    "second_order (SPEC 2a) or ridge_regression (SPEC 2b, LD RR).")
flags.DEFINE_string("architecture", "auto", "Model architecture; auto: the paper's (LeNet "
                    "for greyscale targets, AlexNet for CIFAR-10/100 and CUB).")
flags.DEFINE_integer("num_base_examples", 100, "n: number of base examples.")
flags.DEFINE_integer("inner_batch_size", None, "n_i: inner minibatch size (default: the "
                     "paper's for n: 10->10, 20->10, 50->25, 100->50, 200->50, 500->50; "
                     "CIFAR-100 n=100: 100).")
flags.DEFINE_integer("outer_batch_size", 1024, "Target minibatch size.")
flags.DEFINE_integer("epochs", None, "Epochs over the target training split (default: the "
                     "paper's: 400 up to n = 100, 800 above and for CIFAR-100; Kuzushiji-49 "
                     "100 / 200).")
flags.DEFINE_float("label_learning_rate", 1e-3, "Adam's learning rate on the labels (on their "
                   "logits with --label_parameterization=softmax); SPEC 2's is 1e-3.")
flags.DEFINE_integer("seed", 1234, "Seed for splits, base examples, models and batches.")
flags.DEFINE_enum("baseline", "none", ["none", "true_labels", "label_smoothing", "teacher",
                                        "uniform", "class_mapping"],
                  "Run a fixed labelling of the same base examples instead of distilling: "
                  "true or smoothed one-hot labels; teacher: the softmax of a model trained on "
                  "the target's training split, temperature chosen on validation; uniform; "
                  "class_mapping (with --source): each source class mapped to the target "
                  "class that the validation split says fits best.")
flags.DEFINE_float("label_smoothing", 0.1, "Smoothing of the label_smoothing baseline.")
flags.DEFINE_integer("teacher_epochs", 10, "Epochs of the teacher's training (--baseline="
                     "teacher); the epoch of best validation accuracy is kept.")
flags.DEFINE_list("teacher_temperatures", ["1", "2", "4", "8", "16"],
                  "Softmax temperatures tried for the teacher's labels (chosen on validation).")
flags.DEFINE_enum("teacher_epoch_choice", "best_accuracy", ["best_accuracy", "search"],
                  "Which of the teacher's epochs labels the base images: the one of best "
                  "validation accuracy, or (search) every epoch's labels scored on validation "
                  "with the temperature, as a baseline held at its best.")
flags.DEFINE_enum("base_selection", "auto", ["auto", "balanced", "unbalanced"],
                  "auto: balanced within a dataset, unbalanced across datasets.")
flags.DEFINE_enum("emnist_orientation", "as_stored", ["as_stored", "upright"],
                  "EMNIST letters as the models see them: as stored (transposed; what "
                  "torchvision gave the paper's runs) or upright.")
flags.DEFINE_enum("npz_orientation", "as_stored", ["as_stored", "upright"],
                  "How a local emnist_letters.npz holds its images (the official files and "
                  "TFDS: as stored).")
flags.DEFINE_enum("target_split", "official", ["official", "from_test"],
                  "How the target's splits are made: official, or from_test for a target "
                  "whose data hold only the test split (KMNIST's official test files): a "
                  "stratified re-split with a fixed seed into 60 % pool, 10 % validation and "
                  "30 % test, recorded in config.json, results.json and the distilled set.")
flags.DEFINE_integer("test_repetitions", 20, "Fresh models trained for the test statistics.")
flags.DEFINE_integer("validation_every_epochs", 5, "Validate the labels every this many epochs.")
flags.DEFINE_integer("reset_window", None, "G of SPEC 2c (default: 50/100/200 by the rule).")
flags.DEFINE_integer("num_validation", None, "Validation examples (default: the protocol's).")
flags.DEFINE_integer("target_set_size", None, "Use only this many target training examples.")
flags.DEFINE_string("data_dir", None, "Folder with <name>.npz files and/or TFDS data.")
flags.DEFINE_boolean("download", False, "Let tensorflow-datasets download missing data.")
flags.DEFINE_string("model_dir", None, "Output folder (config, results, checkpoint).")
flags.DEFINE_integer("outer_splits", 2, "Shards of the outer batch run in parallel.")
flags.DEFINE_enum("hypergradient", "forward", ["forward", "reverse"],
                  "How the second-order hypergradient is computed (same value).")
flags.DEFINE_enum("outer_precision", DEFAULT_OUTER_PRECISION, list(OUTER_PRECISIONS),
                  "Precision of the outer pass. mixed_conv_bfloat16: bf16 convolutions, ~20% "
                  "faster steps on CPUs with bf16 but ~0.6 points lower MNIST accuracy over 3 "
                  "seeds (RESULTS.md); auto: that on such CPUs, float32 elsewhere.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "XLA-compile the meta loop. auto: off on CPUs (measured slower there), "
                  "on GPUs whichever a few timed steps of this run's shapes say is faster; "
                  "config.json records the choice.")
flags.DEFINE_enum("distribute", "none", ["none", "mirrored", "multi_worker"],
                  "mirrored: split every outer batch over all visible GPUs "
                  "(tf.distribute.MirroredStrategy); same labels within float rounding. "
                  "multi_worker is available to the library (distill_labels) only.")
flags.DEFINE_enum("label_init", "uniform", ["uniform", "one_hot", "teacher"],
                  "Labels meta-learning starts from: uniform (the paper's); one_hot (the base "
                  "images' classes); teacher (the --baseline=teacher labels, temperature chosen "
                  "on validation). A non-uniform start is validated before the first meta "
                  "step, so the run never ends with labels worse than it started from.")
flags.DEFINE_enum("label_parameterization", "clip", ["clip", "softmax"],
                  "clip: Adam on the labels, clipped to [0, 1] and renormalised (the paper's); "
                  "softmax: the labels are a softmax of learned logits.")
flags.DEFINE_integer("unroll_steps", 1, "K: inner SGD steps (on K inner batches) the "
                     "hypergradient looks through; K > 1 needs --hypergradient=reverse.")
flags.DEFINE_enum("validation_steps", "learner", ["learner", "search"],
                  "The step count each validation point scores the labels at: learner (the "
                  "paper's: the learner's steps since its last reset) or search (the labels' "
                  "own best, searched as for a baseline and scored with a fresh model).")
flags.DEFINE_list("augment", [], "An evaluation recipe (not the paper's): augment every "
                  "minibatch of base images, at distillation and in every evaluation, with "
                  "these of crop (random translation by up to 1/8 of the side), flip "
                  "(left-right) and colour (brightness and contrast). The distilled set "
                  "records it and experiments.train repeats it.")
flags.DEFINE_integer("validation_models", 1, "Fresh models whose mean validation error "
                     "scores each validation point and a start (1: the paper's one model; "
                     "more keep worse labels less often, at that many times the cost).")
flags.DEFINE_integer("learner_pool", 1, "P: learners whose label hypergradients each meta "
                     "step averages; a reset replaces the oldest, so they are at different "
                     "stages of training (1: the paper's single learner). P > 1 needs "
                     "--validation_steps=search and costs P times the meta step.")
flags.DEFINE_integer("horizon_steps", 0, "T: each meta step trains a fresh model from "
                     "scratch for T steps as an evaluation model trains (Adam, minibatches of "
                     "--inner_batch_size) and takes the outer loss at its end, the "
                     "hypergradient through all T steps (0: the paper's one-step look-ahead). "
                     "Needs --hypergradient=reverse and --validation_steps=search; costs about "
                     "3T evaluation training steps per meta step.")
flags.DEFINE_enum("whitening", "none", ["none", "zca"], "An evaluation recipe (not the "
                  "paper's): zca whitens every image the models see (the splits and the base "
                  "images), fitted on the target's training split after normalisation. The "
                  "distilled set stores the whitening and experiments.train repeats it.")
flags.DEFINE_float("zca_regularization", 0.1, "With --whitening=zca: added to every "
                   "eigenvalue of the images' covariance, relative to their mean (KIP's 0.1).")
flags.DEFINE_list("eval_architectures", [], "Also test the labels with these architectures "
                  "(architecture transfer), e.g. alexnet,lenet,resnet.")
flags.DEFINE_list("eval_optimizers", [], "Also test the labels with model.fit and these "
                  "optimizers: sgd, sgd_momentum, adam, rmsprop.")
flags.DEFINE_list("step_offsets", [], "Also test with the learned step count shifted by "
                  "these, e.g. -50,-20,-10,0,10,20,50,100.")
flags.DEFINE_integer("transfer_repetitions", None, "Models per transfer setting "
                     "(default: --test_repetitions).")
flags.DEFINE_boolean("verbose", True, "Show progress.")


def _integers(flag: str, values: list[str]) -> list[int]:
    return _parsed(flag, values, int, "whole numbers")


def _numbers(flag: str, values: list[str]) -> list[float]:
    return _parsed(flag, values, float, "numbers")


def _parsed(flag: str, values: list[str], kind, what: str) -> list:
    from kerasdistill.errors import DistillError
    try:
        return [kind(value) for value in values]
    except ValueError:
        raise DistillError(f"--{flag} takes {what}, got {','.join(values)}") from None


def _run():
    from kerasdistill.budget import resolve_budget
    from kerasdistill.distill.loop import DistillConfig
    from kerasdistill.errors import DistillError
    from kerasdistill.experiment import ExperimentConfig, run_experiment

    if not FLAGS.model_dir:
        raise DistillError("--model_dir is required: it is where results are written")
    if FLAGS.distribute == "multi_worker":
        # The loop itself runs on several workers (tests/test_distribute.py), but this
        # command's files are not yet made for it: every worker would write the same
        # --model_dir, and a resumed run needs every worker to restore the chief's
        # checkpoint in step.
        raise DistillError("--distribute=multi_worker is not supported by experiments.distill "
                           "yet (every worker would write --model_dir, and resuming needs all "
                           "workers to restore the chief's checkpoint together); call "
                           "kerasdistill.distill.loop.distill_labels on each worker instead")
    budget, filled = resolve_budget(FLAGS.target, FLAGS.num_base_examples, FLAGS.architecture,
                                    FLAGS.inner_batch_size, FLAGS.epochs)
    if FLAGS.verbose:
        defaulted = ", ".join(sorted(filled)) or "nothing"
        print(f"Budget: {budget.describe()} for {FLAGS.target} with n = "
              f"{FLAGS.num_base_examples} (from the paper's table: {defaulted})",
              file=sys.stderr)
    config = ExperimentConfig(
        distill=DistillConfig(
            num_base_examples=FLAGS.num_base_examples,
            inner_batch_size=budget.inner_batch_size, epochs=budget.epochs,
            outer_batch_size=FLAGS.outer_batch_size, seed=FLAGS.seed,
            label_learning_rate=FLAGS.label_learning_rate,
            validation_every_epochs=FLAGS.validation_every_epochs,
            reset_window=FLAGS.reset_window,
            jit_compile={"true": True, "false": False}.get(FLAGS.jit_compile, "auto"),
            distribute=FLAGS.distribute,
            label_parameterization=FLAGS.label_parameterization,
            augment=tuple(FLAGS.augment), validation_models=FLAGS.validation_models),
        target=FLAGS.target, source=FLAGS.source, algorithm=FLAGS.algorithm,
        architecture=budget.architecture, baseline=FLAGS.baseline,
        emnist_orientation=FLAGS.emnist_orientation, npz_orientation=FLAGS.npz_orientation,
        target_split=FLAGS.target_split,
        label_smoothing=FLAGS.label_smoothing, teacher_epochs=FLAGS.teacher_epochs,
        teacher_temperatures=tuple(_numbers("teacher_temperatures", FLAGS.teacher_temperatures)),
        base_selection=FLAGS.base_selection, teacher_epoch_choice=FLAGS.teacher_epoch_choice,
        test_repetitions=FLAGS.test_repetitions, data_dir=FLAGS.data_dir,
        download=FLAGS.download, num_validation=FLAGS.num_validation,
        target_set_size=FLAGS.target_set_size, outer_splits=FLAGS.outer_splits,
        hypergradient=FLAGS.hypergradient, outer_precision=FLAGS.outer_precision,
        eval_architectures=tuple(FLAGS.eval_architectures),
        eval_optimizers=tuple(FLAGS.eval_optimizers),
        step_offsets=tuple(_integers("step_offsets", FLAGS.step_offsets)),
        transfer_repetitions=FLAGS.transfer_repetitions, label_init=FLAGS.label_init,
        unroll_steps=FLAGS.unroll_steps, validation_steps=FLAGS.validation_steps,
        learner_pool=FLAGS.learner_pool, horizon_steps=FLAGS.horizon_steps,
        whitening=FLAGS.whitening, zca_regularization=FLAGS.zca_regularization)
    run_experiment(config, FLAGS.model_dir, verbose=FLAGS.verbose,
                   requested={f"distill.{k}" if k != "architecture" else k: v
                              for k, v in filled.items()})
    print(os.path.join(FLAGS.model_dir, "results.json"))


main = entry_point(_run)


if __name__ == "__main__":
    app.run(main)
