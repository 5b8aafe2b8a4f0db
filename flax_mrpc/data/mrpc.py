"""MRPC examples from files, in the GLUE / Hugging Face schema.

Every source yields `Example(sentence1, sentence2, label, idx)` per split, with
the standard splits: train 3668, validation 408 (the GLUE dev ids, taken from
the train file), test 1725 (labelled). `idx` is the 0-based row of the pair in
its split, in file order.

Sources, first match wins (`download.find_data_dir`):
  1. `--data-dir` / `$FLAX_MRPC_DATA_DIR`: a folder with Microsoft's original
     files (`msr_paraphrase_train.txt`, `msr_paraphrase_test.txt`,
     `mrpc_dev_ids.tsv`), or GLUE-style `train.tsv` + `dev.tsv` (test then from
     `msr_paraphrase_test.txt` there, or GLUE's unlabelled `test.tsv`);
  2. the download cache (`flax_mrpc.data.download`).
Bad files raise one `DataError` that lists every bad line (file, line, the
problem and the fix): see `flax_mrpc.data.tsv`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from flax_mrpc.data import tsv
from flax_mrpc.data.examples import UNLABELLED, DataError, Example

TRAIN_FILE = "msr_paraphrase_train.txt"
TEST_FILE = "msr_paraphrase_test.txt"
DEV_IDS_FILE = "mrpc_dev_ids.tsv"
HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
GLUE_TEST_HEADER = ("index", "#1 ID", "#2 ID", "#1 String", "#2 String")
# Microsoft's train file writes one apostrophe as U+0012 (pair 61559/61668);
# it is kept as published. Any other control character in a data file is an error.
CORPUS_CONTROLS = ("\x12",)


@dataclasses.dataclass(frozen=True)
class _Row:
  label: int
  id1: str
  id2: str
  sentence1: str
  sentence2: str


def _require_file(path: Path) -> None:
  if not path.is_file():
    raise DataError(f"{path}: file not found. Pass --data-dir (or set FLAX_MRPC_DATA_DIR) "
                    "to a folder with the MRPC files.")


def _read_table(path: Path, header: tuple[str, ...] = HEADER) -> list[_Row]:
  """Reads a tab-separated MRPC table (quotes are literal characters); every
  bad line is reported, in one DataError."""
  _require_file(path)
  problems: list[str] = []
  lines = tsv.rows(path, len(header), (3, 4), problems, CORPUS_CONTROLS)
  first = next(lines, None)
  if first is None and not problems:
    problems.append(f"{path}:1: the file is empty; expected the header "
                    f"{chr(9).join(header)!r}.")
  elif first is not None and first[0] == 1 and tuple(first[1]) != header:
    problems.append(f"{path}:1: expected the header {chr(9).join(header)!r}, "
                    f"found {chr(9).join(first[1])!r}.")
  rows = []
  for n, fields in lines:
    label = UNLABELLED
    if header == HEADER:
      if fields[0] not in ("0", "1"):
        problems.append(f"{path}:{n}: label must be 0 or 1, found {fields[0]!r}.")
        continue
      label = int(fields[0])
    rows.append(_Row(label, fields[1], fields[2], fields[3], fields[4]))
  if problems:
    raise DataError(*tsv.capped(problems))
  return rows


def read_dev_ids(path: Path) -> list[tuple[str, str]]:
  """The (#1 ID, #2 ID) pairs of the validation split, from `mrpc_dev_ids.tsv`."""
  _require_file(path)
  problems: list[str] = []
  ids = [(fields[0], fields[1]) for _, fields in tsv.rows(path, 2, (0, 1), problems)]
  if problems:
    raise DataError(*tsv.capped(problems))
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


def require_folder(data_dir: str | os.PathLike) -> Path:
  """`data_dir` as a Path; a DataError when it is not a folder."""
  d = Path(data_dir)
  if not d.is_dir():
    raise DataError(f"{d}: not a folder. Pass --data-dir (or FLAX_MRPC_DATA_DIR) pointing "
                    "at a folder with the MRPC files.")
  return d


def load_splits(data_dir: str | os.PathLike) -> dict[str, list[Example]]:
  """Reads the three MRPC splits from a folder of original or GLUE-style files.

  Returns {"train": [...], "validation": [...], "test": [...]}.
  """
  d = require_folder(data_dir)
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
