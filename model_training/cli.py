"""`python -m model_training`: train, publish and list versions.

`predict` and `smoke-test` stay here as aliases of `python -m endpoint_client`'s
commands, which own them.

Progress bars and notes go to stderr, results and summaries to stdout. Every
failure a person can fix ends with one readable line on stderr and exit code 1
(2 for a wrong command line), never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from endpoint_client.cli import add_commands as add_endpoint_commands
from endpoint_client.cli import positive_int
from endpoint_client.stack_outputs import DEFAULT_STACK, STACK_SCHEME, StackError, resolve_store
from lambda_src.architectures import DEFAULT_ARCHITECTURE
from lambda_src.artifact import LATEST_POINTER
from lambda_src.errors import ModelArtifactError
from model_training.datasets import TrainingDataError
from model_training.publishing import PublishedVersion, PublishError, describe_listing, list_versions, publish
from model_training.training import (
    DEMO_EPOCHS,
    DEMO_IMAGE_SIZE,
    DEMO_IMAGES_PER_CLASS,
    DEMO_LEARNING_RATE,
    DEMO_MODEL_NAME,
    FOLDER_EPOCHS,
    FOLDER_IMAGE_SIZE,
    FOLDER_LEARNING_RATE,
    TrainingConfig,
    TrainingResult,
    save_output,
    train,
)

PROG = "python -m model_training"
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

# The errors a user can act on; anything else is a bug and keeps its traceback.
USER_ERRORS = (
    TrainingDataError,
    ModelArtifactError,
    PublishError,
    StackError,
    ValueError,
    OSError,
)

STORE_HELP = (
    f"model store: s3://bucket/prefix, a local folder, or {STACK_SCHEME}NAME for the store of the deployed "
    f"stack NAME (its ModelStoreUri output)"
)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "train",
        help="train a classifier on an image folder or the demo set",
        description=(
            "Train a torchvision classifier on an image folder (ImageFolder layout: DATA/<class>/<image>) "
            "or on the built-in demo set of coloured shapes (--demo), report the validation accuracy, "
            "write model.pt + manifest.json to --output and/or publish them with --publish-to."
        ),
    )
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("data", nargs="?", type=Path, help="folder with one sub-folder of images per class")
    source.add_argument(
        "--demo",
        action="store_true",
        help="train on generated coloured shapes (circle, cross, square, triangle): no data needed",
    )
    command.add_argument(
        "--architecture",
        default=DEFAULT_ARCHITECTURE,
        help="any torchvision classification model, e.g. resnet18, mobilenet_v3_small, efficientnet_b0 "
        "(default: %(default)s)",
    )
    command.add_argument(
        "--model-name",
        help=f"name under which the model is published (default: {DEMO_MODEL_NAME} with --demo, "
        "else the data folder's name)",
    )
    command.add_argument(
        "--epochs",
        type=positive_int,
        help=f"passes over the data (default: {DEMO_EPOCHS} with --demo, else {FOLDER_EPOCHS})",
    )
    command.add_argument("--batch-size", type=positive_int, default=32, help="images per step (default: 32)")
    command.add_argument(
        "--lr",
        type=float,
        help=f"peak learning rate of AdamW's one-cycle schedule "
        f"(default: {DEMO_LEARNING_RATE} with --demo, else {FOLDER_LEARNING_RATE})",
    )
    command.add_argument("--seed", type=int, default=0, help="seed for data, split and weights (default: 0)")
    command.add_argument(
        "--image-size",
        type=positive_int,
        help="square input size in pixels, the manifest's centre crop; images are first resized to 8/7 "
        f"of it (default: {DEMO_IMAGE_SIZE} with --demo, else {FOLDER_IMAGE_SIZE})",
    )
    command.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of each class held out for validation (default: 0.2)",
    )
    command.add_argument(
        "--init-weights",
        type=Path,
        help="fine-tune from a local state dict file (torch.save(model.state_dict())) of the same "
        "architecture; a classifier layer with another class count is left fresh",
    )
    command.add_argument(
        "--demo-images",
        type=positive_int,
        default=DEMO_IMAGES_PER_CLASS,
        help="demo images generated per class (default: %(default)s)",
    )
    command.add_argument("--output", type=Path, help="folder to write model.pt and manifest.json to")
    command.add_argument("--publish-to", metavar="STORE", help=f"also publish the result: {STORE_HELP}")
    command.add_argument("--version", help="version to publish as (default: the next free v1, v2, ...)")
    command.add_argument("--region", help="AWS region of the stack, for --publish-to stack:NAME")
    command.add_argument("--no-progress", action="store_true", help="no progress bars")
    command.set_defaults(run=run_train)


def _add_publish(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "publish",
        help="publish a trained model as a new, immutable version",
        description=(
            "Upload model.pt and manifest.json from a training output folder to "
            "<store>/<model-name>/<version>/, check what was stored (size and SHA-256), then point "
            f"<store>/<model-name>/{LATEST_POINTER} at the new version. An existing version is never "
            "overwritten."
        ),
    )
    command.add_argument("output", type=Path, help="folder written by `train --output`")
    _add_store_options(command)
    command.add_argument("--model-name", help="publish under this name (default: the manifest's)")
    command.add_argument("--version", help="version name (default: the next free v1, v2, ...)")
    command.add_argument("--no-progress", action="store_true", help="no progress bars")
    command.set_defaults(run=run_publish)


def _add_versions(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "versions",
        help="list the published versions of a model and which one LATEST points to",
        description=f"List the complete versions of a model in a store; mark the one {LATEST_POINTER} names.",
    )
    _add_store_options(command)
    command.add_argument(
        "--model-name", default=DEMO_MODEL_NAME, help="the model to list (default: %(default)s)"
    )
    command.set_defaults(run=run_versions)


def _add_store_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--store",
        help=f"{STORE_HELP} (default: {STACK_SCHEME}{DEFAULT_STACK}, the deployed stack)",
    )
    command.add_argument("--region", help="AWS region of the stack (default: your AWS configuration)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Train a torchvision image classifier, publish it to a model store as an immutable version, "
            "and query the endpoint that serves it."
        ),
        epilog=f"Run `{PROG} <command> --help` for a command's options.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    _add_train(subparsers)
    _add_publish(subparsers)
    _add_versions(subparsers)
    add_endpoint_commands(subparsers)  # aliases of `python -m endpoint_client predict/smoke-test`
    return parser


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _model_name_for(args: argparse.Namespace) -> str:
    if args.model_name:
        return args.model_name
    if args.demo:
        return DEMO_MODEL_NAME
    return str(args.data.resolve().name)


def run_train(args: argparse.Namespace) -> int:
    if args.output is None and args.publish_to is None:
        raise ValueError("nothing would be kept: give --output DIR, --publish-to STORE, or both")
    config = TrainingConfig(
        data_dir=None if args.demo else args.data,
        model_name=_model_name_for(args),
        architecture=args.architecture,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        image_size=args.image_size,
        val_fraction=args.val_fraction,
        init_weights=args.init_weights,
        demo_images_per_class=args.demo_images,
    )
    config.check()  # fail on a bad option before looking up a stack or training
    store = resolve_store(args.publish_to, region=args.region) if args.publish_to else None
    result = train(config, progress=not args.no_progress, note=info)
    published = None
    if args.output is not None:
        save_output(result, args.output)
        published = _publish_if_asked(args.output, store, args)
    else:
        with tempfile.TemporaryDirectory(prefix="model-training-") as folder:
            save_output(result, folder)
            published = _publish_if_asked(Path(folder), store, args)
    print(training_summary(result, args.output, published))
    return 0


def _publish_if_asked(folder: Path, store: str | None, args: argparse.Namespace) -> PublishedVersion | None:
    if store is None:
        return None
    return publish(folder, store, version=args.version, progress=not args.no_progress)


def run_publish(args: argparse.Namespace) -> int:
    store = resolve_store(args.store, region=args.region)
    published = publish(
        args.output, store, model_name=args.model_name, version=args.version, progress=not args.no_progress
    )
    print(publish_summary(published))
    return 0


def run_versions(args: argparse.Namespace) -> int:
    store = resolve_store(args.store, region=args.region)
    print(describe_listing(list_versions(store, args.model_name), store))
    return 0


def training_summary(result: TrainingResult, output: Path | None, published: PublishedVersion | None) -> str:
    manifest = result.manifest
    lines = [
        "",
        f"validation accuracy: {result.val_accuracy:.1%} on {int(manifest.metrics['val_images'])} images "
        f"({manifest.architecture}, {manifest.num_classes} classes: {', '.join(manifest.labels)})",
    ]
    if output is not None:
        lines.append(f"written to: {output}/ (model.pt, manifest.json)")
    if published is not None:
        lines.append(publish_summary(published))
    else:
        lines.append(
            f"publish it: {PROG} publish {shlex.quote(str(output))} --store <s3://bucket/prefix|folder>"
        )
    return "\n".join(lines)


def publish_summary(published: PublishedVersion) -> str:
    name, version = published.model_name, published.version
    lines = [f"published: {name} {version} at {published.location} ({LATEST_POINTER} -> {version})"]
    if published.store_uri.startswith("s3://"):
        lines += [
            f"serve it:  a deployed function serving '{name}' at model_version 'latest' loads it in new "
            "execution environments;",
            f"           to pin it: npx cdk deploy --all -c model_name={name} -c model_version={version}",
            f"           locally:   python -m local_endpoint --store {published.store_uri} "
            f"--model-name {name}",
        ]
    else:
        store = shlex.quote(published.store_uri)
        lines += [
            f"serve it:  make serve DEMO_STORE={store} DEMO_MODEL={name}",
            f"           (or python -m local_endpoint --store {store} --model-name {name})",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except USER_ERRORS as error:
        print(f"error: {_describe(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error)
