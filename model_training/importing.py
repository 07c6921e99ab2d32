"""Import an existing model as an artifact: torchvision or timm pretrained weights, or your own file.

Every source ends in the same `ImportedModel` as training does: the model, the plain
state dict bytes `model.pt` will hold, and an unpublished manifest with the source's
labels, its exact preprocessing and where the weights came from (provenance). Nothing
is written here: the caller writes or publishes the result, so a failed import leaves
nothing behind. Files are only ever loaded with `weights_only=True`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision

from lambda_src.architectures import (
    build_model,
    check_architecture,
    classification_architectures,
    load_weights,
    meta_model,
)
from lambda_src.artifact import INTERPOLATIONS, Manifest, Preprocessing, Provenance, sha256_hex
from lambda_src.timm_support import TIMM_PREFIX, check_timm_architecture, is_timm_architecture
from model_training.checkpoints import (
    describe_source,
    fit_keys,
    non_finite_tensor,
    read_checkpoint,
)
from model_training.labels import read_labels
from model_training.network_fit import NetworkFit, fit_network
from model_training.training import UNPUBLISHED_VERSION, serialise

TORCHVISION_PREFIX = "torchvision:"
# torchvision builds these with transform_input=True when given weights: the network turns
# ImageNet-normalised input into (x - 0.5) / 0.5. Normalising with 0.5 directly is the same.
_TRANSFORM_INPUT_ARCHITECTURES = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


class ImportFailed(Exception):
    """The model cannot be imported, for a reason a person can act on."""


@dataclass(frozen=True)
class ImportedModel:
    """An imported model in eval mode, the bytes of its state dict, and its unpublished manifest."""

    model: torch.nn.Module
    manifest: Manifest
    weights: bytes
    notes: tuple[str, ...] = ()  # which weights were taken, warnings: for the person importing


def import_pretrained(spec: str, *, model_name: str | None = None, progress: bool = True) -> ImportedModel:
    """`torchvision:ARCH.WEIGHTS` or `timm:NAME`, downloaded (or found in the library's cache)."""
    if spec.startswith(TORCHVISION_PREFIX):
        return import_torchvision(spec.removeprefix(TORCHVISION_PREFIX), model_name, progress)
    if spec.startswith(TIMM_PREFIX):
        return import_timm(spec.removeprefix(TIMM_PREFIX), model_name, progress)
    if spec.startswith(HUB_PREFIX):
        return import_hub_repo(spec.removeprefix(HUB_PREFIX), model_name=model_name)
    raise ImportFailed(
        f"unknown pretrained source {spec!r}: use {TORCHVISION_PREFIX}ARCH.WEIGHTS "
        f"(e.g. {TORCHVISION_PREFIX}resnet50.IMAGENET1K_V2) or {TIMM_PREFIX}NAME "
        f"(e.g. {TIMM_PREFIX}convnext_tiny.fb_in22k_ft_in1k) "
        f"or {HUB_PREFIX}ORG/NAME (a timm model's hub repository)"
    )


# torchvision ---------------------------------------------------------------------------------


def torchvision_weights(name: str) -> torchvision.models.WeightsEnum:
    """The weights enum member `ARCH.WEIGHTS` names (`DEFAULT` accepted)."""
    architecture, _, member = name.partition(".")
    if architecture not in classification_architectures():
        raise ImportFailed(
            f"unknown torchvision classifier {architecture!r}; torchvision.models.list_models() lists them"
        )
    enum = torchvision.models.get_model_weights(architecture)
    if member not in enum.__members__:
        raise ImportFailed(
            f"torchvision has no weights {name!r}; {architecture} has: "
            + ", ".join(f"{architecture}.{known}" for known in enum.__members__)
        )
    return enum[member]


def import_torchvision(name: str, model_name: str | None, progress: bool) -> ImportedModel:
    weights = torchvision_weights(name)
    architecture = name.partition(".")[0]
    full_name = f"{architecture}.{weights.name}"  # DEFAULT resolved to what it stands for
    state_dict, file_sha256 = verified_torchvision_state_dict(weights, progress)
    transforms = weights.transforms()
    preprocessing = Preprocessing(
        resize=transforms.resize_size[0],
        crop=transforms.crop_size[0],
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        interpolation=transforms.interpolation.value,
    )
    aux_prefixes = _TRANSFORM_INPUT_ARCHITECTURES.get(architecture)
    if aux_prefixes:  # auxiliary heads only help training; serving builds the model without them
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith(aux_prefixes)}
        preprocessing = dataclasses.replace(preprocessing, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    provenance = Provenance(kind="torchvision", name=full_name, url=weights.url, sha256=file_sha256)
    return _imported(
        architecture,
        weights.meta["categories"],
        state_dict=state_dict,
        preprocessing=preprocessing,
        provenance=provenance,
        model_name=model_name or full_name,
    )


def verified_torchvision_state_dict(
    weights: torchvision.models.WeightsEnum, progress: bool
) -> tuple[Mapping[str, torch.Tensor], str]:
    """torch.hub's download-and-cache, plus the hash check it skips for files already cached.

    torchvision names each file after the first hex digits of its SHA-256
    (resnet50-11ad3fa6.pth); the file must match them however it got into the cache.
    """
    file_name = Path(urlparse(weights.url).path).name
    found = torch.hub.HASH_REGEX.search(file_name)
    if not found:
        raise ImportFailed(f"{weights.url} carries no hash in its name to check the download against")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if cached.is_file():
        _check_hash_prefix(cached, found.group(1))
    try:
        state_dict = weights.get_state_dict(
            progress=progress, check_hash=True, weights_only=True, map_location="cpu"
        )
    except (OSError, RuntimeError) as error:  # unreachable, refused, or failed torch.hub's own hash check
        raise ImportFailed(f"could not download {weights.url}: {_first_line(error)}") from None
    return state_dict, _check_hash_prefix(cached, found.group(1))


def _check_hash_prefix(path: Path, prefix: str) -> str:
    """The file's SHA-256, if it starts with `prefix`; otherwise ImportFailed."""
    actual = file_sha256(path)
    if not actual.startswith(prefix):
        raise ImportFailed(
            f"{path} has SHA-256 {actual}, but its published hash starts with {prefix}: the file is corrupt "
            "or was replaced. Delete it and run the import again to download it afresh"
        )
    return actual


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# timm ----------------------------------------------------------------------------------------


def import_timm(name: str, model_name: str | None, progress: bool) -> ImportedModel:
    """A timm classifier with its pretrained weights (through timm's Hugging Face Hub cache)."""
    import timm
    import timm.data
    from timm.models import get_pretrained_cfg

    check_timm_architecture(TIMM_PREFIX + name)
    config = get_pretrained_cfg(name)
    if config is None or not (config.hf_hub_id or config.url or config.file):
        raise ImportFailed(f"timm has no pretrained weights for {name!r}; timm.list_pretrained() lists them")
    if not config.num_classes:
        raise ImportFailed(
            f"timm model {name!r} is not a classifier: its pretrained weights have no classification head "
            "(num_classes 0); pick a tag fine-tuned for classification, e.g. one ending in _in1k"
        )
    try:
        with _hub_progress(progress):
            model = timm.create_model(name, pretrained=True)
    except Exception as error:  # hub, network and file errors come in many types; each means the same
        raise ImportFailed(
            f"timm could not load the pretrained weights of {name!r}: {_first_line(error)}"
        ) from None
    tagged = f"{config.architecture}.{config.tag}"  # an untagged name resolved to timm's default tag
    labels = timm_labels(model, tagged)
    preprocessing = timm_preprocessing(timm.data.resolve_model_data_config(model), tagged)
    source = _timm_weights_file(config.hf_hub_id, config.hf_hub_filename)
    hub_url = f"https://huggingface.co/{config.hf_hub_id}" if config.hf_hub_id else None
    provenance = Provenance(
        kind="timm",
        name=TIMM_PREFIX + tagged,
        url=config.url if isinstance(config.url, str) and config.url else hub_url,
        sha256=file_sha256(source) if source else None,
        license=config.license,
    )
    return _imported(
        TIMM_PREFIX + tagged,
        labels,
        state_dict=model.state_dict(),
        preprocessing=preprocessing,
        provenance=provenance,
        model_name=model_name or tagged,
    )


@contextlib.contextmanager
def _hub_progress(enabled: bool) -> Iterator[None]:
    """Hugging Face Hub's download bars on or off for the block, then as they were."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    (enable_progress_bars if enabled else disable_progress_bars)()
    try:
        yield
    finally:
        (disable_progress_bars if was_disabled else enable_progress_bars)()


def timm_labels(model: torch.nn.Module, name: str) -> list[str]:
    """The class names timm declares for the model's dataset (ImageNet-1k, -12k, -21k, -22k)."""
    import timm.data

    subset = timm.data.infer_imagenet_subset(model)
    if subset is None:
        raise ImportFailed(
            f"timm declares no labels for {name!r}; import it with --architecture {TIMM_PREFIX}NAME "
            "--weights FILE --labels FILE"
        )
    labels = timm.data.ImageNetInfo(subset).label_descriptions()
    outputs = getattr(model, "num_classes", len(labels))
    if len(labels) != outputs:
        raise ImportFailed(f"timm's {subset} labels are {len(labels)} but {name!r} has {outputs} outputs")
    return list(labels)


def timm_preprocessing(config: Mapping[str, Any], name: str) -> Preprocessing:
    """timm's resolved data config as a manifest's preprocessing (what timm's eval transform does)."""
    _, height, width = config["input_size"]
    if height != width:
        raise ImportFailed(f"{name!r} takes {height}x{width} inputs; serving crops square images only")
    crop_mode = config.get("crop_mode", "center")
    if crop_mode != "center":
        raise ImportFailed(
            f"{name!r} resizes with timm's crop_mode {crop_mode!r}; serving reproduces 'center' only"
        )
    if config["interpolation"] not in INTERPOLATIONS:
        raise ImportFailed(f"{name!r} resizes with {config['interpolation']!r}, not one of {INTERPOLATIONS}")
    return Preprocessing(
        resize=math.floor(height / config["crop_pct"]),  # timm's own formula for the eval resize
        crop=height,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config["interpolation"],
    )


def _timm_weights_file(hub_id: str | None, hub_file_name: str | None) -> Path | None:
    """The file timm loaded the weights from, in the Hugging Face Hub cache, when it is there."""
    from huggingface_hub import try_to_load_from_cache

    if not hub_id:
        return None
    names = [hub_file_name] if hub_file_name else []
    for file_name in [*names, "model.safetensors", "pytorch_model.bin"]:
        found = try_to_load_from_cache(hub_id, file_name)
        if isinstance(found, str):
            return Path(found)
    return None


# your own weights ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessingOptions:
    """The preprocessing options given on the command line; None: the architecture's own default."""

    crop: int | None = None
    resize: int | None = None
    interpolation: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def resolve(self, architecture: str, timm_config: Mapping[str, Any] | None = None) -> Preprocessing:
        """torchvision's ImageNet eval preset or a timm architecture's data config, the options over it.

        A crop given without a resize is resized by the default's crop fraction
        (torchvision: 224/256 = 7/8; timm: the architecture's crop_pct).
        """
        default, crop_fraction = _default_preprocessing(architecture, timm_config)
        crop = self.crop or default.crop
        mean = self.mean or default.mean
        std = self.std or default.std
        return Preprocessing(
            resize=self.resize
            or (default.resize if self.crop is None else _scaled(architecture, crop, crop_fraction)),
            crop=crop,
            mean=tuple(mean),
            std=tuple(std),
            interpolation=self.interpolation or default.interpolation,
            channels=1 if len(mean) == len(std) == 1 else 3,
        )


def _scaled(architecture: str, crop: int, crop_fraction: float) -> int:
    """The resize for `crop`: timm floors crop / crop_pct; torchvision's 8/7 rule rounds."""
    scaled = crop / crop_fraction
    return math.floor(scaled) if is_timm_architecture(architecture) else round(scaled)


def _default_preprocessing(
    architecture: str, timm_config: Mapping[str, Any] | None = None
) -> tuple[Preprocessing, float]:
    """The eval preprocessing of `architecture`, and its crop fraction; `timm_config` over timm's own."""
    if not is_timm_architecture(architecture):
        return Preprocessing(resize=256, crop=224), 7 / 8
    import timm.data

    check_timm_architecture(architecture)
    model = meta_model(architecture, 2)
    own: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    pretrained = {**own, **(timm_config or {})}
    config = timm.data.resolve_data_config({}, pretrained_cfg=pretrained)
    return timm_preprocessing(config, architecture), config["crop_pct"]


# Hugging Face hub folders of timm models -----------------------------------------------------

HUB_PREFIX = "hf-hub:"
HUB_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's push_to_hub writes


def import_hub_repo(
    repo_id: str, *, options: PreprocessingOptions | None = None, model_name: str | None = None
) -> ImportedModel:
    """`hf-hub:ORG/NAME`: a timm model's hub repository, from the Hugging Face Hub cache (or downloaded)."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, allow_patterns=["config.json", *HUB_WEIGHTS_FILES])
    except Exception as error:  # the hub's errors (offline, not cached, unknown repo) come in many types
        raise ImportFailed(
            f"could not get {HUB_PREFIX}{repo_id} from the Hugging Face Hub: {_first_line(error)}"
        ) from None
    return import_hub_folder(
        Path(folder), options=options, model_name=model_name or repo_id.rpartition("/")[2], repo_id=repo_id
    )


def import_hub_folder(
    folder: Path,
    *,
    labels_path: Path | None = None,
    options: PreprocessingOptions | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
) -> ImportedModel:
    """A timm model as the hub keeps it: config.json (architecture, labels, pretrained_cfg), weights."""
    config = _hub_config(folder)
    architecture = TIMM_PREFIX + config["architecture"]
    check_architecture(architecture)
    weights = next((folder / name for name in HUB_WEIGHTS_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise ImportFailed(f"{folder} holds config.json but none of {', '.join(HUB_WEIGHTS_FILES)}")
    notes: list[str] = []
    labels = read_labels(labels_path, warn=notes.append) if labels_path else _hub_labels(folder, config)
    declared = config.get("num_classes")
    if isinstance(declared, int) and declared != len(labels):
        raise ImportFailed(
            f"{folder}/config.json declares {declared} classes but {len(labels)} labels are given"
        )
    pretrained_cfg = config.get("pretrained_cfg") or {}
    preprocessing = (options or PreprocessingOptions()).resolve(architecture, pretrained_cfg)
    provenance = Provenance(
        kind="timm" if repo_id else "file",
        name=f"{HUB_PREFIX}{repo_id}" if repo_id else folder.name,
        url=f"https://huggingface.co/{repo_id}" if repo_id else None,
        sha256=file_sha256(weights),
        license=pretrained_cfg.get("license") if isinstance(pretrained_cfg.get("license"), str) else None,
    )
    return _import_weights(
        architecture,
        weights,
        labels,
        preprocessing,
        model_name or name_from_file(folder),
        ema=False,
        strip_prefix=None,
        head=None,
        notes=notes,
        provenance=provenance,
    )


def _hub_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ImportFailed(
            f"{folder} is a folder without config.json: give a Hugging Face hub folder of a timm model "
            "(config.json beside model.safetensors), or the weights file itself"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ImportFailed(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ImportFailed(f'{path} names no timm architecture (its "architecture" key)')
    if config.get("pretrained_cfg") is not None and not isinstance(config["pretrained_cfg"], dict):
        raise ImportFailed(f"{path}: pretrained_cfg must be an object")
    return config


def _hub_labels(folder: Path, config: Mapping[str, Any]) -> list[str]:
    """config.json's label_names, as their readable label_descriptions when it has them."""
    names = config.get("label_names")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) or not names:
        raise ImportFailed(f"{folder}/config.json lists no label_names: give the labels with --labels FILE")
    descriptions = config.get("label_descriptions")
    if isinstance(descriptions, dict):
        return [str(descriptions.get(name, name)) for name in names]
    return list(names)


def import_weights_file(
    architecture: str,
    weights_path: Path,
    labels_path: Path,
    preprocessing: Preprocessing | PreprocessingOptions,
    model_name: str | None = None,
    *,
    ema: bool = False,
    strip_prefix: str | None = None,
    head: str | None = None,
) -> ImportedModel:
    """A state dict or checkpoint file of `architecture` (torchvision name or timm:NAME), with labels.

    `ema` takes a checkpoint's EMA weights; `strip_prefix` names the wrapper prefix of the
    tensor names when it cannot be found from the architecture's own names; `head` describes
    a classifier head with activations (`linear-relu-dropout-linear`). The result's
    notes say which weights were taken, and warn about the labels.
    """
    check_architecture(architecture)
    notes: list[str] = []
    labels = read_labels(labels_path, warn=notes.append)
    return _import_weights(
        architecture,
        weights_path,
        labels,
        preprocessing if isinstance(preprocessing, Preprocessing) else preprocessing.resolve(architecture),
        model_name,
        ema=ema,
        strip_prefix=strip_prefix,
        head=head,
        notes=notes,
    )


def _import_weights(
    architecture: str,
    weights_path: Path,
    labels: Sequence[str],
    preprocessing: Preprocessing,
    model_name: str | None,
    *,
    ema: bool,
    strip_prefix: str | None,
    head: str | None,
    notes: list[str],
    provenance: Provenance | None = None,
) -> ImportedModel:
    checkpoint = read_checkpoint(weights_path, ema=ema)
    expected = tuple(meta_model(architecture, len(labels)).state_dict())
    fitted = fit_keys(checkpoint.state_dict, expected, strip_prefix=strip_prefix, prefer_ema=ema)
    notes.append(describe_source(checkpoint, fitted))
    network = fit_network(architecture, len(labels), fitted.state_dict, head=head)
    preprocessing = _fit_channels(preprocessing, network)
    if network.head is not None:
        notes.append(f"head: {network.head.describe()}")
    if network.input_conv is not None:
        notes.append(f"input: 1 channel ({network.input_conv}); serving converts images to greyscale")
    provenance = provenance or Provenance(
        kind="file", name=weights_path.name, sha256=file_sha256(weights_path)
    )
    imported = _imported(
        architecture,
        labels,
        state_dict=fitted.state_dict,
        preprocessing=preprocessing,
        provenance=provenance,
        model_name=model_name or name_from_file(weights_path),
        network=network,
    )
    return dataclasses.replace(imported, notes=tuple(notes))


def _fit_channels(preprocessing: Preprocessing, network: NetworkFit) -> Preprocessing:
    """The preprocessing, checked to give the network's channel count (mean and std say it)."""
    if network.input_conv is not None and preprocessing.channels != 1:
        raise ImportFailed(
            f"the weights' first convolution ({network.input_conv}) takes 1 channel: a greyscale model; "
            "give its normalisation as one value each, e.g. --mean 0.5 --std 0.5"
        )
    if network.input_conv is None and preprocessing.channels == 1:
        raise ImportFailed(
            "--mean and --std have one value each (a greyscale model), but the weights' first convolution "
            "takes 3 channels: give three values each"
        )
    return preprocessing


def name_from_file(path: Path) -> str:
    """A valid model name from a file name: Lightning's `epoch=4-step=120.ckpt` -> `epoch-4-step-120`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.name if path.is_dir() else path.stem).strip("-._")[:128]
    return name or "model"


# the artifact --------------------------------------------------------------------------------


def _imported(
    architecture: str,
    labels: Sequence[str],
    *,
    state_dict: Mapping[str, torch.Tensor],
    preprocessing: Preprocessing,
    provenance: Provenance,
    model_name: str,
    network: NetworkFit | None = None,
) -> ImportedModel:
    """Load the weights into a freshly built `architecture` (with `network`'s changes); describe it."""
    network = network or NetworkFit()
    broken = non_finite_tensor(state_dict)
    if broken is not None:
        raise ImportFailed(
            f"the weights hold NaN or infinity (first in {broken}): training diverged or the file is "
            "corrupt, and such a model answers NaN scores; import weights from an earlier checkpoint"
        )
    if network.head is not None and network.head.outputs != len(labels):
        raise ImportFailed(
            f"the labels file has {len(labels)} labels but the weights' head ({network.head.module}) has "
            f"{network.head.outputs} outputs: give one label per output, in output order"
        )
    model = build_model(architecture, len(labels), head=network.head, input_conv=network.input_conv)
    _check_label_count(model, state_dict, len(labels))
    load_weights(model, state_dict, f"{architecture} with {len(labels)} classes")
    model.eval()
    weights = serialise(model)
    framework = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    if is_timm_architecture(architecture):
        import timm

        framework["timm"] = timm.__version__
    manifest = Manifest(
        model_name=model_name,
        version=UNPUBLISHED_VERSION,
        architecture=architecture,
        labels=tuple(labels),
        weights_sha256=sha256_hex(weights),
        weights_size_bytes=len(weights),
        preprocessing=preprocessing,
        framework=framework,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        provenance=provenance,
        head=network.head,
        input_conv=network.input_conv,
    )
    return ImportedModel(model=model, manifest=manifest, weights=weights)


def _check_label_count(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], count: int) -> None:
    """Say "N labels for M outputs" when the classifier head is the only thing that does not fit."""
    expected = model.state_dict()
    wrong = [key for key in expected if key in state_dict and state_dict[key].shape != expected[key].shape]
    head_only = bool(wrong) and all(
        expected[key].shape[0] == count and state_dict[key].shape[1:] == expected[key].shape[1:]
        for key in wrong
    )
    outputs = {state_dict[key].shape[0] for key in wrong}
    if head_only and len(outputs) == 1:
        raise ImportFailed(
            f"the labels file has {count} labels but the weights' classifier ({', '.join(wrong)}) has "
            f"{outputs.pop()} outputs: give one label per output, in output order"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
