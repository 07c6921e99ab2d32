"""`python -m local_endpoint batch`: classify a folder or s3:// prefix on this machine (`make batch`).

    python -m local_endpoint batch --store .model-store --model-name demo-shapes
        --input DIR|s3://BUCKET/PREFIX --output FILE.jsonl [--model-version latest] [--workers N]

The batch function's worker over the images (batch_runner.py), one JSON Lines file of
results; re-running with the same output resumes. Jobs on the deployed stack are
`python -m endpoint_client batch`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError

from lambda_src.artifact import LATEST
from lambda_src.contract import ModelEngine
from lambda_src.errors import ModelArtifactError
from local_endpoint.batch_runner import DEFAULT_WORKERS, make_worker, open_input, run_local_batch

PROG = "python -m local_endpoint batch"
EXIT_DONE = 0
EXIT_NOT_STARTED = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", required=True, help="a model store: a folder or s3://bucket/prefix")
    parser.add_argument("--model-name", required=True, help="the model to run")
    parser.add_argument("--input", required=True, help="a folder of images, or s3://bucket/prefix")
    parser.add_argument(
        "--output", required=True, help="the .jsonl file to write (re-running with it resumes)"
    )
    parser.add_argument("--model-version", default=LATEST, help=f"a published version (default: {LATEST})")
    parser.add_argument(
        "--engine",
        type=ModelEngine,
        choices=list(ModelEngine),
        default=ModelEngine.TORCH,
        help="what runs the model, as the batch function's MODEL_ENGINE (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="batches classified at once (default: %(default)s)",
    )
    return parser


def run(args: argparse.Namespace, *, out: IO[str] = sys.stdout) -> int:
    """Classify what the output file does not answer yet; print what was done."""
    images = open_input(args.input)
    print(f"{len(images.keys):,} images in {images.description}", file=out, flush=True)
    summary = run_local_batch(
        make_worker(args.store, args.model_name, engine=args.engine),
        images,
        Path(args.output),
        version=args.model_version,
        workers=args.workers,
    )
    print(
        f"{summary.processed:,} classified ({summary.failed:,} with an error line), {summary.skipped:,} "
        f"already in {summary.output}; model version {summary.model_version}",
        file=out,
    )
    return EXIT_DONE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; 0 when every image has its line, 2 when the run could not start."""
    args = build_parser().parse_args(argv)
    if args.output.startswith("s3://"):
        print("error: --output is a local .jsonl file (re-running with it resumes)", file=sys.stderr)
        return EXIT_NOT_STARTED
    try:
        return run(args)
    except (ModelArtifactError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_STARTED
    except (BotoCoreError, ClientError) as error:  # an s3:// input without region, credentials or access
        print(f"error: AWS refused or could not be reached: {error}", file=sys.stderr)
        return EXIT_NOT_STARTED
    except KeyboardInterrupt:  # the lines written so far stay; re-running resumes
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
