"""Settings for the whole test session, applied before any test module imports torch."""

import os

# Several test folders train or serve models while pytest and helper processes share two
# cores; OpenMP's spinning worker threads then make each step many times slower.
# Child processes (the local endpoint, the CLI) inherit the setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
