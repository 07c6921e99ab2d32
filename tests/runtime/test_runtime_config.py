"""Runtime settings from the environment, and how many CPUs torch may use."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from pathlib import Path

import pytest

from lambda_src.contract import LAMBDA_MAX_PAYLOAD_BYTES
from lambda_src.cpus import available_cpus, cgroup_cpu_quota
from lambda_src.settings import RuntimeSettings
from lambda_src.telemetry import Telemetry


def test_defaults_fit_lambda() -> None:
    settings = RuntimeSettings.from_env({})
    assert settings == RuntimeSettings()
    assert settings.max_batch_size == 8
    assert settings.max_body_bytes == LAMBDA_MAX_PAYLOAD_BYTES == 6 * 1024 * 1024
    assert settings.model_retry_seconds == 30
    assert settings.torch_threads == 0


def test_every_setting_is_read_from_its_variable() -> None:
    settings = RuntimeSettings.from_env(
        {
            "MAX_BATCH_SIZE": "4",
            "MAX_BODY_BYTES": "1000000",
            "MAX_IMAGE_PIXELS": "25000000",
            "MODEL_RETRY_SECONDS": "2.5",
            "TORCH_NUM_THREADS": "3",
            "CORS_ALLOW_ORIGIN": "https://app.example.com",
        }
    )
    assert settings == RuntimeSettings(
        max_batch_size=4,
        max_body_bytes=1_000_000,
        max_image_pixels=25_000_000,
        model_retry_seconds=2.5,
        torch_threads=3,
        cors_allow_origin="https://app.example.com",
    )


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("MAX_BATCH_SIZE", "0", "MAX_BATCH_SIZE must be from 1 to 64, got 0"),
        ("MAX_BATCH_SIZE", "65", "from 1 to 64"),
        ("MAX_BATCH_SIZE", "eight", "MAX_BATCH_SIZE must be a whole number, got 'eight'"),
        ("MAX_BODY_BYTES", "-1", "MAX_BODY_BYTES must be positive"),
        ("MAX_IMAGE_PIXELS", "1e6", "MAX_IMAGE_PIXELS must be a whole number"),
        ("MODEL_RETRY_SECONDS", "soon", "MODEL_RETRY_SECONDS must be a number of seconds"),
        ("MODEL_RETRY_SECONDS", "nan", "zero or more seconds"),
        ("TORCH_NUM_THREADS", "-2", "TORCH_NUM_THREADS must be 0 (automatic) or more"),
    ],
)
def test_bad_values_are_refused_with_the_variable_name(variable: str, value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        RuntimeSettings.from_env({variable: value})


def test_empty_variables_keep_the_defaults() -> None:
    assert RuntimeSettings.from_env({"MAX_BATCH_SIZE": "", "TORCH_NUM_THREADS": " "}) == RuntimeSettings()


def _cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000"}, 1.5),
        ({"cpu.max": "max 100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
    ids=["v2-limited", "v2-unlimited", "v1-limited", "v1-unlimited", "no-cgroup"],
)
def test_cgroup_cpu_quota_is_read_from_v2_or_v1_files(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    assert cgroup_cpu_quota(_cgroup(tmp_path, files)) == quota


def test_available_cpus_is_the_affinity_mask_capped_by_the_quota_rounded_up(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(_cgroup(tmp_path / "none", {})) == affinity
    assert available_cpus(_cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})) == 1
    assert available_cpus(_cgroup(tmp_path / "many", {"cpu.max": "6400000 100000"})) == affinity


@pytest.mark.parametrize("how", ["from the function's environment", "from the process environment"])
def test_an_unknown_log_level_logs_at_info_and_says_so_instead_of_stopping_the_function(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # Given POWERTOOLS_LOG_LEVEL=LOUD (Powertools itself raises on it: an init error on Lambda)
    stream = io.StringIO()
    service = f"log-level-{uuid.uuid4().hex[:8]}"  # Powertools loggers are per service name, process-wide
    if how == "from the function's environment":
        telemetry = Telemetry(service=service, stream=stream, log_level="LOUD")
        assert Telemetry.from_env({"POWERTOOLS_LOG_LEVEL": "LOUD"}).logger.log_level == logging.INFO
    else:
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "LOUD")
        telemetry = Telemetry(service=service, stream=stream)
    # Then it logs at INFO, and its first line tells the operator which setting is wrong
    assert telemetry.logger.log_level == logging.INFO
    (warning,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert warning["level"] == "WARNING" and warning["setting"] == "POWERTOOLS_LOG_LEVEL"
    assert "'LOUD' is not a log level" in warning["message"]


def test_a_known_log_level_is_taken_in_any_case() -> None:
    telemetry = Telemetry(
        service=f"log-level-{uuid.uuid4().hex[:8]}", stream=io.StringIO(), log_level="debug"
    )
    assert telemetry.logger.log_level == logging.DEBUG
