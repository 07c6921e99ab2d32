"""The context object the Lambda Python runtime passes to a handler, for local invocations."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "000000000000"


@dataclass(frozen=True)
class FunctionSettings:
    """What the deployed function would be configured with (names the logs, bounds the deadline).

    The defaults are cdk.json's memory_size_mb and timeout_seconds; nothing enforces the
    timeout locally, it only sets what `get_remaining_time_in_millis` counts down from.
    """

    function_name: str = "InferenceFunction"
    memory_mb: int = 3008
    timeout_s: float = 20.0
    version: str = "$LATEST"

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"


@dataclass(frozen=True)
class LambdaContext:
    """Same attributes and methods as the runtime's context (awslambdaric's LambdaContext)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: str  # the real runtime passes the environment's string through
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: None = None
    client_context: None = None
    tenant_id: None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(self.deadline_ms - int(time.time() * 1000), 0)

    def log(self, message: str) -> None:
        print(message, end="" if message.endswith("\n") else "\n", flush=True)


def new_context(settings: FunctionSettings, log_stream_name: str) -> LambdaContext:
    """A context for one invocation, with a fresh request id and a deadline `timeout_s` away."""
    return LambdaContext(
        function_name=settings.function_name,
        function_version=settings.version,
        invoked_function_arn=settings.arn,
        memory_limit_in_mb=str(settings.memory_mb),
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{settings.function_name}",
        log_stream_name=log_stream_name,
        deadline_ms=int((time.time() + settings.timeout_s) * 1000),
    )


def new_log_stream_name() -> str:
    """Named like Lambda's: one stream per execution environment."""
    return time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex
