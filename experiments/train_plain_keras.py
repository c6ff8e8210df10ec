r"""A distilled set used with plain TensorFlow, TFDS and Keras only (no kerasdistill import).

  python -m experiments.train_plain_keras --distilled=runs/mnist_n100_ld/distilled_set \
      --test_npz=../shared/data/mnist.npz --repetitions=20 --output_json=out.json

The body of `train_one` is the README's example, line for line (a test keeps the
two equal): it is what a user who received a distilled set writes.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("distilled", None, "A distilled set folder.")
flags.DEFINE_string("test_npz", None, "The target's test split: an npz with x_test, y_test.")
flags.DEFINE_integer("repetitions", 20, "Models to train.")
flags.DEFINE_string("output_json", None, "Write mean, std and every accuracy here (named "
                    "results.json, with a config.json of these flags beside it).")


def train_one(DISTILLED, TEST_NPZ, seed):
    # --- README example: start ---
    import numpy as np, tensorflow as tf, tensorflow_datasets as tfds, keras

    builder = tfds.builder_from_directory(DISTILLED)  # a run's distilled_set/ folder
    meta = builder.info.metadata  # the recipe: num_train_steps, inner_batch_size, mean, std, ...
    mean, std = np.float32(meta["mean"]), np.float32(meta["std"])
    normalize = lambda image: (tf.cast(image, tf.float32) / 255.0 - mean) / std
    train = (builder.as_dataset(split="train")
             .map(lambda example: (normalize(example["image"]), example["soft_label"]))
             .cache().shuffle(1000, seed=seed).repeat()
             .batch(meta["inner_batch_size"], drop_remainder=True))

    keras.utils.set_random_seed(seed)
    init = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")  # PyTorch's default
    model = keras.Sequential([  # LeNet for 28x28 inputs, as meta["architecture"] == "lenet"
        keras.Input(meta["image_shape"]),
        keras.layers.Conv2D(6, 5, padding="same", activation="relu", kernel_initializer=init),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 5, activation="relu", kernel_initializer=init),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(120, activation="relu", kernel_initializer=init),
        keras.layers.Dense(84, activation="relu", kernel_initializer=init),
        keras.layers.Dense(meta["num_classes"], kernel_initializer=init)])
    model.compile(keras.optimizers.Adam(meta["recipe"]["learning_rate"]),
                  keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(train, epochs=1, steps_per_epoch=meta["num_train_steps"], verbose=0)

    test = np.load(TEST_NPZ)  # the target's official test split (Keras npz layout)
    test_images = normalize(test["x_test"].reshape(-1, *meta["image_shape"]))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    accuracy = model.evaluate(test_images, test["y_test"], verbose=0, return_dict=True)["accuracy"]
    # --- README example: end ---
    return float(accuracy)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.distilled or not FLAGS.test_npz:
        print("error: --distilled and --test_npz are required", file=sys.stderr)
        sys.exit(2)
    import numpy as np
    metadata_path = os.path.join(FLAGS.distilled, "distilled_set.json")
    if os.path.exists(metadata_path) and json.load(open(metadata_path)).get(
            "recipe", {}).get("whitening", "none") != "none":
        # The README's example normalises only; a whitened set would train on images
        # unlike those its labels were learned for.
        print(f"error: {FLAGS.distilled} was distilled on ZCA-whitened images, which the "
              f"plain example does not whiten; use python -m experiments.train",
              file=sys.stderr)
        sys.exit(2)
    config_path = os.path.join(os.path.dirname(FLAGS.output_json or ""), "config.json")
    if FLAGS.output_json and os.path.basename(FLAGS.output_json) in ("results.json",
                                                                      "config.json") \
            and os.path.exists(config_path) \
            and "train_plain_keras" not in open(config_path).read():
        print(f"error: --output_json={FLAGS.output_json} would overwrite another run's files; "
              f"name another folder", file=sys.stderr)
        sys.exit(2)
    accuracies = []
    for seed in range(FLAGS.repetitions):
        accuracies.append(train_one(FLAGS.distilled, FLAGS.test_npz, seed))
        print(f"model {seed + 1}/{FLAGS.repetitions}: {100 * accuracies[-1]:.2f} %",
              file=sys.stderr)
    results = {"test_accuracy_mean": float(np.mean(accuracies)),
               "test_accuracy_std": float(np.std(accuracies)), "test_accuracies": accuracies,
               "distilled": FLAGS.distilled, "repetitions": FLAGS.repetitions,
               "script": "experiments.train_plain_keras (the README's plain TFDS/Keras example)"}
    print(f"test accuracy {100 * results['test_accuracy_mean']:.2f} +- "
          f"{100 * results['test_accuracy_std']:.2f} % over {FLAGS.repetitions} models")
    if FLAGS.output_json:  # a temporary file and a rename: never half a file
        with open(FLAGS.output_json + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(FLAGS.output_json + ".tmp", FLAGS.output_json)
        if os.path.basename(FLAGS.output_json) == "results.json":  # a run folder: its settings
            config_path = os.path.join(os.path.dirname(FLAGS.output_json), "config.json")
            with open(config_path + ".tmp", "w") as f:
                json.dump({"command": "experiments.train_plain_keras",
                           "distilled": FLAGS.distilled, "test_npz": FLAGS.test_npz,
                           "repetitions": FLAGS.repetitions, "seeds": "0 .. repetitions-1"},
                          f, indent=1)
            os.replace(config_path + ".tmp", config_path)


if __name__ == "__main__":
    app.run(main)
