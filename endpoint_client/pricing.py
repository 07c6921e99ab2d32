"""What Lambda charges and what its memory buys: list prices, vCPUs, and latency stretched to them.

Lambda gives CPU in proportion to memory: 1,769 MB is one vCPU, 3,008 MB about 1.7,
5,307 MB three. The benchmark's machine has two cores, so latency is measured at one
and two threads and extrapolated with Amdahl's law: from t(1) and t(2) the serial
fraction is s = 2 t(2) / t(1) - 1, and t(n) = t(1) (s + (1 - s) / n), with n the vCPUs
(fractional for 3,008 MB, where two threads share 1.7 vCPUs of quota). Past two threads
this is optimistic: small convolutions and memory bandwidth scale worse than the fit
assumes. The batch cost estimate (batch_cost.py) and the bench's memory-sizing guide
(bench/sizing.py) both price with this module.
"""

from __future__ import annotations

import math

# AWS Lambda x86 on-demand prices in us-east-1 (first duration tier), as published in
# 2024-2025; not looked up live. Duration is billed per 1 ms, memory in GB = MB / 1024.
PRICE_PER_GB_SECOND_USD = 0.0000166667
PRICE_PER_MILLION_REQUESTS_USD = 0.20
PRICES_AS_OF = "AWS Lambda x86 us-east-1 list prices as published in 2024-2025 (not looked up live)"
MB_PER_VCPU = 1769  # Lambda gives one vCPU per 1,769 MB of memory
MAX_VCPUS = 6


def vcpus_of(memory_mb: int) -> float:
    """The vCPUs a function with `memory_mb` gets (fractional below 1,769 MB)."""
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def serial_fraction(one_thread_ms: float, two_threads_ms: float) -> float:
    """Amdahl's serial fraction fitted to the one- and two-thread latency, kept within [0, 1]."""
    return min(1.0, max(0.0, 2 * two_threads_ms / one_thread_ms - 1))


def expected_latency_ms(one_thread_ms: float, two_threads_ms: float, vcpus: float) -> float:
    """Latency on `vcpus` CPUs; below one vCPU the work simply stretches."""
    if vcpus <= 1:
        return one_thread_ms / vcpus
    serial = serial_fraction(one_thread_ms, two_threads_ms)
    return one_thread_ms * (serial + (1 - serial) / vcpus)


def cost_per_million_usd(memory_mb: int, latency_ms: float) -> float:
    """Duration plus request charges for a million requests of `latency_ms` each."""
    billed_seconds = math.ceil(latency_ms) / 1000
    duration = 1_000_000 * (memory_mb / 1024) * billed_seconds * PRICE_PER_GB_SECOND_USD
    return duration + PRICE_PER_MILLION_REQUESTS_USD
