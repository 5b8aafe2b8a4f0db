"""MRPC examples from files, in the GLUE / Hugging Face schema.

Every source yields `Example(sentence1, sentence2, label, idx)` per split, with
the standard splits: train 3668, validation 408 (the GLUE dev ids, taken from
the train file), test 1725 (labelled). `idx` is the 0-based row of the pair in
its split, in file order.

Sources, first match wins (`find_data_dir`):
  1. `--data-dir` / `$FLAX_MRPC_DATA_DIR`: a folder with Microsoft's original
     files (`msr_paraphrase_train.txt`, `msr_paraphrase_test.txt`,
     `mrpc_dev_ids.tsv`), or GLUE-style `train.tsv` + `dev.tsv` (test then from
     `msr_paraphrase_test.txt` there, or GLUE's unlabelled `test.tsv`);
  2. the download cache (`flax_mrpc.download`).
Bad files raise `DataError` naming the file, the line and the fix.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

TRAIN_FILE = "msr_paraphrase_train.txt"
TEST_FILE = "msr_paraphrase_test.txt"
DEV_IDS_FILE = "mrpc_dev_ids.tsv"
HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
GLUE_TEST_HEADER = ("index", "#1 ID", "#2 ID", "#1 String", "#2 String")
SPLITS = ("train", "validation", "test")
UNLABELLED = -1


class DataError(ValueError):
  """A data file is missing or malformed; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class Example:
  sentence1: str
  sentence2: str
  label: int  # 1 paraphrase, 0 not, UNLABELLED (-1) when the split has no labels
  idx: int


@dataclasses.dataclass(frozen=True)
class _Row:
  label: int
  id1: str
  id2: str
  sentence1: str
  sentence2: str


def _read_lines(path: Path) -> list[str]:
  if not path.is_file():
    raise DataError(f"{path}: file not found. Pass --data-dir (or set FLAX_MRPC_DATA_DIR) "
                    "to a folder with the MRPC files.")
  try:
    text = path.read_text(encoding="utf-8-sig")
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 text ({e}). Use the original MRPC files.") from None
  return text.splitlines()


def _read_table(path: Path, header: tuple[str, ...] = HEADER) -> list[_Row]:
  """Reads a tab-separated MRPC table (quotes are literal characters)."""
  lines = _read_lines(path)
  if not lines or tuple(lines[0].split("\t")) != header:
    found = lines[0] if lines else "an empty file"
    raise DataError(f"{path}:1: expected the header {chr(9).join(header)!r}, found {found!r}.")
  labelled = header == HEADER
  rows = []
  for n, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    fields = line.split("\t")
    if len(fields) != len(header):
      raise DataError(f"{path}:{n}: expected {len(header)} tab-separated fields, "
                      f"found {len(fields)}.")
    label = UNLABELLED
    if labelled:
      if fields[0] not in ("0", "1"):
        raise DataError(f"{path}:{n}: label must be 0 or 1, found {fields[0]!r}.")
      label = int(fields[0])
    rows.append(_Row(label, fields[1], fields[2], fields[3], fields[4]))
  return rows


def read_dev_ids(path: Path) -> list[tuple[str, str]]:
  """The (#1 ID, #2 ID) pairs of the validation split, from `mrpc_dev_ids.tsv`."""
  ids = []
  for n, line in enumerate(_read_lines(path), start=1):
    if not line.strip():
      continue
    fields = line.split("\t")
    if len(fields) != 2:
      raise DataError(f"{path}:{n}: expected '#1 ID<TAB>#2 ID', found {line!r}.")
    ids.append((fields[0], fields[1]))
  return ids


def _examples(rows: list[_Row]) -> list[Example]:
  return [Example(r.sentence1, r.sentence2, r.label, i) for i, r in enumerate(rows)]


def _split_by_dev_ids(rows: list[_Row], dev_ids: list[tuple[str, str]], ids_path: Path,
                      train_path: Path) -> tuple[list[_Row], list[_Row]]:
  train_ids = {(r.id1, r.id2) for r in rows}
  missing = [pair for pair in dev_ids if pair not in train_ids]
  if missing:
    line = dev_ids.index(missing[0]) + 1
    raise DataError(f"{ids_path}:{line}: dev id pair {missing[0]} is absent from {train_path} "
                    f"({len(missing)} such pairs). The two files do not belong together.")
  dev = set(dev_ids)
  return [r for r in rows if (r.id1, r.id2) not in dev], [r for r in rows if (r.id1, r.id2) in dev]


def load_splits(data_dir: str | os.PathLike) -> dict[str, list[Example]]:
  """Reads the three MRPC splits from a folder of original or GLUE-style files.

  Returns {"train": [...], "validation": [...], "test": [...]}.
  """
  d = Path(data_dir)
  if not d.is_dir():
    raise DataError(f"{d}: not a folder. Pass --data-dir (or FLAX_MRPC_DATA_DIR) pointing "
                    "at a folder with the MRPC files.")
  if (d / "train.tsv").is_file():
    train, validation = _read_table(d / "train.tsv"), _read_table(d / "dev.tsv")
  else:
    rows = _read_table(d / TRAIN_FILE)
    train, validation = _split_by_dev_ids(rows, read_dev_ids(d / DEV_IDS_FILE),
                                          d / DEV_IDS_FILE, d / TRAIN_FILE)
  if (d / TEST_FILE).is_file() or not (d / "test.tsv").is_file():
    test = _read_table(d / TEST_FILE)
  else:
    test = _read_table(d / "test.tsv", GLUE_TEST_HEADER)
  return {"train": _examples(train), "validation": _examples(validation), "test": _examples(test)}


def given_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
  """`data_dir`, else `$FLAX_MRPC_DATA_DIR`, else None."""
  chosen = data_dir or os.environ.get("FLAX_MRPC_DATA_DIR")
  return Path(chosen).expanduser() if chosen else None


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
  """The folder to read: `given_data_dir(data_dir)`, else the download cache
  (downloading the files into it if needed)."""
  chosen = given_data_dir(data_dir)
  if chosen:
    return chosen
  from flax_mrpc import download

  return download.ensure_downloaded()
