"""``CompressedLinear`` computes what the masked dense layer computes, forward and backward, on kept weights only."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sb3_tar.engine.compressed import CompressedLinear, compress_linear_layers


def masked_pair(in_features: int, out_features: int, density: float, seed: int, bias: bool = True):
    generator = torch.Generator().manual_seed(seed)
    dense = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        dense.weight.copy_(torch.randn(out_features, in_features, generator=generator))
    mask = torch.rand(out_features, in_features, generator=generator) < density
    with torch.no_grad():
        dense.weight.mul_(mask)
    return dense, mask, CompressedLinear(dense.weight, mask, dense.bias)


@settings(max_examples=30, deadline=None)
@given(in_features=st.integers(1, 40), out_features=st.integers(1, 40), density=st.floats(0.0, 1.0),
       batch=st.integers(1, 9), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_forward_and_gradients_equal_the_masked_dense_layer(in_features, out_features, density, batch, bias, seed):
    dense, mask, compressed = masked_pair(in_features, out_features, density, seed, bias)
    inputs = torch.randn(batch, in_features, generator=torch.Generator().manual_seed(seed + 1))
    dense_inputs, compressed_inputs = inputs.clone().requires_grad_(), inputs.clone().requires_grad_()
    expected, output = dense(dense_inputs), compressed(compressed_inputs)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    output.backward(grad)
    torch.testing.assert_close(compressed_inputs.grad, dense_inputs.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compressed.values.grad, dense.weight.grad[mask], rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(compressed.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-5)
    assert torch.equal(compressed.mask(), mask)
    assert torch.equal(compressed.dense_weight(), dense.weight.detach())


@settings(max_examples=20, deadline=None)
@given(in_features=st.integers(1, 30), out_features=st.integers(1, 30), density=st.floats(0.0, 1.0),
       block=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_gathering_by_blocks_of_rows_builds_the_same_layer_and_target_copy(in_features, out_features, density, block,
                                                                           seed):
    """A layer compressed a few rows at a time (blocks smaller than a row included) holds the masked weight exactly."""
    import sb3_tar.engine.compressed as compressed_module

    original = compressed_module.GATHER_BLOCK
    compressed_module.GATHER_BLOCK = block
    try:
        dense, mask, compressed = masked_pair(in_features, out_features, density, seed)
        other = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed + 2))
        copy_of = CompressedLinear(other, mask, None, indices_of=compressed)
    finally:
        compressed_module.GATHER_BLOCK = original
    assert torch.equal(compressed.dense_weight(), dense.weight.detach()) and torch.equal(compressed.mask(), mask)
    assert torch.equal(copy_of.dense_weight(), other * mask) and copy_of.col is compressed.col


def test_a_chain_of_layers_trains_like_the_masked_dense_chain():
    first, first_mask, first_compressed = masked_pair(12, 32, 0.2, 0)
    second, second_mask, second_compressed = masked_pair(32, 3, 0.3, 1)
    dense = nn.Sequential(first, nn.ReLU(), second)
    compressed = nn.Sequential(first_compressed, nn.ReLU(), second_compressed)
    inputs = torch.randn(64, 12, generator=torch.Generator().manual_seed(2))
    dense(inputs).square().sum().backward()
    compressed(inputs).square().sum().backward()
    torch.testing.assert_close(first_compressed.values.grad, first.weight.grad[first_mask], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(second_compressed.values.grad, second.weight.grad[second_mask], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 5)])
def test_inputs_of_any_leading_shape_are_taken_as_nn_linear_takes_them(shape):
    dense, _, compressed = masked_pair(5, 4, 0.5, 0)
    inputs = torch.randn(*shape)
    torch.testing.assert_close(compressed(inputs), dense(inputs), rtol=1e-5, atol=1e-6)


def test_only_the_kept_weights_are_parameters():
    _, mask, compressed = masked_pair(100, 50, 0.1, 0)
    assert compressed.values.numel() == int(mask.sum()) == compressed.kept
    assert {name for name, _ in compressed.named_parameters()} == {"values", "bias"}
    assert all(buffer.dtype in (torch.int32, torch.int64) for buffer in compressed.buffers())


def test_compress_linear_layers_swaps_the_masked_layers_of_a_network_and_keeps_its_function():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Sequential(nn.Linear(5, 2)), nn.Linear(2, 2))
    masks = {"0.weight": torch.rand(5, 6) < 0.5, "2.0.weight": torch.rand(2, 5) < 0.5}
    with torch.no_grad():
        for name, mask in masks.items():
            network.get_parameter(name).mul_(mask)
    inputs = torch.randn(3, 6)
    expected = network(inputs)
    assert compress_linear_layers(network, masks) == ["0.weight", "2.0.weight"]
    assert isinstance(network[0], CompressedLinear) and isinstance(network[2][0], CompressedLinear)
    assert type(network[3]) is nn.Linear  # a layer without a mask stays dense
    torch.testing.assert_close(network(inputs), expected)
    assert network[0].kept == int(masks["0.weight"].count_nonzero())


@pytest.mark.parametrize("name", ["1.weight", "0.bias", "9.weight"])
def test_compress_linear_layers_refuses_a_mask_that_names_no_linear_weight(name):
    network = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(ValueError, match=f"mask '{name}' names no nn.Linear weight"):
        compress_linear_layers(network, {name: torch.ones(3, 3, dtype=torch.bool)})


def test_a_compressed_layer_moved_off_the_cpu_says_how_to_get_there():
    mask = torch.rand(8, 4) < 0.5
    on_cpu = CompressedLinear(torch.randn(8, 4), mask, torch.zeros(8))
    layer = copy.deepcopy(on_cpu).to("meta")  # any device but the CPU
    assert layer.values.device.type == "meta" and layer.crow.device.type == "meta"  # the indices moved along
    with pytest.raises(RuntimeError, match=r"runs on the CPU only .* moved to meta: load the model onto that device "
                                           r"instead \(Algo.load\(path, device=...\)\); kernel='auto' then trains it "
                                           r"dense"):
        layer(torch.randn(2, 4, device="meta"))
    assert on_cpu(torch.randn(2, 4)).shape == (2, 8)
