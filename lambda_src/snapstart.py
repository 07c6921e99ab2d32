"""SnapStart's runtime hooks: the environment as Lambda snapshots it, and as each restore finds it.

With SnapStart (the stack's `snap_start` setting), Lambda runs init once, when it publishes a
function version, snapshots the environment, and starts later environments from that snapshot.
The runtime client (awslambdaric, when AWS_LAMBDA_INITIALIZATION_TYPE is `snap-start`) runs the
hooks registered here through `snapshot_restore_py`, which the Lambda base image ships with it:

- before the snapshot: the model is loaded, verified and warmed up, or the version is not
  published (Lambda reports `Runtime.BeforeSnapshotError` and the deploy fails, leaving the live
  version serving); the S3 prefetch has finished, its buffers and connections are dropped, and
  garbage is collected, so the snapshot holds the model and nothing half-open;
- after each restore: boto3's default session is dropped, so any later S3 client resolves
  credentials anew and opens new connections; torch uses as many threads as this environment
  has CPUs; Python's, NumPy's and torch's random generators are re-seeded (a snapshot would
  otherwise hand every environment the same state); the service reports its first request as
  a restore; and one metrics line counts the restore and times these hooks.

Outside Lambda (the local endpoint, the tests) nothing runs them, and without
`snapshot_restore_py` (no runtime client that could) nothing is registered.
"""

from __future__ import annotations

import gc
import random
import resource
import sys
import threading
import time

from aws_lambda_powertools.metrics import MetricUnit

from lambda_src.contract import Metric, ModelEngine
from lambda_src.cpus import available_cpus
from lambda_src.errors import ModelUnavailable
from lambda_src.prefetch import PrefetchingStore
from lambda_src.service import InferenceService

# The threads the runtime code starts: the prefetch (prefetch.py) and a ranged read's parts
# (model_store.py). None may run into a snapshot: each would resume mid-transfer on a dead connection.
RUNTIME_THREAD_PREFIXES = ("model-prefetch", "s3-part")


class SnapshotRefused(RuntimeError):
    """The environment must not be snapshotted: a restore from it would have no model to serve."""


class SnapshotLifecycle:
    """The hooks for one service (and the prefetch that fed its load, if any)."""

    def __init__(self, service: InferenceService, prefetching: PrefetchingStore | None = None) -> None:
        self.service = service
        self.prefetching = prefetching

    def register(self) -> bool:
        """Register both hooks with the runtime client's registry; False if there is none here."""
        try:
            from snapshot_restore_py import register_after_restore, register_before_snapshot
        except ImportError:  # no runtime client that could run hooks: nothing to register
            return False
        register_before_snapshot(self.before_snapshot)
        register_after_restore(self.after_restore)
        return True

    def before_snapshot(self) -> None:
        """Leave the environment ready to serve from memory alone; SnapshotRefused if it cannot."""
        if self.prefetching is not None:
            self.prefetching.finish()
        try:
            classifier = self.service.holder.get(wait=False)
        except ModelUnavailable as error:
            raise SnapshotRefused(
                f"no snapshot without a model to serve ({error.reason}): {error.detail}"
            ) from None
        alive = sorted(
            thread.name for thread in threading.enumerate() if thread is not threading.main_thread()
        )
        ours = [name for name in alive if name.startswith(RUNTIME_THREAD_PREFIXES)]
        if ours:
            raise SnapshotRefused(f"the runtime's threads still run at the snapshot: {', '.join(ours)}")
        gc.collect()
        manifest = classifier.model.manifest
        self.service.telemetry.logger.info(
            "snapshot ready",
            extra={
                "model_name": manifest.model_name,
                "model_version": manifest.version,
                "peak_rss_mb": peak_rss_mb(),
                "torch_threads": classifier.threads,  # the engine's intra-op threads
                "other_threads": alive,  # none in the image: a library's would show here
            },
        )

    def after_restore(self) -> None:
        """Make anew what a snapshot must not share, and report the restore."""
        started = time.perf_counter()
        forget_aws_session()
        reseed_random()
        threads = self._restore_threads()
        self.service.mark_restored()
        duration_ms = (time.perf_counter() - started) * 1000
        model = self.service.model
        self.service.telemetry.logger.info(
            "restored",
            extra={
                "model_name": model.manifest.model_name if model else None,
                "model_version": model.manifest.version if model else None,
                "cpus": available_cpus(),
                "torch_threads": threads,
                "restore_hooks_ms": round(duration_ms, 1),
            },
        )
        self.service.telemetry.put_metrics(
            {
                Metric.RESTORES: (MetricUnit.Count, 1),
                Metric.RESTORE_DURATION: (MetricUnit.Milliseconds, duration_ms),
            }
        )

    def _restore_threads(self) -> int | None:
        """The engine's intra-op threads for this environment's CPUs (None: no model loaded)."""
        settings = self.service.settings
        if settings.engine is ModelEngine.TORCH:
            from lambda_src.loader import configure_threads  # imported at init already: no cost here

            return configure_threads(settings.torch_threads)
        # ONNX Runtime sizes its thread pool when the session opens, and never imports torch. A
        # restore runs on the memory, so the vCPUs, of the version that was snapshotted: the
        # session's pool already fits.
        model = self.service.model
        return getattr(model, "threads", None)


def forget_aws_session() -> None:
    """Drop boto3's default session: the next client resolves credentials and connects anew.

    Under SnapStart the SDK's credentials come from the container credentials endpoint, and a
    snapshot may be restored long after the credentials it holds were issued.
    """
    if "boto3" in sys.modules:  # imported already (an S3 store): nothing to pay here
        import boto3

        boto3.DEFAULT_SESSION = None


def reseed_random() -> None:
    """Re-seed every random generator a snapshot would otherwise hand to each restore alike."""
    random.seed()  # from os.urandom
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MiB): what the snapshot holds, about."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
