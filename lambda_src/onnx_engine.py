"""The onnxruntime engine: the serving verbs over a version's ONNX export, without torch.

`load_onnx_model` is its `load` verb (resolve the version, verify `model.onnx` and its
weights, `model.onnx.data`, against the manifest, open an ONNX Runtime session with as many
threads as the function has CPUs, warm it up); `OnnxClassifier` has the `input`, `predict` and `output` verbs.
Decoding is serving's own (`lambda_src.images`); preprocessing is the torch engine's
(`lambda_src.preprocessing.eval_transform`) redone in Pillow and numpy:

- resize the shorter side to `resize` (the longer one truncated, as torchvision sizes it)
  with the manifest's Pillow filter, as the torch engine does: the same pixels;
- centre crop with torchvision's rounding; scale to [0, 1]; normalise with the manifest's
  mean and std, in float32.

Neither this module nor anything it imports imports torch or torchvision
(tests/runtime/test_onnx_engine.py checks it in a fresh interpreter).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import onnxruntime
from PIL import Image

from lambda_src.artifact import (
    ONNX_FILE,
    Manifest,
    OnnxExport,
    Preprocessing,
    manifest_key,
    onnx_key,
    sha256_hex,
    version_file_key,
)
from lambda_src.cpus import available_cpus
from lambda_src.errors import (
    ArchitectureMismatch,
    IntegrityError,
    ModelArtifactError,
    NonFiniteOutputs,
    NoOnnxExport,
    TemporaryFolderError,
)
from lambda_src.heap import release_freed_memory
from lambda_src.model_store import (
    BoundedStore,
    LocalModelStore,
    ModelLocation,
    ModelStore,
    check_digest,
    open_model_store,
    read_manifest,
    resolve_version,
)
from lambda_src.ranking import ClassifierBase, ImageInput, Prediction
from lambda_src.timing import PhaseTimer

# Room left in the temporary folder after writing a model file: what else the function may write there.
TEMPORARY_HEADROOM_BYTES = 16 * 1024 * 1024
_PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@dataclass(frozen=True)
class LoadedOnnxModel:
    """A verified ONNX Runtime session, ready to serve, and what it took to open it."""

    manifest: Manifest
    session: onnxruntime.InferenceSession
    threads: int
    phases_ms: dict[str, float] = field(default_factory=dict)

    @property
    def input_name(self) -> str:
        return str(self.session.get_inputs()[0].name)


def load_onnx_model(
    location: ModelLocation, *, threads: int = 0, store: ModelStore | None = None
) -> LoadedOnnxModel:
    """Read, verify, open and warm up the ONNX export of the model at `location` (threads: 0 = all CPUs).

    A version published without one raises `NoOnnxExport` (503 `no_onnx_export`).
    """
    timer = PhaseTimer()
    with timer.phase("open_store"):
        store = store if store is not None else open_model_store(location.store_uri)
    with timer.phase("resolve_version"):
        version = resolve_version(store, location.model_name, location.version)
    with timer.phase("read_manifest"):
        manifest = read_manifest(store, location.model_name, version)
    if manifest.onnx is None:
        raise NoOnnxExport(
            f"{store.describe(manifest_key(store.prefix, location.model_name, version))} lists no ONNX "
            f"export (schema version {manifest.schema_version}): publish the model again, or add one "
            f"with `python -m model_training export-onnx`, or serve it with MODEL_ENGINE=torch"
        )
    threads = threads if threads > 0 else available_cpus()
    with ExitStack() as verified:
        with timer.phase("open_onnx"):  # from S3: read, verified and written out; local files: opened
            files = verified.enter_context(
                verified_model_files(store, location.model_name, version, manifest.onnx)
            )
        with timer.phase("create_session"):
            described = store.describe(onnx_key(store.prefix, location.model_name, version))
            session = create_session(files, threads, described)
        with timer.phase("verify_onnx"):  # local files' hashes, computed while the session was built
            verified.close()
    del files  # the bytes of a file kept in memory, if one was
    release_freed_memory()  # the parsed model ONNX Runtime built the session from
    loaded = LoadedOnnxModel(manifest=manifest, session=session, threads=threads)
    with timer.phase("warm_up"):
        warm_up(loaded)
    return LoadedOnnxModel(manifest, session, threads, phases_ms=timer.rounded())


@dataclass(frozen=True)
class OnnxModelFiles:
    """What ONNX Runtime builds a session from: model.onnx (a path, or its bytes) and files kept in memory.

    `in_memory` holds the export's files that could not be written beside model.onnx (a full
    /tmp): ONNX Runtime takes them by name instead of reading them from the folder.
    """

    model: str | bytes
    in_memory: dict[str, bytes] = field(default_factory=dict)


@contextmanager
def verified_model_files(
    store: ModelStore, model_name: str, version: str, export: OnnxExport
) -> Iterator[OnnxModelFiles]:
    """The export's files as the manifest records them, in a private folder ONNX Runtime reads.

    ONNX Runtime given a path reads the files itself and finds `model.onnx.data` beside it: no
    Python copy of the weights next to the session's own while it builds (given bytes, it copies
    them). A local store's files are linked into the folder (`_linked_local_files`); files from
    S3 are read, verified and written there (`_written_remote_files`). The folder is removed on
    leaving the block.
    """
    files = [
        (name, version_file_key(store.prefix, model_name, version, name), sha256, size)
        for name, (sha256, size) in export.files.items()
    ]
    local = _local_store(store)
    if local is None:
        fetched = _read_verified(store, files)
        with _temporary_folder() as folder:
            placed = _written_remote_files(folder, fetched)
            try:
                yield placed
            finally:
                placed.in_memory.clear()
        return
    with _temporary_folder() as folder, _linked_local_files(store, local, files, folder) as linked:
        yield linked


ExportFile = tuple[str, str, str, int]  # (file name, key, SHA-256, size), as the manifest records it


def _read_verified(store: ModelStore, files: list[ExportFile]) -> list[tuple[str, bytes]]:
    """Every file's bytes, each checked against its hash; all are read before any is checked.

    Reading all first leaves nothing of this version in a prefetching store when a check fails.
    """
    fetched = [(name, key, sha256, store.read(key, size=size)) for name, key, sha256, size in files]
    for _, key, sha256, data in fetched:
        check_digest(store.describe(key), sha256_hex(data), sha256)
    return [(name, data) for name, _, _, data in fetched]


def _written_remote_files(folder: Path, fetched: list[tuple[str, bytes]]) -> OnnxModelFiles:
    """The verified files written to `folder` and dropped from memory; any it has no room for stay in memory.

    ONNX Runtime given model.onnx as bytes looks for the rest in the working directory, not
    the folder: once model.onnx stays in memory, so does every file after it.
    """
    in_memory: dict[str, bytes] = {}
    while fetched:
        name, data = fetched.pop(0)
        if ONNX_FILE in in_memory or not _written(folder / name, data):
            in_memory[name] = data
        del data
    model = in_memory.pop(ONNX_FILE, None)
    if model is not None:
        return OnnxModelFiles(model, in_memory)
    return OnnxModelFiles(str(folder / ONNX_FILE), in_memory)


@contextmanager
def _linked_local_files(
    store: ModelStore, local: LocalModelStore, files: list[ExportFile], folder: Path
) -> Iterator[OnnxModelFiles]:
    """A local store's files, opened once and linked into `folder` by descriptor (/proc/self/fd).

    ONNX Runtime reads those same files while threads hash them, and the session built in the
    `with` block is refused on leaving it if a hash is not the manifest's or a file was replaced
    meanwhile (hashing and the build overlap on a second CPU). ONNX Runtime reads a model's
    external data only from model.onnx's own folder (links resolved): a file that really lives
    elsewhere (a store of links into a cache, as DVC or git-annex make) is read into memory.
    """
    pending: list[tuple[io.BufferedReader, Future[str], str, str]] = []  # (file, its hash, expected, key)
    in_memory: dict[str, bytes] = {}
    model_folder: Path | None = None
    with ExitStack() as opened_files:
        for name, key, sha256, size in files:
            opened = opened_files.enter_context(_open_local(store, local, key, size))
            path = _path_of(opened, Path(opened.name))
            real_folder = Path(os.path.realpath(path)).parent
            model_folder = model_folder or real_folder  # model.onnx comes first
            if real_folder != model_folder:
                data = opened.read()
                check_digest(store.describe(key), sha256_hex(data), sha256)
                in_memory[name] = data
                del data
                continue
            (folder / name).symlink_to(path)
            pending.append((opened, _digest_in_background(opened), sha256, key))
        try:
            yield OnnxModelFiles(str(folder / ONNX_FILE), in_memory)
        finally:  # also when ONNX Runtime refused a file: a wrong hash is the first thing to say
            in_memory.clear()
            for opened, digest, sha256, key in pending:
                check_digest(store.describe(key), _wait(digest, store, key), sha256)
                _check_in_place(opened, store.describe(key))


@contextmanager
def _temporary_folder() -> Iterator[Path]:
    """A new private folder in the temporary directory (Lambda's /tmp), removed with what it holds."""
    try:
        folder = tempfile.TemporaryDirectory(prefix="onnx-model-")
    except OSError as error:
        raise TemporaryFolderError(
            f"cannot make a folder in {tempfile.gettempdir()} for the ONNX model's files: {error.strerror}"
        ) from None
    with folder as path:
        yield Path(path)


def _written(path: Path, data: bytes) -> bool:
    """Write `data` to `path` if its file system has room (Lambda's /tmp: 512 MB by default); say if it did.

    A write that fails anyway (the room taken meanwhile) leaves no partial file.
    """
    if shutil.disk_usage(path.parent).free < len(data) + TEMPORARY_HEADROOM_BYTES:
        return False
    try:
        path.write_bytes(data)
    except OSError:
        path.unlink(missing_ok=True)
        return False
    return True


def _local_store(store: ModelStore) -> LocalModelStore | None:
    """The local folder `store` reads (directly or within a load's bound); None for other stores."""
    if isinstance(store, LocalModelStore):
        return store
    if isinstance(store, BoundedStore) and isinstance(store.store, LocalModelStore):
        return store.store
    return None


def _open_local(store: ModelStore, local: LocalModelStore, key: str, size: int) -> io.BufferedReader:
    """The local store's file at `key`, open, its size checked (within the store's bound, if bounded)."""
    if isinstance(store, BoundedStore):
        return store.within(key, lambda: local.open(key, size=size))
    return local.open(key, size=size)


def _digest_in_background(file: io.BufferedReader) -> Future[str]:
    """The SHA-256 of `file` from its start, computed on a daemon thread (hashing releases the GIL)."""
    digest: Future[str] = Future()

    def run() -> None:
        try:
            digest.set_result(hashlib.file_digest(file, "sha256").hexdigest())
        except BaseException as error:  # handed to whoever waits for it
            digest.set_exception(error)

    threading.Thread(target=run, name="onnx-digest", daemon=True).start()
    return digest


def _wait(digest: Future[str], store: ModelStore, key: str) -> str:
    """The background hash of `key`, within what is left of the store's bound (if it has one)."""
    deadline = store.deadline if isinstance(store, BoundedStore) else None
    try:
        return digest.result(timeout=deadline.remaining() if deadline is not None else None)
    except FutureTimeout:
        raise ModelArtifactError(
            f"cannot read {store.describe(key)}: hashing it did not finish within the load's bound"
        ) from None
    except OSError as error:
        raise ModelArtifactError(f"cannot read {store.describe(key)}: {error.strerror}") from None


def _path_of(file: IO[bytes], fallback: Path) -> str:
    """A path that opens the same file as `file` (/proc/self/fd), or `fallback` where there is none."""
    by_descriptor = Path(f"/proc/self/fd/{file.fileno()}")
    return str(by_descriptor if by_descriptor.exists() else fallback.resolve())


def _check_in_place(file: io.BufferedReader, description: str) -> None:
    """ModelArtifactError if the file opened from `file.name` is no longer what that name holds.

    ONNX Runtime resolves the folder's links to names; one that was replaced or removed while
    it loaded cannot be resolved, and the load fails in ONNX Runtime's words: these say why.
    """
    opened = os.fstat(file.fileno())
    try:
        now = os.stat(file.name)
    except OSError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        raise ModelArtifactError(
            f"{description} was replaced or removed while the model loaded; the next attempt reads it again"
        )


def create_session(files: OnnxModelFiles, threads: int, description: str) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session over the model's files: `threads` threads, one call at a time."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    # A memory pattern plans one block for a whole run at each new input shape: a batch of 8
    # images grows the process by tens of MB (resnet50: 47) for no measurable speed.
    options.enable_mem_pattern = False
    if files.in_memory:  # ONNX Runtime copies them while it builds the session
        names = list(files.in_memory)
        buffers = [files.in_memory[name] for name in names]
        options.add_external_initializers_from_files_in_memory(
            names, buffers, [len(data) for data in buffers]
        )
    try:
        return onnxruntime.InferenceSession(
            files.model, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own types for every kind of bad model
        raise IntegrityError(
            f"{description} is not a model ONNX Runtime can load: {_first_line(error)}"
        ) from None


def warm_up(model: LoadedOnnxModel) -> None:
    """One forward pass: checks the input and output shapes against the manifest, and warms the session.

    As the torch engine's warm-up, it also refuses a model whose outputs are not numbers.
    """
    crop, channels = model.manifest.preprocessing.crop, model.manifest.preprocessing.channels
    blank = np.zeros((1, channels, crop, crop), np.float32)
    try:
        (logits,) = model.session.run(None, {model.input_name: blank})
    except Exception as error:
        raise ArchitectureMismatch(
            f"the ONNX model cannot run on the manifest's {crop}x{crop} input: {_first_line(error)}"
        ) from None
    if np.shape(logits) != (1, model.manifest.num_classes):
        raise ArchitectureMismatch(
            f"the ONNX model gives outputs of shape {list(np.shape(logits))}, but the manifest lists "
            f"{model.manifest.num_classes} classes"
        )
    if not np.isfinite(logits).all():
        raise NonFiniteOutputs()


def preprocess(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """The (channels, crop, crop) float32 input `eval_transform` makes of `image`, in Pillow and numpy.

    Resize and crop use Pillow's filters on the image, as the torch engine's transform does.
    """
    if preprocessing.channels == 1:
        image = image.convert("L")  # what torchvision's Grayscale does to a PIL image
    width, height = image.size
    new_width, new_height = resized_size(width, height, preprocessing.resize)
    if (new_width, new_height) == (width, height):
        pixels = np.asarray(image, dtype=np.uint8)
    else:
        filter_ = _PILLOW_FILTERS[preprocessing.interpolation]
        pixels = np.asarray(image.resize((new_width, new_height), filter_), dtype=np.uint8)
    crop = preprocessing.crop
    top = round((new_height - crop) / 2.0)  # torchvision rounds half to even, as round() does
    left = round((new_width - crop) / 2.0)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    cropped = pixels[top : top + crop, left : left + crop]
    scaled = cropped.astype(np.float32) / np.float32(255)
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1))


def resized_size(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `shorter_side`, as torchvision sizes it."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shorter_side, int(shorter_side * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


class OnnxModelInput(ImageInput[np.ndarray]):
    """Image bytes to the ONNX model's input array: decode within `max_pixels`, then `preprocess`."""

    def __init__(self, preprocessing: Preprocessing, *, max_pixels: int) -> None:
        super().__init__(
            preprocessing,
            max_pixels=max_pixels,
            preprocess=lambda image: preprocess(image, preprocessing),
        )


class OnnxClassifier(ClassifierBase[np.ndarray]):
    """A loaded ONNX model's input, predict and output verbs; safe to share between threads."""

    model: LoadedOnnxModel

    def __init__(self, model: LoadedOnnxModel, *, max_image_pixels: int) -> None:
        super().__init__(model, OnnxModelInput(model.manifest.preprocessing, max_pixels=max_image_pixels))

    @property
    def threads(self) -> int:
        """The session's intra-op threads."""
        return self.model.threads

    def predict(self, inputs: Sequence[np.ndarray], top_k: int) -> list[list[Prediction]]:
        """The `top_k` most probable classes of each input, most probable first (one forward pass)."""
        batch = np.stack(list(inputs)).astype(np.float32, copy=False)
        with self._forward_lock:
            (logits,) = self.model.session.run(None, {self.model.input_name: batch})
        self.require_finite(bool(np.isfinite(logits).all()))
        probabilities = softmax(np.asarray(logits, dtype=np.float32))
        k = self.capped_top_k(top_k)
        indices = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(probabilities, indices, axis=1)
        return self.ranked(scores.tolist(), indices.tolist())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, shifted by each row's maximum (as torch computes it)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
