"""Read a model's objects from S3 while torch is being imported.

A cold start from S3 spends its first second importing torch on the CPU and then waits on
the network for the LATEST pointer, the manifest and the weights. `PrefetchingStore` starts
that reading (boto3's import included) in a thread first, so the wait overlaps the imports.
The loader then reads through it like any store: each object it asks for comes from what
the thread fetched, once, or fails as it failed there (a store that does not answer is not
waited on twice); anything else (a retry, an object the thread never reached) is read the
ordinary way. The thread's reads all end within MODEL_READ_BOUND_S of its start, and nobody
waits for it longer than that.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from lambda_src.artifact import Manifest, manifest_key, version_file_key, weights_key
from lambda_src.contract import ModelEngine
from lambda_src.deadlines import Deadline
from lambda_src.errors import ModelArtifactError
from lambda_src.model_store import (
    MODEL_READ_BOUND_S,
    BoundedStore,
    ModelLocation,
    S3ModelStore,
    open_store,
    resolve_version,
)
from lambda_src.settings import model_engine


def prefetch_from_env(environ: Mapping[str, str] | None = None) -> PrefetchingStore | None:
    """Start fetching the model the environment names, if it is in S3; else None.

    A misconfigured environment also gives None: the service reports it as usual.
    """
    env = dict(environ) if environ is not None else None
    try:
        location = ModelLocation.from_env(env)
        engine = model_engine(env if env is not None else dict(os.environ))
    except ValueError:
        return None
    return PrefetchingStore.for_s3(location, engine=engine)


class PrefetchingStore:
    """A model store that fetches `location`'s objects in the background from its creation."""

    def __init__(
        self, store: S3ModelStore, location: ModelLocation, *, engine: ModelEngine = ModelEngine.TORCH
    ) -> None:
        self.store = store
        self.engine = engine  # which model files the engine reads: model.pt, or model.onnx (+ .data)
        self.prefix = store.prefix
        self.store_uri = store.store_uri
        self.location = location
        self.deadline = Deadline(MODEL_READ_BOUND_S)
        self._bounded = BoundedStore(store, self.deadline)
        self._fetched: dict[str, bytes] = {}
        self._failed: dict[str, ModelArtifactError] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._fetch, name="model-prefetch", daemon=True)
        self._thread.start()

    @classmethod
    def for_s3(
        cls, location: ModelLocation, *, engine: ModelEngine = ModelEngine.TORCH
    ) -> PrefetchingStore | None:
        """A prefetching store when `location` is in S3; None for local stores and bad URIs."""
        try:
            store = open_store(location.store_uri)
        except ValueError:  # the loader reports it
            return None
        return cls(store, location, engine=engine) if isinstance(store, S3ModelStore) else None

    def read(self, key: str, *, size: int | None = None) -> bytes:
        """The object at `key`: what the prefetch got (bytes or its error) the first time, else read now."""
        self._thread.join(self.deadline.remaining())
        if self._thread.is_alive():  # its reads end at the deadline: this is that moment
            bound = self.deadline.seconds
            raise ModelArtifactError(
                f"cannot read {self.describe(key)}: the store did not answer within {bound:g} s"
            )
        with self._lock:
            data = self._fetched.pop(key, None)
            failure = self._failed.pop(key, None)
        if failure is not None:
            raise failure
        return data if data is not None else self.store.read(key, size=size)

    def finish(self) -> None:
        """Wait for the prefetch, drop what the loader never asked for, close the store's connections.

        Before a SnapStart snapshot: no thread, buffer or open connection is carried into it.
        """
        self._thread.join()
        with self._lock:
            self._fetched.clear()
            self._failed.clear()
        self.store.close()

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def describe(self, key: str) -> str:
        return self.store.describe(key)

    def _fetch(self) -> None:
        """LATEST (if followed), the manifest, the engine's model files; stop quietly at the first failure."""
        name = self.location.model_name
        try:
            version = resolve_version(_Keeping(self), name, self.location.version)
            manifest = Manifest.from_json(self._keep(manifest_key(self.prefix, name, version)))
            # The manifest's size: a file of another size is refused before it is read.
            if self.engine is ModelEngine.ONNXRUNTIME:
                # Without an export the engine answers no_onnx_export, reading nothing.
                files = manifest.onnx.files if manifest.onnx is not None else {}
                for file_name, (_, size) in files.items():
                    self._keep(version_file_key(self.prefix, name, version, file_name), size=size)
            else:
                self._keep(weights_key(self.prefix, name, version), size=manifest.weights_size_bytes)
        except Exception:  # the loader reads it again and reports the error as usual
            return

    def _keep(self, key: str, *, size: int | None = None) -> bytes:
        try:
            data = self._bounded.read(key, size=size)
        except ModelArtifactError as error:
            with self._lock:
                self._failed[key] = error
            raise
        with self._lock:
            self._fetched[key] = data
        return data


class _Keeping:
    """The store as the prefetch thread reads it: every object read is kept for the loader."""

    def __init__(self, prefetching: PrefetchingStore) -> None:
        self.prefix = prefetching.prefix
        self.store_uri = prefetching.store_uri
        self._prefetching = prefetching

    def read(self, key: str, *, size: int | None = None) -> bytes:
        return self._prefetching._keep(key, size=size)

    def exists(self, key: str) -> bool:
        return self._prefetching.exists(key)

    def describe(self, key: str) -> str:
        return self._prefetching.describe(key)
