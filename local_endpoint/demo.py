"""`python -m local_endpoint.demo` (`make demo`): train, publish, serve, print the page URL and curl lines.

Idempotent: the demo model is trained and published into the local store only when
the store has no version of it yet; later runs serve what is there. Example images
of each class are (re)generated every time, so the printed curl lines work as is.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from lambda_src.artifact import LATEST
from lambda_src.contract import HEALTH_PATH, JPEG_MEDIA_TYPE, JSON_MEDIA_TYPE, PREDICT_PATH
from lambda_src.model_store import ModelLocation, open_store, published_version
from local_endpoint.cli import add_serving_options, location_from_args, run
from local_endpoint.server import LocalEndpoint
from local_endpoint.web import DOCS_PATH, PAGE_PATH
from model_training.demo_data import write_examples
from model_training.publishing import publish
from model_training.training import DEMO_MODEL_NAME, TrainingConfig, save_output, train

DEFAULT_STORE = ".model-store"
DEFAULT_EXAMPLES = ".demo/examples"
EXAMPLE_FORMAT = "jpeg"


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m local_endpoint.demo",
        description=(
            "The whole flow on this machine: train the demo model (coloured shapes) and publish it to a "
            "local model store if it has none yet, write example images, serve the model through the "
            "Lambda handler on 127.0.0.1 and print the page to open and the curl lines to try."
        ),
    )
    add_serving_options(cli, store_default=DEFAULT_STORE, model_name_default=DEMO_MODEL_NAME)
    cli.add_argument(
        "--examples",
        default=DEFAULT_EXAMPLES,
        help="folder for the generated example images (default: %(default)s)",
    )
    return cli


def train_and_publish(location: ModelLocation) -> None:
    """Train the demo model (progress bars as it goes) and publish it to the store as a new version."""
    result = train(TrainingConfig(model_name=location.model_name))
    print(f"Validation accuracy: {result.val_accuracy:.1%}")
    with tempfile.TemporaryDirectory(prefix="demo-training-") as output:
        published = publish(
            save_output(result, output),
            location.store_uri,
            model_name=location.model_name,
            version=None if location.version == LATEST else location.version,
            onnx=True,  # so `--engine onnxruntime` serves it too
        )
    print(f"Published {published.model_name} version {published.version} to {published.location}")
    if published.onnx_skipped is not None:
        print(f"Published without model.onnx: {published.onnx_skipped}")


def write_example_images(folder: Path) -> list[Path]:
    return write_examples(folder, per_class=1, image_format=EXAMPLE_FORMAT)


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is inside it (shorter curl lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def curl_lines(url: str, image: Path) -> list[str]:
    """The commands to try, exactly as printed (CI runs the lines that start with `curl`)."""
    path = shlex.quote(shown_path(image))
    return [
        f"curl -s {url}{HEALTH_PATH}",
        f"curl -s -H 'Content-Type: {JPEG_MEDIA_TYPE}' --data-binary @{path} {url}{PREDICT_PATH}",
        f"curl -s -H 'Content-Type: {JSON_MEDIA_TYPE}' "
        f'-d "{{\\"image\\": \\"$(base64 < {path} | tr -d \'\\n\')\\"}}" \'{url}{PREDICT_PATH}?top_k=2\'',
    ]


def instructions(url: str, examples: list[Path]) -> str:
    first = examples[0]
    others = ", ".join(shown_path(path) for path in examples[1:])
    lines = [
        "",
        f"Open {url}{PAGE_PATH} in a browser and drop an image on it (API docs: {url}{DOCS_PATH}).",
        "",
        f"Or try it with curl (in another terminal; {shown_path(first)} is a {first.stem.split('-')[0]}):",
        "",
        *(f"  {line}" for line in curl_lines(url, first)),
        "",
        f"Other examples: {others}",
        "Or with the project's client: "
        f".venv/bin/python -m endpoint_client predict {url} {shown_path(first)}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        location = location_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    examples: list[Path] = []

    def prepare() -> None:
        version = published_version(open_store(location.store_uri), location.model_name, location.version)
        if version is None:
            print(f"No version of {location.model_name} in {args.store} yet: training the demo model.")
            train_and_publish(location)
        else:
            print(
                f"Found {location.model_name} version {version} in {args.store}; not retraining "
                f"(delete {args.store} to start over)."
            )
        examples.extend(write_example_images(Path(args.examples)))
        print(f"Wrote {len(examples)} example images to {shown_path(Path(args.examples))}.")

    def ready(server: LocalEndpoint) -> str:
        return instructions(server.url, examples)

    return run(location, args.host, args.port, prepare=prepare, ready=ready, engine=args.engine)


if __name__ == "__main__":
    sys.exit(main())
