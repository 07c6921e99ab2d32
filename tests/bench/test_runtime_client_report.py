"""The runtime client's init in the report: per store, next to the in-process cold start."""

from bench.report import runtime_client_section, runtime_client_table


def summary(seconds: float) -> dict:
    return {"median": seconds, "min": seconds, "max": seconds, "runs": [seconds]}


def measured(init_s: float, response_s: float) -> dict:
    return {"init_s": summary(init_s), "first_response_s": summary(response_s)}


RUNTIME_CLIENT = {
    "command": "python -m awslambdaric lambda_src.handler.lambda_handler",
    "runs_as": {"python": "/usr/bin/python3.11", "user": "nobody"},
    "local": measured(1.5, 0.05),
    "s3": measured(1.75, 0.25),
}


def test_each_store_shows_init_first_response_and_the_in_process_cold_start() -> None:
    # Given a full run's model and one measured by the standalone command (no in-process cold start)
    models = {
        "resnet18": {
            "runtime_client_init": RUNTIME_CLIENT,
            "cold_start_s": {"handler_local": summary(1.2), "handler_s3": summary(1.4)},
        },
        "alone": {"runtime_client_init": RUNTIME_CLIENT},
        "before": {"cold_start_s": {"handler_local": summary(1.2), "handler_s3": summary(1.4)}},
    }
    table = runtime_client_table(models)
    # Then each store has its row, the sum of init and first response, and the cold start when known
    assert "| resnet18 | local | 1.50 | 50 | 1.55 | 1.20 |" in table
    assert "| resnet18 | s3 | 1.75 | 250 | 2.00 | 1.40 |" in table
    assert "| alone | s3 | 1.75 | 250 | 2.00 | - |" in table
    assert "before" not in table  # results from before the bench measured it
    [section] = runtime_client_section(models, repeats=3)
    assert section.startswith("**Init under the runtime interface client** (median of 3;")
    assert "as nobody with /usr/bin/python3.11" in section


def test_results_without_the_measurement_have_no_section() -> None:
    assert runtime_client_section({"resnet18": {"cold_start_s": {}}}, repeats=3) == []
