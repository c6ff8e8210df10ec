"""AlexNet's differentiable LRN, and one meta step of each algorithm per architecture."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdistill.distill.meta_step import init_meta_state, make_meta_step, uniform_labels
from kerasdistill.distill.registry import build_solver
from kerasdistill.layers.lrn import LocalResponseNormalization
from kerasdistill.models import ModelFactory, build_model


def _numpy_lrn(x, size, alpha, beta, k):
    """PyTorch's LocalResponseNorm, written out channel by channel."""
    channels = x.shape[-1]
    out = np.empty_like(x)
    for c in range(channels):
        low, high = max(0, c - size // 2), min(channels, c + (size - 1) // 2 + 1)
        window = np.sum(x[..., low:high] ** 2, axis=-1)
        out[..., c] = x[..., c] / (k + alpha / size * window) ** beta
    return out


@pytest.mark.parametrize("size", [4, 5, 1])
def test_lrn_forward_equals_reference_definition(size):
    x = np.random.default_rng(size).normal(size=(2, 5, 5, 9)) * 3
    layer = LocalResponseNormalization(size, alpha=0.001 / 9, beta=0.75, k=1.0, dtype="float64")
    np.testing.assert_allclose(layer(x).numpy(), _numpy_lrn(x, size, 0.001 / 9, 0.75, 1.0),
                               rtol=1e-12)


def test_lrn_odd_size_matches_tensorflow_builtin():
    # For odd sizes the window is symmetric and TF's op agrees (its alpha has no 1/size).
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 3, 3, 8)), tf.float32)
    ours = LocalResponseNormalization(5, alpha=0.5, beta=0.75, k=2.0)(x)
    builtin = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=0.5 / 5,
                                                 beta=0.75)
    np.testing.assert_allclose(ours.numpy(), builtin.numpy(), rtol=1e-5)


def test_lrn_second_derivatives_are_finite_and_match_finite_differences():
    layer = LocalResponseNormalization(4, alpha=0.5, beta=0.75, k=1.0, dtype="float64")
    x = tf.constant(np.random.default_rng(1).normal(size=(1, 2, 2, 6)))
    direction = tf.constant(np.random.default_rng(2).normal(size=(1, 2, 2, 6)))

    def gradient(values):
        with tf.GradientTape() as tape:
            tape.watch(values)
            loss = tf.reduce_sum(tf.sin(layer(values)))
        return tape.gradient(loss, values)

    with tf.GradientTape() as outer:
        outer.watch(x)
        projected = tf.reduce_sum(gradient(x) * direction)
    hessian_vector = outer.gradient(projected, x).numpy()
    assert np.all(np.isfinite(hessian_vector)) and np.abs(hessian_vector).max() > 1e-3
    eps = 1e-6
    numeric = (gradient(x + eps * direction) - gradient(x - eps * direction)).numpy() / (2 * eps)
    np.testing.assert_allclose(hessian_vector, numeric, rtol=1e-5, atol=1e-8)


def test_builtin_lrn_cannot_be_differentiated_twice():
    """Why the layer exists: TensorFlow has no gradient for LRNGrad."""
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 2, 2, 4)), tf.float32)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(tf.nn.local_response_normalization(x))
        g = tf.reduce_sum(inner.gradient(y, x))
    with pytest.raises(LookupError):
        outer.gradient(g, x)


@pytest.mark.parametrize("architecture,features", [("alexnet", 192), ("resnet", 64),
                                                   ("lenet", 84)])
def test_cifar_architectures_build(architecture, features):
    model = build_model(architecture, (32, 32, 3), 10, seed=0)
    assert model.output_shape == (None, 10)
    assert model.layers[-2].output.shape[-1] == features


@pytest.mark.parametrize("architecture", ["alexnet", "resnet", "convnet"])
@pytest.mark.parametrize("algorithm", ["second_order", "ridge_regression"])
def test_one_meta_step_of_each_algorithm(architecture, algorithm):
    factory = ModelFactory(architecture, (32, 32, 3), 10)
    solver = build_solver(algorithm, factory, outer_precision="float32")
    rng = np.random.default_rng(0)
    base_images = tf.constant(rng.normal(size=(20, 32, 32, 3)), tf.float32)
    outer_images = tf.constant(rng.normal(size=(32, 32, 32, 3)), tf.float32)
    outer_labels = tf.constant(rng.integers(0, 10, 32), tf.int32)
    state = init_meta_state(solver, uniform_labels(20, 10), seed=0)
    step = make_meta_step(solver)
    inner = tf.range(10, dtype=tf.int32)
    new_state, metrics = step(state, base_images, inner, outer_images, outer_labels)
    # The first Adam step moves each label by -lr * g / (|g| + eps) before the projection,
    # with g the solver's hypergradient for the inner batch (checked against finite
    # differences in test_hypergradient.py) and 0 for the other base images.
    grad = solver.meta_gradient(state.learner, tf.gather(base_images, inner),
                                tf.gather(state.soft_labels, inner), outer_images,
                                outer_labels).inner_label_grad.numpy()
    full = np.zeros((20, 10))
    full[:10] = grad
    moved = np.clip(0.1 - 1e-3 * full / (np.abs(full) + 1e-8), 0.0, 1.0)
    expected = moved / moved.sum(1, keepdims=True)
    np.testing.assert_allclose(new_state.soft_labels.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert np.abs(grad).max() > 0 and np.isfinite(float(metrics.outer_loss))
    # ResNet's learner carries batch-norm statistics in its non-trainable state.
    if architecture == "resnet":
        assert len(new_state.learner.non_trainable) > 0


def _sub_model(model, first: str, last: str):
    """The layers from `first`'s input to `last`'s output, as a callable."""
    import keras
    return keras.Model(model.get_layer(first).input, model.get_layer(last).output)


def test_resnet_stride_two_convolutions_pad_like_pytorch():
    model = build_model("resnet", (32, 32, 3), 10, seed=0)
    strided = [layer for layer in model.layers
               if getattr(layer, "strides", (1, 1)) == (2, 2) and layer.kernel_size == (3, 3)]
    assert len(strided) == 2  # the first block of stages 2 and 3
    rng = np.random.default_rng(0)
    for conv in strided:
        pad = conv.name.replace("_conv", "_pad")
        x = tf.constant(rng.normal(size=(2, *model.get_layer(pad).input.shape[1:])), tf.float32)
        ours = _sub_model(model, pad, conv.name)(x)
        # PyTorch's Conv2d(stride=2, padding=1): one pixel of zeros on every side.
        theirs = tf.nn.conv2d(x, conv.kernel, 2, [[0, 0], [1, 1], [1, 1], [0, 0]])
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)
        # TensorFlow's "same" would differ (it pads 0 before and 1 after).
        same = tf.nn.conv2d(x, conv.kernel, 2, "SAME")
        assert np.abs(same.numpy() - theirs.numpy()).max() > 1e-2


def test_resnet_initialisation_follows_the_authors():
    model = build_model("resnet", (32, 32, 3), 10, seed=1)
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D" and layer.kernel_size == (3, 3) and \
                layer.filters == 64:
            kernel = layer.kernel.numpy()
            expected = np.sqrt(2.0 / (3 * 3 * 64))  # normal, std sqrt(2 / (k*k*C_out))
            assert abs(kernel.mean()) < 0.1 * expected
            assert abs(kernel.std() / expected - 1) < 0.03
            assert np.abs(kernel).max() > 3 * expected  # untruncated normal tails
        if type(layer).__name__ == "BatchNormalization":
            np.testing.assert_array_equal(layer.gamma.numpy(), 1.0)
            np.testing.assert_array_equal(layer.beta.numpy(), 0.0)
    classifier = model.get_layer("classifier").kernel.numpy()
    assert np.abs(classifier).max() <= 1 / np.sqrt(64)  # PyTorch's Linear default


def test_alexnet_pools_align_with_pytorch_padding():
    model = build_model("alexnet", (32, 32, 3), 10, seed=0)
    x = tf.constant(np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 64)), tf.float32)
    ours = _sub_model(model, "pool1_pad", "pool1")(x).numpy()
    # PyTorch's MaxPool2d(3, 2, padding=1): -inf on every side, then valid windows.
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
    theirs = tf.nn.max_pool2d(padded, 3, 2, "VALID").numpy()
    assert ours.shape == theirs.shape == (2, 16, 16, 64)
    np.testing.assert_array_equal(ours, theirs)
    assert model.get_layer("flatten").output.shape[-1] == 4096


@pytest.mark.parametrize("algorithm", ["second_order", "ridge_regression"])
def test_resnet_predicts_with_batch_statistics_over_the_whole_outer_batch(algorithm):
    """As the authors' code: the outer pass normalises over the whole outer batch for both
    algorithms; second-order models predict with batch statistics (BatchNorm2d_fw),
    LD RR models with running averages (nn.BatchNorm2d after eval())."""
    solver = build_solver(algorithm, ModelFactory("resnet", (32, 32, 3), 10),
                          outer_precision="float32", outer_splits=2)
    assert solver.outer_splits == 1
    assert solver.predicts_with_batch_statistics() == (algorithm == "second_order")
    learner = solver.init_learner(0)
    images = tf.constant(np.random.default_rng(2).normal(size=(8, 32, 32, 3)), tf.float32)
    # (LD RR's classifier starts at zero: its features show what batch norm does.)
    if algorithm == "ridge_regression":  # running averages: no batch dependence
        learner = solver.train_step(learner, images, tf.constant(np.eye(10)[:8], tf.float32))
        logits = solver.predict(learner, images).numpy()
        assert np.abs(logits).max() > 0
        np.testing.assert_allclose(solver.predict(learner, images[:4]).numpy(), logits[:4],
                                   atol=1e-5)
        return
    network = solver.network
    whole = network.predict(learner.weights, learner.non_trainable, images).numpy()
    # Batch statistics: the same images predicted in another batch give other outputs...
    part = network.predict(learner.weights, learner.non_trainable, images[:4]).numpy()
    assert np.abs(part - whole[:4]).max() > 1e-4
    # ...and the batch's own normalisation equals the model in training mode.
    outputs, _ = network(learner.weights, learner.non_trainable, images, training=True)
    np.testing.assert_allclose(whole, outputs.numpy(), atol=1e-5)
    # Models without batch norm keep their shards and running-free predictions.
    lenet = build_solver(algorithm, ModelFactory("lenet", (32, 32, 3), 10),
                         outer_precision="float32", outer_splits=2)
    assert lenet.outer_splits == 2 and not lenet.predicts_with_batch_statistics()


@pytest.mark.parametrize("architecture", ["alexnet", "lenet", "convnet"])
def test_pytorch_default_initialisation_statistics(architecture):
    """Kernels and biases uniform in +-1/sqrt(fan_in) (PyTorch's Conv2d/Linear default):
    the bound holds, and the spread is a uniform's (std = bound / sqrt(3))."""
    model = build_model(architecture, (32, 32, 3), 10, seed=4)
    checked = 0
    for layer in model.layers:
        if type(layer).__name__ not in ("Conv2D", "Dense"):
            continue
        kernel = layer.kernel.numpy()
        fan_in = int(np.prod(kernel.shape[:-1]))
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(kernel).max() <= bound * (1 + 1e-6)
        if kernel.size >= 10_000:  # enough draws for the spread to be sharp
            assert abs(kernel.std() / (bound / np.sqrt(3)) - 1) < 0.03
        assert np.abs(layer.bias.numpy()).max() <= bound * (1 + 1e-6)
        checked += 1
    assert checked >= 4


def test_alexnet_structure_is_the_papers():
    model = build_model("alexnet", (32, 32, 3), 10, seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "ZeroPadding2D", "MaxPooling2D", "LocalResponseNormalization",
                     "Conv2D", "LocalResponseNormalization", "ZeroPadding2D", "MaxPooling2D",
                     "Flatten", "Dense", "Dense", "Dense"]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [(c.filters, c.kernel_size, c.padding) for c in convs] == [(64, (5, 5), "same")] * 2
    assert [layer.units for layer in model.layers if type(layer).__name__ == "Dense"] == [
        384, 192, 10]
    lrn = model.get_layer("lrn1")
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (4, 0.001 / 9.0, 0.75, 1.0)
    assert model.count_params() == (5 * 5 * 3 * 64 + 64) + (5 * 5 * 64 * 64 + 64) + (
        4096 * 384 + 384) + (384 * 192 + 192) + (192 * 10 + 10)
