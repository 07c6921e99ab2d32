"""What every measuring child process shares: loading the handler, calling it, reporting back.

Kept to the standard library and `bench.events` (standard library and the local
endpoint's gateway) so that importing it costs a child next to nothing before the
measured work starts.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.events import lambda_context
from lambda_src.contract import API_HANDLER

DEFAULT_HANDLER = API_HANDLER  # `module.function`, as Lambda's handler setting spells it
# Modules whose presence in a serving process tells whether it imports more than it needs.
WATCHED_MODULES = ("boto3", "botocore", "aws_lambda_powertools", "torch._dynamo", "matplotlib", "numpy")

Handler = Callable[[dict, Any], dict]


class BenchFailure(RuntimeError):
    """A measured call did not succeed, so its timing would mean nothing."""


def import_handler(spec: str = DEFAULT_HANDLER) -> Handler:
    """Import `module.function` (or `module:function`); this runs its init, as the Lambda runtime does."""
    module_name, function_name = split_handler(spec)
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def split_handler(spec: str) -> tuple[str, str]:
    """`module.function` (Lambda's spelling) or `module:function` as (module, function)."""
    module_name, _, function_name = spec.rpartition(":" if ":" in spec else ".")
    return module_name, function_name


def invoke(handler: Handler, event: dict) -> dict:
    """Call the handler like the Lambda runtime; anything but a 200 stops the benchmark."""
    response = handler(event, lambda_context())
    if response.get("statusCode") != 200:
        raise BenchFailure(
            f"handler answered {response.get('statusCode')}: {str(response.get('body'))[:500]}"
        )
    return response


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Read from VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the
    forking parent across exec, so a child would report the benchmark's own peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line (not Linux?)")


def imported_modules() -> dict[str, bool]:
    return {name: name in sys.modules for name in WATCHED_MODULES}


def files_touched() -> dict[str, float]:
    """What this process has read from the image so far: its modules' files and mapped libraries.

    On Lambda these are what the lazy image loader must fetch on a cold cache: every imported
    module's source or bytecode and every shared library mapped into memory (torch's
    libtorch_cpu.so, onnxruntime's capi library...). Sizes of whole files, in MB (10^6 bytes).
    """
    paths: set[str] = set()
    for module in list(sys.modules.values()):
        for attribute in ("__file__", "__cached__"):
            value = getattr(module, attribute, None)
            if isinstance(value, str):
                paths.add(value)
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/") and ".so" in fields[5]:
            paths.add(fields[5])
    sizes = [Path(path).stat().st_size for path in paths if Path(path).is_file()]
    return {"files": len(sizes), "mb": round(sum(sizes) / 1e6, 1)}


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=2), encoding="utf-8")
