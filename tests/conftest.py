"""Settings for the whole test session, applied before any test module imports torch, and its shared synth."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.infrastructure.conftest import Synthesized

# Several test folders train or serve models while pytest and helper processes share two
# cores; OpenMP's spinning worker threads then make each step many times slower.
# Child processes (the local endpoint, the CLI) inherit the setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Synthesized]:
    """synthesized("api_key") -> that variant's templates, synthesized on first use only.

    Session-wide (infrastructure and rehearsal tests share it): a synth costs ~20 s.
    """
    from tests.infrastructure.conftest import VARIANTS, synthesize  # the CDK app: only when a test needs it

    cache: dict[str, Synthesized] = {}

    def get(variant: str) -> Synthesized:
        if variant not in cache:
            cache[variant] = synthesize(VARIANTS[variant], tmp_path_factory.mktemp(f"cdk-{variant}"))
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def default_synth(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("default")
