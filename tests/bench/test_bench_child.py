"""How measuring children name the handler: Lambda's `module.function`, or `module:function`."""

import pytest

from bench.child import DEFAULT_HANDLER, split_handler


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (DEFAULT_HANDLER, ("lambda_src.handler", "lambda_handler")),
        ("lambda_src.handler:lambda_handler", ("lambda_src.handler", "lambda_handler")),
        ("lambda_src.batch_handler.lambda_handler", ("lambda_src.batch_handler", "lambda_handler")),
    ],
)
def test_a_handler_spec_names_its_module_and_function(spec: str, expected: tuple[str, str]) -> None:
    # (the warm bench looked the default spec up as a module name, and `make bench` failed)
    assert split_handler(spec) == expected
