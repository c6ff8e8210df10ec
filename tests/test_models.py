"""Model registry and LeNet."""

import numpy as np
import pytest

from kerasdistill.errors import DistillError
from kerasdistill.models import ModelFactory, build_model


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_lenet_shapes_and_parameter_count(shape):
    model = build_model("lenet", shape, 10, seed=0)
    assert model.output_shape == (None, 10)
    # conv1 + conv2 + 400*120 + 120*84 + 84*10 dense layers (both inputs reach 5x5x16).
    expected = (5 * 5 * shape[2] * 6 + 6) + (5 * 5 * 6 * 16 + 16) + (400 * 120 + 120) \
        + (120 * 84 + 84) + (84 * 10 + 10)
    assert model.count_params() == expected


def test_initialisation_is_seeded():
    factory = ModelFactory("lenet", (28, 28, 1), 10)
    first, _ = factory.initial_weights(7)
    again, _ = factory.initial_weights(7)
    other, _ = factory.initial_weights(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(first, other))


def test_torch_style_bounds():
    weights, _ = ModelFactory("lenet", (28, 28, 1), 10).initial_weights(0)
    fc1_kernel, fc1_bias = weights[4].numpy(), weights[5].numpy()
    bound = 1 / np.sqrt(400)
    assert np.abs(fc1_kernel).max() <= bound + 1e-7 and np.abs(fc1_kernel).max() > 0.9 * bound
    assert np.abs(fc1_bias).max() <= bound + 1e-7


def test_mixed_precision_model_keeps_float32_weights_and_head():
    model = build_model("lenet", (28, 28, 1), 10, precision="mixed_conv_bfloat16")
    assert all(v.dtype == "float32" for v in model.weights)
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("classifier").compute_dtype == "float32"


def test_unknown_architecture_and_precision():
    with pytest.raises(DistillError, match="unknown architecture 'vgg'"):
        build_model("vgg", (28, 28, 1), 10)
    with pytest.raises(DistillError, match="precision must be one of"):
        build_model("lenet", (28, 28, 1), 10, precision="float16")


@pytest.mark.parametrize("shape,params,features", [((32, 32, 3), 320_010, 2048),
                                                   ((28, 28, 1), 308_746, 1152)])
def test_convnet_structure_and_parameter_count(shape, params, features):
    # 3 x (conv 128@3x3 + instance norm's scale and offset), one dense layer.
    from kerasdistill.models import build_model
    model = build_model("convnet", shape, 10, seed=0)
    assert model.count_params() == params
    assert model.layers[-2].output.shape[-1] == features  # LD RR's features
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "GroupNormalization", "ReLU", "AveragePooling2D"] * 3 + [
        "Flatten", "Dense"]


def test_convnet_normalises_each_image_and_channel_on_its_own():
    import keras
    from kerasdistill.models import build_model
    model = build_model("convnet", (32, 32, 3), 10, seed=1)
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    conv = keras.Model(model.inputs, model.get_layer("conv1").output)(images).numpy()
    normed = keras.Model(model.inputs, model.get_layer("norm1").output)(images).numpy()
    mean = conv.mean(axis=(1, 2), keepdims=True)
    variance = conv.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(normed, (conv - mean) / np.sqrt(variance + 1e-5), atol=1e-4)
    # No batch statistics: an image's logits do not depend on the rest of its batch.
    np.testing.assert_allclose(model(images[:1]).numpy(), model(images).numpy()[:1], atol=1e-5)
    assert not model.non_trainable_weights
