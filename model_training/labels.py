"""Labels files in the forms people keep them, read into the model's output order.

- text: one label per line (blank lines ignored);
- JSON: a list of labels, an object keyed by index (`{"0": "cat", ...}`), or the
  class-index form (`{"0": ["n01440764", "tench"], ...}`: the readable name is taken);
- CSV (or tab-separated): `index,label` rows, with or without a header line.

A UTF-8 byte-order mark is ignored. Indices must run 0..N-1 with none missing, and
no label may be empty. Duplicates are legitimate (torchvision's ImageNet categories
hold "crane" twice): they are kept, with a warning.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Header names of a CSV's label column, when it has more than one column besides the index.
_LABEL_COLUMNS = ("label", "name", "class_name", "class", "category", "label_name")
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class LabelsError(Exception):
    """The labels file cannot be read as labels, for a reason a person can act on."""


def read_labels(path: Path, *, warn: Callable[[str], None] = lambda _: None) -> list[str]:
    """The labels in `path`, in output order; `warn` hears about duplicates."""
    text = _read_text(path)
    stripped = text.strip()
    json_like = stripped.startswith(("[", "{"))
    labels = _json_labels(path, stripped) if json_like else _table_labels(path, text)
    if not labels:
        raise LabelsError(f"{path} holds no labels: write one label per line, in the model's output order")
    for index, label in enumerate(labels):
        if not label.strip():
            raise LabelsError(f"{path}: label {index} (of {len(labels)}) is empty")
    repeated = [label for label, count in Counter(labels).items() if count > 1]
    if repeated:
        shown = ", ".join(repr(label) for label in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        warn(f"warning: {path} repeats {len(repeated)} labels ({shown}); kept, as the file has them")
    return labels


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise LabelsError(
                f"{path} is {encoding} text (it starts with a {encoding} byte-order mark); save it as UTF-8"
            )
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte-order mark (Windows editors write one) is not a label
    except UnicodeDecodeError as error:
        guess = _guess_encoding(data)
        raise LabelsError(
            f"{path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}"
            f"{'; it reads as ' + guess if guess else ''}): save it as UTF-8"
        ) from None


def _guess_encoding(data: bytes) -> str | None:
    """A likely single-byte encoding of `data` (what Windows and older editors write)."""
    for encoding, name in (("cp1252", "Windows-1252"), ("latin-1", "Latin-1")):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return name
    return None


def _json_labels(path: Path, text: str) -> list[str]:
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        raise LabelsError(f"{path} starts like JSON but is not valid JSON: {error}") from None
    if isinstance(loaded, list):
        return [_label(path, index, value) for index, value in enumerate(loaded)]
    if not isinstance(loaded, dict):
        raise LabelsError(f"{path} must hold a JSON list of labels or an object keyed by index")
    indexed: dict[int, str] = {}
    for key, value in loaded.items():
        try:
            index = int(key)
        except ValueError:
            raise LabelsError(
                f"{path}: key {key!r} is not an output index; a JSON object of labels maps "
                '"0", "1", ... to labels'
            ) from None
        indexed[index] = _label(path, index, value)
    return _in_index_order(path, indexed)


def _label(path: Path, index: int, value: Any) -> str:
    """A label from a JSON value: a string, or the class-index form's [id, readable name]."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        return value[-1]
    raise LabelsError(
        f"{path}: the label of output {index} is {json.dumps(value)[:60]}; "
        'labels are strings (or ["id", "name"] pairs)'
    )


def _table_labels(path: Path, text: str) -> list[str]:
    """One label per line, or CSV / tab-separated rows with an integer index column."""
    lines = [line for line in text.splitlines() if line.strip()]
    delimiter = _delimiter(lines)
    if delimiter is None:
        return [line.strip() for line in lines]
    rows = [
        [cell.strip() for cell in row]
        for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    ]
    header: Sequence[str] = ()
    if _index_column(rows) is None:
        header, rows = rows[0], rows[1:]
    index_column = _index_column(rows)
    if index_column is None or not rows:
        return [line.strip() for line in lines]
    label_column = _label_column(header, len(rows[0]), index_column)
    indexed: dict[int, str] = {}
    for row in rows:
        index = int(row[index_column])
        if index in indexed:
            raise LabelsError(f"{path}: index {index} appears twice")
        indexed[index] = row[label_column] if label_column < len(row) else ""
    return _in_index_order(path, indexed)


def _delimiter(lines: Sequence[str]) -> str | None:
    """',' or a tab, when every line has one (a label may hold commas, so a single-column file does not)."""
    for delimiter in ("\t", ","):
        if lines and all(delimiter in line for line in lines):
            return delimiter
    return None


def _index_column(rows: Sequence[Sequence[str]]) -> int | None:
    """The first column whose cells are all integers, if the rows have a consistent width."""
    if not rows or len({len(row) for row in rows}) != 1 or len(rows[0]) < 2:
        return None
    for column in range(len(rows[0])):
        if all(_is_int(row[column]) for row in rows):
            return column
    return None


def _label_column(header: Sequence[str], width: int, index_column: int) -> int:
    lowered = [name.strip().lower() for name in header]
    for name in _LABEL_COLUMNS:
        if name in lowered:
            return lowered.index(name)
    return next(column for column in range(width) if column != index_column)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _in_index_order(path: Path, indexed: Mapping[int, str]) -> list[str]:
    """Labels 0..N-1; refused with the numbers when indices are missing or out of range."""
    count = len(indexed)
    missing = sorted(set(range(count)) - set(indexed))
    if missing:
        extra = sorted(set(indexed) - set(range(count)))
        raise LabelsError(
            f"{path}: {count} labels, but their indices do not run 0..{count - 1}: "
            f"missing {_numbers(missing)}, beyond the range {_numbers(extra)}"
        )
    return [indexed[index] for index in range(count)]


def _numbers(values: Sequence[int]) -> str:
    shown = ", ".join(map(str, values[:8]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > 8 else "")
