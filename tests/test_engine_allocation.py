"""How many weights each layer keeps: exact integer splits and ERK densities."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sb3_tar import erk_densities, split_largest_remainder


def test_largest_remainder_split_is_proportional_and_exact():
    assert split_largest_remainder(10, [1, 1, 1], [10, 10, 10]) == [4, 3, 3]
    assert split_largest_remainder(7, [2, 1], [10, 10]) == [5, 2]


def test_a_capped_part_hands_its_overflow_to_the_others():
    assert split_largest_remainder(10, [100, 1, 1], [2, 10, 10]) == [2, 4, 4]


def test_zero_weights_fall_back_to_room():
    assert split_largest_remainder(4, [0, 0], [1, 3]) == [1, 3]


def test_split_rejects_a_total_beyond_capacity():
    with pytest.raises(ValueError, match="total=5"):
        split_largest_remainder(5, [1, 1], [2, 2])


@given(
    st.lists(st.tuples(st.floats(0, 100), st.integers(0, 1000)), min_size=1, max_size=8),
    st.floats(0, 1),
)
def test_split_sums_exactly_and_respects_capacities(parts, fraction):
    weights = [weight for weight, _ in parts]
    capacities = [capacity for _, capacity in parts]
    total = math.floor(fraction * sum(capacities))
    split = split_largest_remainder(total, weights, capacities)
    assert sum(split) == total
    assert all(0 <= part <= capacity for part, capacity in zip(split, capacities))


def test_erk_densities_follow_the_formula_when_no_layer_is_capped():
    shapes = [(376, 256), (256, 256), (256, 17)]
    densities = erk_densities(shapes, 0.05)
    raw = [(i + o) / (i * o) for i, o in shapes]
    sizes = [i * o for i, o in shapes]
    eps = 0.05 * sum(sizes) / sum(r * s for r, s in zip(raw, sizes))
    assert densities == pytest.approx([eps * r for r in raw])
    assert sum(d * s for d, s in zip(densities, sizes)) == pytest.approx(0.05 * sum(sizes))


def test_erk_makes_overflowing_layers_dense_and_rescales_the_rest():
    shapes = [(376, 256), (256, 256), (256, 2)]
    sizes = [i * o for i, o in shapes]
    densities = erk_densities(shapes, 0.5)
    assert densities[2] == 1.0
    # The rest still follow (in + out) / (in * out), re-scaled so the total is exact.
    assert densities[0] / densities[1] == pytest.approx(((376 + 256) / (376 * 256)) / (512 / 65536))
    assert sum(d * s for d, s in zip(densities, sizes)) == pytest.approx(0.5 * sum(sizes))


@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 300)), min_size=1, max_size=5), st.floats(0, 1))
def test_erk_densities_are_valid_and_keep_the_total(shapes, density):
    densities = erk_densities(shapes, density)
    sizes = [i * o for i, o in shapes]
    assert all(0.0 <= d <= 1.0 for d in densities)
    assert sum(d * s for d, s in zip(densities, sizes)) == pytest.approx(density * sum(sizes), rel=1e-9, abs=1e-6)


def test_erk_rejects_density_outside_unit_interval():
    with pytest.raises(ValueError, match="density"):
        erk_densities([(2, 2)], 1.5)
