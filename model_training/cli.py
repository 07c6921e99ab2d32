"""`python -m model_training`: train or import, publish and list versions.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from endpoint_client.cli import add_commands as add_endpoint_commands
from endpoint_client.cli import positive_int
from endpoint_client.stack_outputs import DEFAULT_STACK, STACK_SCHEME, StackError, resolve_store
from lambda_src.architectures import DEFAULT_ARCHITECTURE
from lambda_src.artifact import INTERPOLATIONS, LATEST, LATEST_POINTER
from lambda_src.errors import ModelArtifactError
from model_training.checkpoints import CheckpointError
from model_training.datasets import TrainingDataError
from model_training.importing import (
    ImportedModel,
    ImportFailed,
    PreprocessingOptions,
    import_hub_folder,
    import_pretrained,
    import_weights_file,
)
from model_training.labels import LabelsError
from model_training.network_fit import HeadError
from model_training.onnx_export import OnnxExportFailed
from model_training.publishing import (
    PublishedVersion,
    PublishError,
    add_onnx_export,
    describe_listing,
    list_versions,
    publish,
)
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
    write_artifact,
)

PROG = "python -m model_training"
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

# The errors a user can act on; anything else is a bug and keeps its traceback.
USER_ERRORS = (
    TrainingDataError,
    ImportFailed,
    OnnxExportFailed,
    CheckpointError,
    LabelsError,
    HeadError,
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
    _add_output_options(command)
    command.set_defaults(run=run_train)


def _add_output_options(command: argparse.ArgumentParser) -> None:
    """Where `train` and `import` keep their result: a folder, a store, or both."""
    command.add_argument("--output", type=Path, help="folder to write model.pt and manifest.json to")
    command.add_argument("--publish-to", metavar="STORE", help=f"also publish the result: {STORE_HELP}")
    command.add_argument("--version", help="version to publish as (default: the next free v1, v2, ...)")
    command.add_argument("--region", help="AWS region of the stack, for --publish-to stack:NAME")
    _add_no_onnx(command)
    command.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_no_onnx(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--no-onnx",
        action="store_true",
        help="publish without model.onnx (by default the model is exported to ONNX and checked against "
        "torch first, for MODEL_ENGINE=onnxruntime; a model that does not export is published without it)",
    )


def _add_import(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "import",
        help="turn pretrained torchvision/timm weights or your own state dict into a model to serve",
        description=(
            "Make model.pt + manifest.json from an existing model, with its labels, its exact preprocessing "
            "and where the weights came from: torchvision's or timm's pretrained weights (downloaded into "
            "the library's usual cache, hash-checked), or your own weights file. Write them to --output "
            "and/or publish them with --publish-to. Nothing is written when the import fails."
        ),
    )
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--pretrained",
        metavar="SOURCE:NAME",
        help="torchvision:ARCH.WEIGHTS (e.g. torchvision:resnet50.IMAGENET1K_V2 or .DEFAULT), timm:NAME "
        "(e.g. timm:convnext_tiny.fb_in22k_ft_in1k) or hf-hub:ORG/NAME (a timm model's Hugging Face hub "
        "repository, from the hub cache or downloaded)",
    )
    source.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="your own weights: a state dict, a training checkpoint (torchvision's reference scripts, "
        "timm's train.py, Lightning, or a dict holding it under state_dict, model, model_state_dict or net; "
        "wrapper prefixes such as module. are found and dropped), or a .safetensors file; needs "
        "--architecture and --labels",
    )
    command.add_argument("--architecture", help="with --weights: a torchvision classifier or timm:NAME")
    command.add_argument(
        "--labels",
        type=Path,
        help="with --weights: one label per line, a JSON list, a JSON object keyed by index "
        '(also {"0": ["id", "name"]}), or CSV index,label rows; in output order',
    )
    command.add_argument(
        "--ema", action="store_true", help="with --weights: take the checkpoint's EMA weights"
    )
    command.add_argument(
        "--head",
        metavar="LAYERS",
        help="with --weights: the classifier head, when it is a Sequential with activations, as its layers "
        "joined by '-' (e.g. linear-relu-dropout-linear); Dropout+Linear heads are read from the weights",
    )
    command.add_argument(
        "--strip-prefix",
        metavar="PREFIX",
        help="with --weights: take the tensors whose names start with PREFIX, without it "
        "(default: found by matching the architecture's names)",
    )
    own = command.add_argument_group(
        "preprocessing of your own weights (defaults: torchvision's ImageNet eval preset; for timm:NAME and "
        "hub folders, the architecture's own data config)"
    )
    own.add_argument("--image-size", type=positive_int, help="centre crop (default: 224)")
    own.add_argument(
        "--resize",
        type=positive_int,
        help="shorter side before the crop (default: 8/7 of it, or crop/crop_pct)",
    )
    own.add_argument("--interpolation", choices=INTERPOLATIONS, help="resize filter (default: bilinear)")
    own.add_argument(
        "--mean",
        type=float,
        nargs="+",
        metavar="M",
        help="normalisation mean on the 0-1 scale: R G B, or one value for a 1-channel (greyscale) model",
    )
    own.add_argument("--std", type=float, nargs="+", metavar="S", help="normalisation std, as --mean")
    command.add_argument(
        "--model-name", help="name to publish under (default: the weights' name, or the file's stem)"
    )
    _add_output_options(command)
    command.set_defaults(run=run_import)


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
    _add_no_onnx(command)
    command.add_argument("--no-progress", action="store_true", help="no progress bars")
    command.set_defaults(run=run_publish)


def _add_export_onnx(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "export-onnx",
        help="add model.onnx to a published version, as a new version",
        description=(
            "Read a published version (model.pt and manifest.json, hash-checked), export it to ONNX, "
            "check the export against the torch model, and publish weights, model.onnx and manifest as a "
            f"new version (versions are immutable), moving {LATEST_POINTER} to it. Nothing is published "
            "if the model does not export or does not match."
        ),
    )
    _add_store_options(command)
    command.add_argument("--model-name", default=DEMO_MODEL_NAME, help="the model (default: %(default)s)")
    command.add_argument(
        "--from-version",
        default=LATEST,
        help=f"the published version to export (default: {LATEST}, the one {LATEST_POINTER} names)",
    )
    command.add_argument("--version", help="the new version's name (default: the next free v1, v2, ...)")
    command.add_argument("--no-progress", action="store_true", help="no progress bars")
    command.set_defaults(run=run_export_onnx)


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
    command.add_argument(
        "--latest",
        action="store_true",
        help=f"print only the version {LATEST_POINTER} names (exit 1 if none): what `make deploy` pins",
    )
    command.set_defaults(run=run_versions)


def _add_store_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--store",
        help=f"{STORE_HELP} (default: {STACK_SCHEME}{DEFAULT_STACK}, the deployed stack)",
    )
    command.add_argument("--region", help="AWS region of the stack (default: your AWS configuration)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong command line told in one `error:` line like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog.removeprefix(PROG + ' ')}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Train a torchvision image classifier or import an existing one, publish it to a model store "
            "as an immutable version, and query the endpoint that serves it."
        ),
        epilog=f"Run `{PROG} <command> --help` for a command's options.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    _add_train(subparsers)
    _add_import(subparsers)
    _add_publish(subparsers)
    _add_versions(subparsers)
    _add_export_onnx(subparsers)
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


def _check_kept(args: argparse.Namespace) -> None:
    if args.output is None and args.publish_to is None:
        raise ValueError("nothing would be kept: give --output DIR, --publish-to STORE, or both")
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        raise ValueError(f"--output {args.output} is a file, not a folder")


def run_train(args: argparse.Namespace) -> int:
    _check_kept(args)
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
    published = _save_and_publish(lambda folder: save_output(result, folder), store, args)
    print(training_summary(result, args.output, published))
    return 0


def run_import(args: argparse.Namespace) -> int:
    _check_kept(args)
    store = resolve_store(args.publish_to, region=args.region) if args.publish_to else None
    imported = _import(args)
    published = _save_and_publish(
        lambda folder: write_artifact(imported.manifest, imported.weights, folder), store, args
    )
    for note in imported.notes:  # after the writes: a refusal stays one line
        info(note)
    print(import_summary(imported, args.output, published))
    return 0


def _import(args: argparse.Namespace) -> ImportedModel:
    if args.pretrained:
        if args.architecture or args.labels or args.ema or args.strip_prefix is not None or args.head:
            raise ValueError(
                "--architecture, --labels, --ema, --strip-prefix and --head go with --weights; "
                "--pretrained brings its own"
            )
        return import_pretrained(args.pretrained, model_name=args.model_name, progress=not args.no_progress)
    options = PreprocessingOptions(
        crop=args.image_size,
        resize=args.resize,
        interpolation=args.interpolation,
        mean=tuple(args.mean) if args.mean else None,
        std=tuple(args.std) if args.std else None,
    )
    if args.weights.is_dir():
        if args.architecture or args.ema or args.strip_prefix is not None or args.head:
            raise ValueError(
                f"{args.weights} is a hub folder: its config.json names the architecture; "
                "--architecture, --ema, --strip-prefix and --head go with a weights file"
            )
        return import_hub_folder(
            args.weights, labels_path=args.labels, options=options, model_name=args.model_name
        )
    if not (args.architecture and args.labels):
        raise ValueError("--weights needs --architecture NAME and --labels FILE")
    return import_weights_file(
        args.architecture,
        args.weights,
        args.labels,
        options,
        args.model_name,
        ema=args.ema,
        strip_prefix=args.strip_prefix,
        head=args.head,
    )


def _save_and_publish(
    save: Callable[[Path], object], store: str | None, args: argparse.Namespace
) -> PublishedVersion | None:
    """Publish the artifact if asked, then write it to --output: a refused publish writes nothing.

    The artifact is first written to a temporary folder and published from there.
    """
    with tempfile.TemporaryDirectory(prefix="model-training-") as folder:
        save(Path(folder))
        published = _publish_if_asked(Path(folder), store, args)
        if args.output is not None:
            save(args.output)
    return published


def _publish_if_asked(folder: Path, store: str | None, args: argparse.Namespace) -> PublishedVersion | None:
    if store is None:
        return None
    return publish(folder, store, version=args.version, progress=not args.no_progress, onnx=not args.no_onnx)


def run_publish(args: argparse.Namespace) -> int:
    store = resolve_store(args.store, region=args.region)
    published = publish(
        args.output,
        store,
        model_name=args.model_name,
        version=args.version,
        progress=not args.no_progress,
        onnx=not args.no_onnx,
    )
    print(publish_summary(published))
    return 0


def run_export_onnx(args: argparse.Namespace) -> int:
    store = resolve_store(args.store, region=args.region)
    published = add_onnx_export(
        store, args.model_name, args.from_version, version=args.version, progress=not args.no_progress
    )
    print(publish_summary(published))
    return 0


def run_versions(args: argparse.Namespace) -> int:
    store = resolve_store(args.store, region=args.region)
    listing = list_versions(store, args.model_name)
    if not args.latest:
        print(describe_listing(listing, store))
        return 0
    if listing.latest is None or listing.latest not in listing.versions:
        info(f"{args.model_name} has no complete version {LATEST_POINTER} names in {store}")
        return 1
    print(listing.latest)
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


def import_summary(imported: ImportedModel, output: Path | None, published: PublishedVersion | None) -> str:
    manifest = imported.manifest
    pre = manifest.preprocessing
    lines = [
        f"imported: {manifest.model_name} ({manifest.architecture}, {manifest.num_classes} classes; "
        f"resize {pre.resize} {pre.interpolation}, crop {pre.crop})"
    ]
    if output is not None:
        lines.append(f"written to: {output}/ (model.pt, manifest.json)")
    lines.append(publish_summary(published) if published else f"publish it: {PROG} publish {output}")
    return "\n".join(lines)


def publish_summary(published: PublishedVersion) -> str:
    name, version = published.model_name, published.version
    lines = [f"published: {name} {version} at {published.location} ({LATEST_POINTER} -> {version})"]
    onnx = published.manifest.onnx
    if onnx is not None:
        took = f", exported and checked in {published.onnx_seconds:.1f} s" if published.onnx_seconds else ""
        size_mb = sum(size for _, size in onnx.files.values()) / 1e6
        lines.append(
            f"onnx:      {' + '.join(onnx.files)} ({size_mb:.1f} MB, opset {onnx.opset}; largest logit "
            f"difference from torch {onnx.max_logit_difference:.2g} <= {onnx.tolerance:.2g} on "
            f"{onnx.checked_inputs} images{took})"
        )
    elif published.onnx_skipped is not None:
        lines.append(
            f"onnx:      not published: {published.onnx_skipped}; the torch engine serves this version, "
            "MODEL_ENGINE=onnxruntime cannot"
        )
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
