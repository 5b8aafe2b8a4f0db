"""MRPC from this project's reader, tensorflow-datasets or Hugging Face `datasets`.

`load(source, data_dir)` returns the same `{"train", "validation", "test"}`
lists of `Example` from every source: pairs in the original files'
order, `idx` the 0-based row in the split. So a run gives the same result
whichever source it reads.

  local  `mrpc.load_splits` on `--data-dir` / `$FLAX_MRPC_DATA_DIR`, else the
         download cache (the core install; no extra needed).
  tfds   TFDS's `glue/mrpc` builder, written as array_record and read with
         its data source (no TensorFlow needed): `pip install 'flax_mrpc[tfds]'`.
         With a data folder, the builder reads those original files in place
         of its download step; otherwise TFDS downloads them itself. TFDS's
         test split has no labels (every label is -1).
  hf     Hugging Face `datasets`: `pip install 'flax_mrpc[hf]'`. With a data
         folder, its csv builder reads the original files (split by the GLUE
         dev ids, as TFDS and GLUE do); otherwise `nyu-mll/glue`, `mrpc` from
         the hub. Its test split is labelled.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from flax_mrpc.data import download, mrpc
from flax_mrpc.data.examples import SPLITS, DataError, Example

SOURCES = ("local", "tfds", "hf")
_ORIGINAL_FILES = {"train": mrpc.TRAIN_FILE, "test": mrpc.TEST_FILE, "dev_ids": mrpc.DEV_IDS_FILE}


def load(source: str, data_dir: str | os.PathLike | None = None,
         cache_dir: str | os.PathLike | None = None) -> dict[str, list[Example]]:
  """The three MRPC splits from `source` (one of `SOURCES`).

  Args:
    source: "local", "tfds" or "hf".
    data_dir: a folder of Microsoft's original MRPC files; None: the
      `$FLAX_MRPC_DATA_DIR` folder if set, else each source's own download.
    cache_dir: where tfds / hf write their prepared copy (their default
      folders when None); unused by "local".
  """
  if source == "local":
    return mrpc.load_splits(download.find_data_dir(data_dir))
  folder = mrpc.given_data_dir(data_dir)
  files = _original_files(folder) if folder else None
  if source == "tfds":
    return _load_tfds(files, cache_dir)
  if source == "hf":
    return _load_hf(files, cache_dir)
  raise ValueError(f"unknown data source {source!r}; choose one of {SOURCES}.")


def _original_files(folder: Path) -> dict[str, str]:
  files = {key: folder / name for key, name in _ORIGINAL_FILES.items()}
  missing = [str(path) for path in files.values() if not path.is_file()]
  if missing:
    raise DataError(
        f"the tfds and hf sources read Microsoft's original MRPC files; missing: "
        f"{', '.join(missing)}. Point --data-dir at a folder with them, or use --data-source local.")
  return {key: str(path) for key, path in files.items()}


def _missing_extra(extra: str, package: str) -> DataError:
  return DataError(f"--data-source {extra} needs {package}: pip install 'flax_mrpc[{extra}]' "
                        "(or use --data-source local).")


def _examples(records) -> list[Example]:
  """Examples in the order of each record's row in the original file."""
  rows = sorted(records, key=lambda r: r[3])
  return [Example(s1, s2, label, i) for i, (s1, s2, label, _) in enumerate(rows)]


def _load_tfds(files: dict[str, str] | None, cache_dir) -> dict[str, list[Example]]:
  try:
    import tensorflow_datasets as tfds
    import tensorflow_datasets.text.glue  # noqa: F401  (registers glue without TensorFlow)
  except ImportError:
    raise _missing_extra("tfds", "tensorflow-datasets") from None
  builder = tfds.builder("glue/mrpc", data_dir=cache_dir, file_format="array_record")
  if files is not None:
    split_generators = type(builder)._split_generators
    builder._split_generators = lambda dl_manager: split_generators(
        builder, _LocalDownloads(dl_manager, files))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  splits = builder.as_data_source()
  return {
      name: _examples(
          (r["sentence1"].decode(), r["sentence2"].decode(), int(r["label"]), int(r["idx"]))
          for r in splits[name])
      for name in SPLITS
  }


class _LocalDownloads:
  """A TFDS download manager whose `download` returns local files: TFDS's
  glue builder asks it for the three original MRPC files by key."""

  def __init__(self, manager, files: dict[str, str]):
    self._manager, self._files = manager, files

  def download(self, urls: dict[str, str]) -> dict[str, str]:
    return {key: self._files[key] for key in urls}

  def __getattr__(self, name):
    return getattr(self._manager, name)


def _load_hf(files: dict[str, str] | None, cache_dir) -> dict[str, list[Example]]:
  try:
    import datasets
  except ImportError:
    raise _missing_extra("hf", "datasets") from None
  if files is None:
    glue = datasets.load_dataset("nyu-mll/glue", "mrpc", cache_dir=cache_dir)
    return {
        name: _examples((r["sentence1"], r["sentence2"], r["label"], r["idx"]) for r in glue[name])
        for name in SPLITS
    }
  columns = datasets.Features({name: datasets.Value("string") for name in mrpc.HEADER})
  tables = datasets.load_dataset(
      "csv", data_files={"train": files["train"], "test": files["test"]}, cache_dir=cache_dir,
      delimiter="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig", keep_default_na=False,
      features=columns)
  dev_ids = set(mrpc.read_dev_ids(Path(files["dev_ids"])))
  records = {name: [] for name in SPLITS}
  for table in ("train", "test"):
    for row, r in enumerate(tables[table]):
      pair = (r["#1 ID"], r["#2 ID"])
      name = table if table == "test" or pair not in dev_ids else "validation"
      records[name].append((r["#1 String"], r["#2 String"], int(r["Quality"]), row))
  return {name: _examples(rows) for name, rows in records.items()}
