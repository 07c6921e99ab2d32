"""Labels files in every common form; refusals with the numbers; nothing written on any refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lambda_src.architectures import build_model
from lambda_src.artifact import Manifest, sha256_hex
from model_training.cli import main
from model_training.labels import LabelsError, read_labels
from model_training.publishing import publish
from model_training.training import serialise, write_artifact

LABELS = ["cat", "dog", "fox"]
ARCHITECTURE = "mobilenet_v3_small"

FORMS: dict[str, tuple[str, bytes]] = {
    "text": ("labels.txt", b"cat\ndog\n\nfox\n"),
    "text, Windows line ends and a byte-order mark": ("labels.txt", b"\xef\xbb\xbfcat\r\ndog\r\nfox\r\n"),
    "JSON list": ("labels.json", json.dumps(LABELS).encode()),
    "JSON object keyed by index": ("labels.json", b'{"1": "dog", "0": "cat", "2": "fox"}'),
    "class-index form": (
        "imagenet_class_index.json",
        b'{"0": ["n02123045", "cat"], "1": ["n02084071", "dog"], "2": ["n02118333", "fox"]}',
    ),
    "CSV with a header": ("labels.csv", b"index,label\n0,cat\n1,dog\n2,fox\n"),
    "CSV without a header": ("labels.csv", b"0,cat\n2,fox\n1,dog\n"),
    "CSV, label column first, byte-order mark": (
        "classes.csv",
        b"\xef\xbb\xbfname,id\ncat,0\ndog,1\nfox,2\n",
    ),
    "tab-separated": ("labels.tsv", b"0\tcat\n1\tdog\n2\tfox\n"),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_common_labels_form_reads_in_output_order(tmp_path: Path, form: str) -> None:
    name, data = FORMS[form]
    (tmp_path / name).write_bytes(data)

    assert read_labels(tmp_path / name) == LABELS


def test_labels_holding_commas_stay_whole_lines(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("tench, Tinca tinca\ngoldfish, Carassius auratus\n")

    assert read_labels(tmp_path / "labels.txt") == ["tench, Tinca tinca", "goldfish, Carassius auratus"]


def test_duplicates_are_kept_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("crane\nmaillot\ncrane\nmaillot\nfox\n")
    warnings: list[str] = []

    labels = read_labels(tmp_path / "labels.txt", warn=warnings.append)

    assert labels == ["crane", "maillot", "crane", "maillot", "fox"]
    assert warnings == [
        f"warning: {tmp_path / 'labels.txt'} repeats 2 labels ('crane', 'maillot'); "
        "kept, as the file has them"
    ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            "café\nthé\n".encode("cp1252"),
            "is not UTF-8 text (byte 0xe9 at offset 3; it reads as Windows-1252): save it as UTF-8",
        ),
        (
            "cat\ndog\n".encode("utf-16"),
            "is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8",
        ),
        (
            b'{"0": "cat", "1": "dog", "3": "fox", "7": "owl"}',
            "4 labels, but their indices do not run 0..3: missing 2, beyond the range 7",
        ),
        (b"index,label\n0,cat\n1,\n2,fox\n", "label 1 (of 3) is empty"),
        (b'["cat", "", "fox"]', "label 1 (of 3) is empty"),
        (b'{"cat": 0, "dog": 1}', "key 'cat' is not an output index"),
        (b'["cat", 3]', "the label of output 1 is 3; labels are strings"),
        (b"0,cat\n0,dog\n", "index 0 appears twice"),
        (b"[1, 2", "starts like JSON but is not valid JSON"),
        (b"\n \n", "holds no labels"),
    ],
)
def test_unusable_labels_files_are_refused_with_the_numbers(tmp_path: Path, data: bytes, words: str) -> None:
    (tmp_path / "labels.txt").write_bytes(data)

    with pytest.raises(LabelsError) as refused:
        read_labels(tmp_path / "labels.txt")

    assert str(refused.value).startswith(str(tmp_path / "labels.txt")) and words in str(refused.value)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(build_model(ARCHITECTURE, len(LABELS)).state_dict(), tmp_path / "w.pth")
    return tmp_path / "w.pth"


def test_a_class_index_file_imports_through_the_command_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, weights: Path
) -> None:
    (tmp_path / "classes.json").write_bytes(FORMS["class-index form"][1])

    code, _, err = run(
        capsys, "import", "--weights", str(weights), "--architecture", ARCHITECTURE,
        "--labels", str(tmp_path / "classes.json"), "--output", str(tmp_path / "out"),
    )  # fmt: skip

    assert code == 0, err
    assert Manifest.from_json((tmp_path / "out" / "manifest.json").read_bytes()).labels == tuple(LABELS)


@pytest.mark.parametrize(
    ("options", "code", "words"),
    [
        (
            ["--mean", "nan", "0.4", "0.4"],
            1,
            "preprocessing.mean must be three numbers (finite ones), got (nan, 0.4, 0.4)",
        ),
        (
            ["--std", "inf", "0.2", "0.2"],
            1,
            "preprocessing.std must be three numbers (finite ones), got (inf, 0.2, 0.2)",
        ),
        (
            ["--mean", "123.7", "116.3", "103.5"],
            1,
            "preprocessing.mean must be from 0 to 1 (pixels are scaled to 0-1), got (123.7, 116.3, 103.5)",
        ),
        (
            ["--std", "0", "0.2", "0.2"],
            1,
            "preprocessing.std must be from 0.01 to 10 (pixels are scaled to 0-1), got (0.0, 0.2, 0.2)",
        ),
        (
            ["--interpolation", "lanczos"],
            2,
            "error: import: argument --interpolation: invalid choice: 'lanczos'",
        ),
        (["--image-size", "x"], 2, "error: import: argument --image-size: "),
        (
            ["--mean", "0.5"],
            1,
            "preprocessing.mean must be three numbers (finite ones), got (0.5,)",
        ),
        (
            ["--labels-typo", "x"],
            2,
            "error: python -m model_training: unrecognized arguments: --labels-typo x",
        ),
    ],
)
def test_option_errors_are_one_error_line_and_nothing_is_written(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    weights: Path,
    options: list[str],
    code: int,
    words: str,
) -> None:
    (tmp_path / "labels.txt").write_text("\n".join(LABELS))
    argv = [
        "import", "--weights", str(weights), "--architecture", ARCHITECTURE,
        "--labels", str(tmp_path / "labels.txt"),
        "--output", str(tmp_path / "out"), "--publish-to", str(tmp_path / "store"), *options,
    ]  # fmt: skip

    try:
        exit_code, out, err = run(capsys, *argv)
    except SystemExit as exited:  # argparse's refusals exit from inside parse_args
        captured = capsys.readouterr()
        exit_code, out, err = int(str(exited.code)), captured.out, captured.err

    assert exit_code == code
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


def test_a_refused_publish_leaves_the_output_folder_as_it_was(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, weights: Path
) -> None:
    (tmp_path / "labels.txt").write_text("\n".join(LABELS))
    argv = [
        "import",
        "--weights",
        str(weights),
        "--architecture",
        ARCHITECTURE,
        "--labels",
        str(tmp_path / "labels.txt"),
    ]
    assert run(capsys, *argv, "--publish-to", str(tmp_path / "store"), "--version", "v1")[0] == 0
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")

    code, out, err = run(
        capsys,
        *argv,
        "--output",
        str(tmp_path / "out"),
        "--publish-to",
        str(tmp_path / "store"),
        "--version",
        "v1",
    )

    assert code == 1 and out == "" and err.count("\n") == 1 and "already exists" in err, err
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["notes.txt"]


def test_weights_holding_nan_are_not_published(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ARCHITECTURE, len(LABELS))
    with torch.no_grad():
        model.classifier[3].weight[0, 0] = float("nan")
    data = serialise(model)
    manifest = Manifest(
        model_name="diverged", version="unpublished", architecture=ARCHITECTURE, labels=tuple(LABELS),
        weights_sha256=sha256_hex(data), weights_size_bytes=len(data),
    )  # fmt: skip
    write_artifact(manifest, data, tmp_path / "out")

    code, out, err = run(capsys, "publish", str(tmp_path / "out"), "--store", str(tmp_path / "store"))

    assert code == 1 and out == ""
    assert err.startswith(f"error: {tmp_path / 'out' / 'model.pt'} holds NaN or infinite values")
    assert "(in classifier.3.weight)" in err and err.count("\n") == 1
    assert not (tmp_path / "store").exists()
    with pytest.raises(Exception, match="NaN or infinite"):
        publish(tmp_path / "out", str(tmp_path / "store"), progress=False)
