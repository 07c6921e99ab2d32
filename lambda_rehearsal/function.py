"""The function as the image runs it: a read-only task root and `python -m awslambdaric HANDLER`.

The task root holds exactly what the Dockerfile copies (lambda_rehearsal/image_build.py), byte-compiled
as the image's build step does, then made read-only. The runtime client runs with the task
root as its working directory, Lambda's reserved variables and the function's environment
from the synthesized template; as root, it runs as `nobody`, with a private folder standing
for /tmp as the only place it may write.
"""

from __future__ import annotations

import compileall
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from lambda_rehearsal.image_build import copied_files
from lambda_rehearsal.runtime_api import RuntimeApi
from lambda_src.contract import API_HANDLER, ENV_LAMBDA_INITIALIZATION_TYPE, SNAP_START_INITIALIZATION

UNPRIVILEGED_USER = "nobody"  # the image runs as a non-root user; so does the rehearsal, when it can


def build_task_root(root: Path) -> Path:
    """Copy the image's files under `root`, byte-compile them, and make the whole tree read-only."""
    for relative, source in copied_files().items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    if not compileall.compile_dir(root, quiet=1):
        raise RuntimeError(f"the task root {root} does not compile")
    for path in [root, *root.rglob("*")]:
        readable = 0o555 if path.is_dir() else 0o444
        path.chmod(readable)
    return root


def make_writable(root: Path) -> None:
    """Undo `build_task_root`'s read-only bits so the test can delete the tree."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def lambda_environment(
    function_environment: dict[str, str], *, task_root: Path, runtime_api: str, tmp_dir: Path, handler: str
) -> dict[str, str]:
    """Lambda's reserved variables plus the function's own, as the runtime sees them."""
    return {
        # What a container-image function gets from Lambda and the Python base image.
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_LAMBDA_FUNCTION_NAME": "InferenceFunction",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/InferenceFunction",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[1]0123456789abcdef0123456789abcdef",
        ENV_LAMBDA_INITIALIZATION_TYPE: "on-demand",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "TMPDIR": str(tmp_dir),  # Lambda's /tmp: the one writable place
        # Not Lambda's: the test machine's cores are shared, and OpenMP's spinning threads fight over them.
        "OMP_WAIT_POLICY": "PASSIVE",
        **function_environment,
    }


def runs_unprivileged() -> bool:
    return os.geteuid() == 0


def interpreter() -> tuple[str, dict[str, str]]:
    """The Python to run the runtime with, and the variables it needs to find the image's packages."""
    if not runs_unprivileged() or _others_can_run(Path(sys.executable)):
        return sys.executable, {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system_python = Path("/usr/bin") / version
    if not _others_can_run(system_python):
        raise RuntimeError(f"{UNPRIVILEGED_USER} can run neither {sys.executable} nor {system_python}")
    return str(system_python), {"PYTHONPATH": sysconfig.get_paths()["purelib"]}


def _others_can_run(path: Path) -> bool:
    if not path.exists():
        return False
    resolved = path.resolve()
    folders_open = all(folder.stat().st_mode & stat.S_IXOTH for folder in resolved.parents)
    return folders_open and bool(resolved.stat().st_mode & stat.S_IXOTH)


class Function:
    """One execution environment: the runtime client process and the emulator it talks to."""

    def __init__(
        self,
        task_root: Path,
        environment: dict[str, str],
        *,
        work_dir: Path,
        timeout_s: float,
        handler: str = API_HANDLER,
    ) -> None:
        self.api = RuntimeApi(timeout_s=timeout_s)
        self.log_path = work_dir / "function.log"
        tmp_dir = work_dir / "tmp"
        tmp_dir.mkdir()
        python, python_variables = interpreter()
        self.environment = lambda_environment(
            environment, task_root=task_root, runtime_api=self.api.address, tmp_dir=tmp_dir, handler=handler
        )
        if "PYTHONPATH" in self.environment and "PYTHONPATH" in python_variables:  # both are needed
            python_variables["PYTHONPATH"] += os.pathsep + self.environment["PYTHONPATH"]
        self.environment.update(python_variables)
        self.snap_start = self.environment[ENV_LAMBDA_INITIALIZATION_TYPE] == SNAP_START_INITIALIZATION
        if self.snap_start:  # Lambda does not set these for SnapStart functions
            for name in ("AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME"):
                self.environment.pop(name, None)
        self.command = [python, "-s", "-m", "awslambdaric", handler]
        self.task_root = task_root
        self.tmp_dir = tmp_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.init_s: float | None = None
        self.restore_s: float | None = None

    def start(self) -> Function:
        """Start the environment and wait for its init, held to Lambda's 10 s (130 s for a snapshot).

        With SnapStart, init ends at the snapshot: call `restore()` to resume the environment.
        """
        self.api.__enter__()
        user: dict[str, Any] = {}
        if runs_unprivileged():
            shutil.chown(self.tmp_dir, user=UNPRIVILEGED_USER)
            user = {"user": UNPRIVILEGED_USER, "group": "nogroup", "extra_groups": []}
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (its own command: python -m awslambdaric)
                self.command,
                cwd=self.task_root,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                **user,
            )
        try:
            self.init_s = self.api.wait_for_init(started, snap_start=self.snap_start)
        except BaseException:
            self.stop()
            raise
        return self

    def restore(self) -> Function:
        """Resume the snapshotted environment (SnapStart), held to Lambda's 10 s restore."""
        self.restore_s = self.api.restore()
        return self

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's proxy response to `event`; fails the test on an error or a broken limit."""
        invocation = self.api.invoke(event)
        assert invocation.refused is None, f"Lambda refused the answer: {invocation.refused}"
        assert invocation.error is None, f"the handler raised: {invocation.error}\n{self.log()}"
        response: dict[str, Any] = invocation.response
        return response

    def exited(self, within_s: float) -> int | None:
        """The process's exit status once it exits, or None if it is still running after `within_s`."""
        assert self.process is not None
        try:
            return self.process.wait(within_s)
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # Lambda does not ask an environment to stop either
            self.process.wait(10)
        self.api.__exit__(None, None, None)
