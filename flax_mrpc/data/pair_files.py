"""Sentence pairs from a file with a header: TSV, CSV or JSONL (by extension).

`read_rows(path, columns)` returns one `Row` (line number, sentence1,
sentence2, raw label or None) per pair. The three `columns` name the two
sentences and the label; a file without the label column is unlabelled
(a test split). TSV lines are split on tabs with quotes kept literally (as
GLUE's files are); CSV follows RFC 4180 (quoted fields may hold commas, tabs
and line breaks); JSONL holds one object per line. Every line is checked as
`tsv.rows` checks a TSV line, and every problem is reported in one
`DataError`, each as `FILE:LINE: problem`: nothing is dropped.
`labels(path, columns)` reads the label column alone, unchecked: the quick
pass that learns a task's classes before its pairs are read.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

from flax_mrpc.data import tsv
from flax_mrpc.data.examples import DataError

FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclasses.dataclass(frozen=True)
class Row:
  line: int
  sentence1: str
  sentence2: str
  label: str | None  # as written; None when the file has no label column


def file_format(path: Path) -> str:
  """"tsv", "csv" or "jsonl", from the file's extension."""
  try:
    return FORMATS[path.suffix.lower()]
  except KeyError:
    raise DataError(f"{path}: unknown file type {path.suffix!r}; name it .tsv, .csv or "
                    ".jsonl (one JSON object per line).") from None


def _header_columns(path: Path, header: Sequence[str], columns: Sequence[str],
                    line: int) -> tuple[list[int], bool]:
  """Indices of the two sentence columns and of the label (when present)."""
  missing = [name for name in columns[:2] if name not in header]
  if missing:
    raise DataError(f"{path}:{line}: no column {', '.join(map(repr, missing))} in the header "
                    f"{list(header)}; name the columns with --columns SENTENCE1,SENTENCE2,LABEL.")
  labelled = columns[2] in header
  return [list(header).index(name) for name in columns if name in header], labelled


def _tsv_header(f: BinaryIO) -> list[str]:
  """The tab-separated names on the first line of the binary file `f` (a
  byte order mark dropped)."""
  first = f.readline().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
  return first.rstrip("\r\n").split("\t")


def _tsv_rows(path: Path, columns: Sequence[str], problems: list[str]) -> Iterator[Row]:
  with open(path, "rb") as f:
    header = _tsv_header(f)
  index, labelled = _header_columns(path, header, columns, 1)
  for number, fields in tsv.rows(path, len(header), index[:2], problems):
    if number > 1:
      yield Row(number, fields[index[0]], fields[index[1]],
                fields[index[2]] if labelled else None)


def _not_utf8(path: Path) -> DataError:
  """The error for a file that is not UTF-8, naming the first bad line."""
  raw = path.read_bytes()
  try:
    raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    return DataError(f"{path}:{line}: byte 0x{raw[e.start]:02x} is not UTF-8 text; save the "
                     "file as UTF-8")
  return DataError(f"{path}: not UTF-8 text; save the file as UTF-8")


def _text_lines(path: Path) -> Iterator[str]:
  """The file's lines, decoded as they are read (a byte order mark dropped)."""
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      yield from f
  except UnicodeDecodeError:
    raise _not_utf8(path) from None


def _checked(path: Path, line: int, sentences: Sequence[object], label: object,
             labelled: bool, problems: list[str]) -> Row | None:
  """A Row, or None after appending what is wrong with the line to `problems`."""
  for i, text in enumerate(sentences, start=1):
    problem = (f"sentence {i} is not text" if not isinstance(text, str)
               else tsv.sentence_problem(text))
    if problem:
      problems.append(f"{path}:{line}: {problem}")
      return None
  if labelled and (label is None or isinstance(label, (dict, list, bool))):
    problems.append(f"{path}:{line}: the label is missing or not a string or number")
    return None
  return Row(line, sentences[0], sentences[1], str(label) if labelled else None)


def _csv_rows(path: Path, columns: Sequence[str], problems: list[str]) -> Iterator[Row]:
  reader = csv.reader(_text_lines(path))
  header = next(reader, [])
  index, labelled = _header_columns(path, header, columns, 1)
  start = reader.line_num + 1
  for fields in reader:
    line, start = start, reader.line_num + 1
    if not fields:
      continue
    if len(fields) != len(header):
      problems.append(f"{path}:{line}: expected {len(header)} comma-separated fields, found "
                      f"{len(fields)}; quote fields that hold commas")
      continue
    row = _checked(path, line, [fields[index[0]], fields[index[1]]],
                   fields[index[2]] if labelled else None, labelled, problems)
    if row:
      yield row


def _jsonl_rows(path: Path, columns: Sequence[str], problems: list[str]) -> Iterator[Row]:
  labelled = None  # decided by the first object: every line must then agree
  for line, text in enumerate(_text_lines(path), start=1):
    if not text.strip():
      continue
    try:
      record = json.loads(text)
    except json.JSONDecodeError as e:
      problems.append(f"{path}:{line}: not a JSON object ({e.msg} at column {e.colno})")
      continue
    if not isinstance(record, dict) or any(name not in record for name in columns[:2]):
      problems.append(f"{path}:{line}: expected an object with keys {list(columns[:2])} "
                      f"(and {columns[2]!r}); name them with --columns")
      continue
    if labelled is None:
      labelled = columns[2] in record
    row = _checked(path, line, [record[columns[0]], record[columns[1]]], record.get(columns[2]),
                   labelled, problems)
    if row:
      yield row


def require_file(path: str | Path, columns: Sequence[str]) -> Path:
  """`path` as a Path; a DataError naming the file and the columns it
  needs when it does not exist."""
  path = Path(path)
  if not path.is_file():
    raise DataError(f"{path}: file not found. Pass a TSV, CSV or JSONL file with the columns "
                    f"{', '.join(columns)}.")
  return path


def iter_rows(path: str | Path, columns: Sequence[str], problems: list[str]) -> Iterator[Row]:
  """Streams the good pairs of `path`, whose header (or JSON keys) holds
  `columns` (sentence1, sentence2, label names), appending one
  `FILE:LINE: problem` to `problems` per bad line; a missing file, an
  unknown type, a bad header or a file with no pairs is a DataError."""
  path = require_file(path, columns)
  reader = {"tsv": _tsv_rows, "csv": _csv_rows, "jsonl": _jsonl_rows}[file_format(path)]
  count = 0
  for row in reader(path, columns, problems):
    count += 1
    yield row
  if not count and not problems:
    raise DataError(f"{path}: no pairs. Write a header and one pair per line.")


def _tsv_labels(path: Path, columns: Sequence[str]) -> set[str | None]:
  with open(path, "rb") as f:
    header = _tsv_header(f)
    index, labelled = _header_columns(path, header, columns, 1)
    if not labelled:
      return {None}
    fields = (line.rstrip(b"\r\n").split(b"\t") for line in f)
    found = {row[index[2]] for row in fields if len(row) == len(header)}
  return {label.decode("utf-8", "replace") for label in found}


def _csv_labels(path: Path, columns: Sequence[str]) -> set[str | None]:
  reader = csv.reader(_text_lines(path))
  header = next(reader, [])
  index, labelled = _header_columns(path, header, columns, 1)
  if not labelled:
    return {None}
  return {fields[index[2]] for fields in reader if len(fields) == len(header)}


def _jsonl_labels(path: Path, columns: Sequence[str]) -> set[str | None]:
  return {row.label for row in _jsonl_rows(path, columns, problems=[])}


def labels(path: str | Path, columns: Sequence[str]) -> set[str | None]:
  """The labels `path`'s pairs carry, as written; {None} for a file
  without the label column (`columns` as for `iter_rows`). Only the label
  column is read (JSONL: each object): lines of the wrong shape are passed
  over and nothing else is checked, which `iter_rows` does when the pairs
  are read. A missing file, an unknown type or a bad header is a DataError."""
  path = require_file(path, columns)
  reader = {"tsv": _tsv_labels, "csv": _csv_labels, "jsonl": _jsonl_labels}[file_format(path)]
  return reader(path, columns)


def read_rows(path: str | Path, columns: Sequence[str]) -> list[Row]:
  """Every pair of `path` (see `iter_rows`). Raises one DataError listing
  every bad line, or naming the missing file."""
  problems: list[str] = []
  rows = list(iter_rows(path, columns, problems))
  if problems:
    raise DataError(*tsv.capped(problems))
  return rows
