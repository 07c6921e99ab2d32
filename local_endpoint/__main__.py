"""`python -m local_endpoint`: serve a model store through the real Lambda handler on 127.0.0.1.

`python -m local_endpoint batch ...` classifies a folder or prefix on this machine instead
(batch_cli.py, `make batch`).
"""

from __future__ import annotations

import argparse
import sys

from local_endpoint.cli import add_serving_options, location_from_args, run

BATCH_COMMAND = "batch"


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m local_endpoint",
        description=(
            "Serve a published model on 127.0.0.1 through the same Lambda handler the deployed "
            "function runs, behind a local stand-in for API Gateway (POST /predict, GET /health)."
        ),
        epilog=f"`python -m local_endpoint {BATCH_COMMAND} --help`: classify a folder here instead.",
    )
    add_serving_options(cli)
    return cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [BATCH_COMMAND]:
        from local_endpoint import batch_cli  # only here: it imports the worker (torch); serving binds first

        return batch_cli.main(argv[1:])
    args = parser().parse_args(argv)
    try:
        location = location_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run(location, args.host, args.port, engine=args.engine)


if __name__ == "__main__":
    sys.exit(main())
