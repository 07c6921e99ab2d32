"""The container image as the builder would make it, read from lambda_src/Dockerfile and .dockerignore.

There is no Docker engine here: this module reads the Dockerfile's instructions in order and by
build stage, resolves COPY sources against the build context (lambda_src/) after .dockerignore
filtering, and lists the packages its `pip install`s put into the image of each serving engine
(the ENGINE build argument picks the stage `<engine>-packages`).
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name

from lambda_src.contract import ModelEngine

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTEXT = REPO_ROOT / "lambda_src"
TASK_ROOT = "${LAMBDA_TASK_ROOT}"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = (CONTEXT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", "", text)
    result = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def build_stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage (from its FROM on), in order."""
    stages: list[list[tuple[str, str]]] = []
    for kind, arguments in instructions():
        if kind == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((kind, arguments))
    return stages


def named_stages() -> dict[str, list[tuple[str, str]]]:
    """The stages that have a name (`FROM ... AS name`), by name."""
    stages = {}
    for stage in build_stages():
        _, _, name = stage[0][1].partition(" AS ")
        if name:
            stages[name.strip()] = stage
    return stages


def packages_stage(engine: ModelEngine) -> str:
    """The stage whose packages the image of `engine` holds."""
    return f"{engine.value}-packages"


def pip_installs(stage: str | None = None) -> list[str]:
    """The `pip install` commands of one stage, or of the whole Dockerfile."""
    steps = named_stages()[stage] if stage is not None else instructions()
    return [arg for kind, arg in steps if kind == "RUN" and "pip install" in arg]


def requirement_pins(path: Path) -> dict[str, str]:
    """{normalised name: pinned version} of a requirements file, following its -r includes."""
    pins: dict[str, str] = {}
    for text in path.read_text().splitlines():
        line = text.split("#")[0].strip()
        if line.startswith("-r "):
            pins |= requirement_pins(path.parent / line.removeprefix("-r ").strip())
        elif line:
            name, separator, version = line.partition("==")
            assert separator, f"{path.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def installed_pins(command: str) -> list[tuple[str, str]]:
    """(normalised name, version) of every package one `pip install` names, its -r files followed."""
    pins: list[tuple[str, str]] = []
    arguments = command.split()
    for index, argument in enumerate(arguments):
        if argument == "-r":
            pins += requirement_pins(CONTEXT / Path(arguments[index + 1]).name).items()
        elif "==" in argument:
            name, _, version = argument.partition("==")
            pins.append((canonicalize_name(name), version))
    return pins


def image_pins(engine: ModelEngine = ModelEngine.TORCH) -> dict[str, str]:
    """Every package the image of `engine` holds, with its pinned version."""
    return {
        name: version
        for command in pip_installs(packages_stage(engine))
        for name, version in installed_pins(command)
    }


def dockerignore_patterns() -> list[str]:
    lines = (CONTEXT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    # A pattern that matches a directory excludes everything below it.
    return re.compile("".join(parts) + "(/.*)?")


def is_ignored(relative_path: str) -> bool:
    """Whether Docker leaves this context path out (last matching pattern wins, `!` re-includes)."""
    ignored = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        if _pattern_regex(pattern.removeprefix("!").strip("/")).fullmatch(relative_path):
            ignored = not negated
    return ignored


def copied_files() -> dict[str, Path]:
    """The image's own files in its task root, from the final stage's COPYs of the build context.

    Path under the task root -> source file. Packages copied from the build stage (--from) are
    what image_pins() lists.
    """
    files: dict[str, Path] = {}
    for kind, arguments in build_stages()[-1]:
        if kind != "COPY" or arguments.startswith("--from="):
            continue
        *sources, destination = arguments.split()
        target = destination.removeprefix(f"{TASK_ROOT}/")
        if target == destination:
            raise ValueError(f"COPY to {destination}: only the task root is modelled")
        for source in sources:
            for path in sorted(CONTEXT.glob(source)):
                if path.is_file() and not is_ignored(path.relative_to(CONTEXT).as_posix()):
                    relative = f"{target.rstrip('/')}/{path.name}" if target.endswith("/") else target
                    files[relative] = path
    return files
