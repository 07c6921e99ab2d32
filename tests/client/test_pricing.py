"""Lambda's prices and the Amdahl fit that stretches measured latency to a function's vCPUs."""

import pytest

from endpoint_client.pricing import cost_per_million_usd, expected_latency_ms, serial_fraction, vcpus_of


def test_perfect_two_thread_scaling_extrapolates_to_linear_speed_up():
    # Given latency that halves from one to two threads
    one, two = 100.0, 50.0
    # When it is extrapolated to 1.7 and 3 vCPUs
    # Then it keeps scaling linearly
    assert serial_fraction(one, two) == 0.0
    assert expected_latency_ms(one, two, 3.0) == pytest.approx(100 / 3)
    assert expected_latency_ms(one, two, 1.7) == pytest.approx(100 / 1.7)


def test_no_two_thread_gain_means_no_gain_from_more_vcpus():
    assert serial_fraction(80.0, 80.0) == 1.0
    assert expected_latency_ms(80.0, 80.0, 3.0) == pytest.approx(80.0)


def test_one_vcpu_is_the_one_thread_measurement():
    assert expected_latency_ms(42.0, 30.0, 1.0) == 42.0


def test_cost_bills_memory_in_gib_and_duration_in_whole_milliseconds():
    # 1769 MB for 99.2 ms is billed as 100 ms: 1e6 * 1769/1024 GB * 0.1 s * price, plus $0.20
    expected = 1_000_000 * (1769 / 1024) * 0.100 * 0.0000166667 + 0.20
    assert cost_per_million_usd(1769, 99.2) == pytest.approx(expected)


def test_vcpus_grow_with_memory_up_to_six():
    assert vcpus_of(1769) == 1.0
    assert vcpus_of(3538) == 2.0
    assert vcpus_of(10240) == pytest.approx(10240 / 1769)
    assert vcpus_of(20_000) == 6  # the most Lambda gives
