"""The user's own labelled text: a CSV, TSV or JSON-lines file with text (or text pair) and label columns.

Typical use: infer the classes from the training file, then hold the test file to them::

    train = load_text_file("train.csv", text_column="review", label_column="stars")
    test = load_text_file("test.csv", text_column="review", label_column="stars",
                          label_names=train.label_names)

Every problem with the file raises :class:`DataFileError` (a ``ValueError``) whose message names the
file, the line and the column concerned, so the CLI can print it as is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

from .dataset import TextDataset

__all__ = ["DataFileError", "load_text_file"]

FileFormat = Literal["auto", "csv", "tsv", "jsonl"]
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class DataFileError(ValueError):
    """A user data file is missing, empty or malformed; the message names the file, line and column."""


def _rows_csv(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if reader.fieldnames is None:
            raise DataFileError(f"{path}: the file is empty (expected a header row, then one example per row)")
        columns = list(reader.fieldnames)
        for row in reader:
            yield reader.line_num, row, columns


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    """(line number, object, its keys) of each non-blank line of a JSON-lines file.

    Raises:
        DataFileError naming the file and line: a line that is not JSON, or not a JSON object.
    """
    with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{path} line {line_no}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataFileError(f"{path} line {line_no}: expected a JSON object, got {type(row).__name__}")
            yield line_no, row, list(row)


def _label_key(value: Any) -> str:
    """Labels are compared as strings, so JSON 1, 1.0 and CSV "1" are one class (true/True likewise)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sorted_labels(keys: set[str]) -> list[str]:
    try:
        return sorted(keys, key=int)
    except ValueError:
        return sorted(keys)


def load_text_file(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    label_names: Sequence[str] | None = None,
    file_format: FileFormat = "auto",
    name: str | None = None,
) -> TextDataset:
    """Read a labelled text file into a :class:`TextDataset`.

    Args:
        path: a ``.csv``, ``.tsv`` or ``.jsonl`` file (UTF-8, header row for CSV/TSV, one JSON
            object per line for JSONL).
        text_column: column/key holding the text.
        label_column: column/key holding the label (any string or number).
        text_pair_column: column/key holding the second text of a sentence-pair task, or None.
        label_names: the classes a model was trained on (e.g. ``train.label_names``). When given,
            a label not among them is an error; when None they are inferred from the file (sorted,
            numerically if all labels are integers).
        file_format: ``"auto"`` picks by suffix.
        name: dataset name for logs (default: the file stem).

    Raises:
        DataFileError: bad path, unknown format, empty file, missing column/key, empty value,
            invalid JSON, undecodable text, or labels not in ``label_names``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"path: no such file: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    fmt = _SUFFIXES.get(path.suffix.lower()) if file_format == "auto" else file_format
    if fmt not in ("csv", "tsv", "jsonl"):
        raise DataFileError(
            f"{path}: cannot tell the format from suffix {path.suffix!r}; use .csv, .tsv or .jsonl "
            f"or pass file_format ('csv', 'tsv', 'jsonl')"
        )
    rows = jsonl_rows(path) if fmt == "jsonl" else _rows_csv(path, "," if fmt == "csv" else "\t")
    wanted = {"text_column": text_column, "label_column": label_column}
    if text_pair_column is not None:
        wanted["text_pair_column"] = text_pair_column

    values: dict[str, list[str]] = {arg: [] for arg in wanted}
    try:
        for line_no, row, columns in rows:
            for arg, column in wanted.items():
                value = row.get(column)
                if column not in row:
                    where = "column" if fmt != "jsonl" else f"key on line {line_no}"
                    raise DataFileError(
                        f"{arg}: {where} {column!r} not found in {path}; available: {', '.join(columns) or '(none)'}"
                    )
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise DataFileError(f"{path} line {line_no}: empty value in {arg.replace('_', ' ')} {column!r}")
                values[arg].append(_label_key(value) if arg == "label_column" else str(value))
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start}); save it as UTF-8") from None

    if not values["text_column"]:
        raise DataFileError(f"{path}: the file has no examples (it is empty or holds only a header)")
    raw_labels = values["label_column"]
    if label_names is None:
        names = _sorted_labels(set(raw_labels))
    else:
        names = [_label_key(n) for n in label_names]
        unknown = sorted(set(raw_labels) - set(names))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise DataFileError(
                f"label_column: {path} has {len(unknown)} label(s) not seen in training: {shown}; "
                f"known labels: {', '.join(repr(n) for n in names)}"
            )
    index = {n: k for k, n in enumerate(names)}
    return TextDataset(
        texts=values["text_column"],
        labels=[index[y] for y in raw_labels],
        label_names=names,
        text_pairs=values.get("text_pair_column"),
        name=name or path.stem,
    )
