"""`python -m endpoint_client`: see endpoint_client.cli."""

from endpoint_client.cli import main

raise SystemExit(main())
