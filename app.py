#!/usr/bin/env python3
"""CDK entry point: reads the context into a DeploymentConfig and creates the stacks.

This is the only place that reads CDK context (cdk.json, cdk.context.json, `-c key=value`).
"""

from __future__ import annotations

import sys

from aws_cdk import App

from stacks.config import ConfigError, parse_context
from stacks.deployment import build_deployment


def main() -> None:
    app = App()
    try:
        config = parse_context(app.node.get_all_context())
    except ConfigError as error:
        sys.exit(f"Invalid deployment settings (cdk.json context or -c key=value):\n{error}")
    build_deployment(app, config)
    app.synth()


if __name__ == "__main__":
    main()
