"""Every setting the function reads fails soft: 503 `misconfigured`, or a fallback with a warning.

One table lists bad values for every variable in `contract.FUNCTION_VARIABLES`; a variable
added there without bad values here fails the first test. Each case goes through the path
the handler takes at init (the process environment corrected, Telemetry and the service made
from it) and asks for /health. The rehearsal tier runs the import-time ones under awslambdaric.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lambda_src import contract, settings
from lambda_src.service import InferenceService
from lambda_src.telemetry import Telemetry
from tests.support.events import api_gateway_event, body_of

MISCONFIGURED = "misconfigured"  # the service answers 503 misconfigured and the log names the variable
FALLBACK = "fallback"  # the function runs with the default and the log warns, naming the variable

BAD_VALUES: dict[str, tuple[str, list[str]]] = {
    contract.ENV_MODEL_STORE: (MISCONFIGURED, ["ftp://models.example.com/m", "s3://", "s3:///prefix"]),
    contract.ENV_MODEL_NAME: (MISCONFIGURED, ["../etc", "a/b", "x" * 200]),
    contract.ENV_MODEL_VERSION: (MISCONFIGURED, ["v1/../../x", ".."]),
    contract.ENV_MAX_BATCH_SIZE: (MISCONFIGURED, ["eight", "0", "65", "1e9"]),
    contract.ENV_MAX_BODY_BYTES: (MISCONFIGURED, ["-1", "lots", "0"]),
    contract.ENV_MAX_IMAGE_PIXELS: (MISCONFIGURED, ["0", "1e6", "many"]),
    contract.ENV_MODEL_RETRY_SECONDS: (MISCONFIGURED, ["soon", "nan", "inf", "-1", "1e308"]),
    contract.ENV_TORCH_NUM_THREADS: (MISCONFIGURED, ["-2", "two", "99999"]),
    contract.ENV_CORS_ALLOW_ORIGIN: (
        MISCONFIGURED,
        ["https://app.example.com\r\nSet-Cookie: a=b", "two origins", "https://caf\u00e9.example"],
    ),
    contract.ENV_POWERTOOLS_SERVICE_NAME: (FALLBACK, ["x" * 2000, "tab\there"]),
    contract.ENV_POWERTOOLS_METRICS_NAMESPACE: (FALLBACK, ["AWS/Lambda", "bad namespace!", "n" * 300]),
    contract.ENV_POWERTOOLS_METRICS_DISABLED: (FALLBACK, ["x", "maybe"]),
    contract.ENV_POWERTOOLS_LOG_LEVEL: (FALLBACK, ["LOUD", "7"]),
    contract.ENV_POWERTOOLS_LOGGER_SAMPLE_RATE: (FALLBACK, ["abc", "2", "-1", "nan"]),
    contract.ENV_POWERTOOLS_DEV: (FALLBACK, ["maybe"]),
    contract.ENV_POWERTOOLS_DEBUG: (FALLBACK, ["maybe"]),
    contract.ENV_POWERTOOLS_LOG_DEDUPLICATION_DISABLED: (FALLBACK, ["x"]),
    contract.ENV_POWERTOOLS_LOGGER_LOG_EVENT: (FALLBACK, ["x"]),
    contract.ENV_POWERTOOLS_TRACE_DISABLED: (FALLBACK, ["x"]),
}
CASES = [(name, value) for name, (_, values) in BAD_VALUES.items() for value in values]
HEALTH = api_gateway_event("GET", "/health")


def test_every_variable_the_function_reads_has_bad_values_here() -> None:
    assert set(BAD_VALUES) == set(contract.FUNCTION_VARIABLES)


@pytest.mark.parametrize(("variable", "value"), CASES, ids=[f"{n}={v[:20]!r}" for n, v in CASES])
def test_a_bad_value_answers_503_misconfigured_or_falls_back_with_a_warning(
    variable: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the function's environment (an empty store: nothing is published) with one bad value
    monkeypatch.setattr(settings, "corrections", [])
    for name in contract.FUNCTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(contract.ENV_MODEL_STORE, str(tmp_path))
    monkeypatch.setenv(contract.ENV_MODEL_NAME, "colours")
    monkeypatch.setenv(contract.ENV_POWERTOOLS_SERVICE_NAME, f"settings-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv(variable, value)
    # When the function starts as the handler does, and /health is asked
    telemetry = Telemetry.from_env()
    service = InferenceService.from_env(telemetry=telemetry)
    service.load()
    answer = service.handle(HEALTH)
    # Then it answers 503 with the expected reason, and the log names the variable to fix
    outcome, _ = BAD_VALUES[variable]
    assert answer["statusCode"] == 503, answer
    error = body_of(answer)["error"]
    expected = "misconfigured" if outcome == MISCONFIGURED else "not_published"
    assert (error["code"], error["reason"]) == ("model_unavailable", expected)
    assert variable not in error["message"]  # the caller gets the reason; the operator, the log
    logged = capsys.readouterr().out
    corrected = [correction.variable for correction in settings.corrections]
    assert variable in logged or variable in corrected, logged
    if outcome == FALLBACK and variable != contract.ENV_POWERTOOLS_LOG_LEVEL:
        assert corrected == [variable]
