"""Telemetry captured in memory, so tests can read every log and EMF line."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from lambda_src.telemetry import Telemetry


class CapturedTelemetry(Telemetry):
    """Telemetry writing to memory, so tests can read every log and EMF line."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        super().__init__(service=f"test-{uuid.uuid4().hex[:8]}", stream=self.buffer)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().split("\n") if line.strip()]

    def logs(self, message: str | None = None) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines()
            if "_aws" not in line and (message is None or line.get("message") == message)
        ]

    def metrics(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if "_aws" in line]
