"""Sentence-pair tasks: GLUE's pair tasks and the user's own files.

A task is a `config.TaskConfig` (labels, metric, symmetric) plus where its
splits come from. `glue_task(name)` describes a GLUE task; `files_task`
one of the user's files, its classes read from the train file. `load`
returns a task's splits as `Example` lists, labels as class indices (or
float scores for regression), in file order:

  mrpc       `sources.load` (MRPC's own files, download, tfds, hf).
  GLUE       the GLUE TSV files in `--data-dir` (`source` local), Hugging
             Face `datasets` (`nyu-mll/glue`, config = task; `hf`) or TFDS
             (`glue/<task>`; `tfds`): the same examples in the same order.
  files      `--train-file`, `--validation-file`, `--test-file`: TSV, CSV or
             JSONL with a header (`pair_files`).

MNLI has two validation and two test splits: "validation" and "test" are
the matched ones (validation picks the epoch), "validation_mismatched" and
"test_mismatched" the others. GLUE's test splits have no labels.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

from flax_mrpc.config import TaskConfig
from flax_mrpc.data import cache, download, mrpc, pair_files, sources, tsv
from flax_mrpc.data.examples import UNLABELLED, DataError, Example

UNSCORED = math.nan  # the label of an unlabelled regression pair
READER_VERSION = 1  # bump when reading the same file gives other Examples


@dataclasses.dataclass(frozen=True)
class GlueLayout:
  """Where a GLUE task's examples are: its TSV files' columns (sentence1,
  sentence2, label), its split files, the Hugging Face / TFDS feature names
  of the two sentences, and the file GLUE's server takes for each test split."""

  columns: tuple[str, str, str]
  files: dict[str, str]
  hub_columns: tuple[str, str]
  submission: dict[str, str]


def _splits(prefix: str = "") -> dict[str, str]:
  return {"train": "train.tsv", "validation": f"dev{prefix}.tsv", "test": f"test{prefix}.tsv"}


_PAIR = ("sentence1", "sentence2")
GLUE_TASKS: dict[str, tuple[TaskConfig, GlueLayout]] = {
    "mrpc": (TaskConfig("mrpc"),
             GlueLayout(("#1 String", "#2 String", "Quality"), _splits(), _PAIR,
                        {"test": "MRPC.tsv"})),
    "qqp": (TaskConfig("qqp", ("0", "1"), "accuracy_f1", symmetric=True),
            GlueLayout(("question1", "question2", "is_duplicate"), _splits(),
                       ("question1", "question2"), {"test": "QQP.tsv"})),
    "rte": (TaskConfig("rte", ("entailment", "not_entailment"), "accuracy", symmetric=False),
            GlueLayout(_PAIR + ("label",), _splits(), _PAIR, {"test": "RTE.tsv"})),
    "qnli": (TaskConfig("qnli", ("entailment", "not_entailment"), "accuracy", symmetric=False),
             GlueLayout(("question", "sentence", "label"), _splits(), ("question", "sentence"),
                        {"test": "QNLI.tsv"})),
    "wnli": (TaskConfig("wnli", ("0", "1"), "accuracy", symmetric=False),
             GlueLayout(_PAIR + ("label",), _splits(), _PAIR, {"test": "WNLI.tsv"})),
    "mnli": (TaskConfig("mnli", ("entailment", "neutral", "contradiction"), "accuracy",
                        symmetric=False),
             GlueLayout(_PAIR + ("gold_label",),
                        _splits("_matched") | {"validation_mismatched": "dev_mismatched.tsv",
                                               "test_mismatched": "test_mismatched.tsv"},
                        ("premise", "hypothesis"),
                        {"test": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"})),
    "stsb": (TaskConfig("stsb", (), "correlation", symmetric=True),
             GlueLayout(_PAIR + ("score",), _splits(), _PAIR, {"test": "STS-B.tsv"})),
}
TASKS = tuple(GLUE_TASKS) + ("files",)
# Our split names -> the Hugging Face / TFDS ones, where they differ (MNLI).
_HUB_SPLITS = {"validation": "validation_matched", "test": "test_matched"}


def glue_task(name: str) -> TaskConfig:
  """The TaskConfig of a GLUE pair task (one of `GLUE_TASKS`)."""
  try:
    return GLUE_TASKS[name][0]
  except KeyError:
    raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)} (files: "
                     "--train-file and --validation-file).") from None


def glue_layout(task: TaskConfig) -> GlueLayout:
  return GLUE_TASKS[task.task][1]


def _sorted_labels(names: set[str]) -> tuple[str, ...]:
  """Class names in the head's order: numerically if all are integers, else by text."""
  if all(name.lstrip("-").isdigit() for name in names):
    return tuple(sorted(names, key=int))
  return tuple(sorted(names))


def files_task(train_file: str, validation_file: str, test_file: str | None = None,
               columns: Sequence[str] = ("sentence1", "sentence2", "label"),
               regression: bool = False, symmetric: bool = False,
               cache_folder: Path | None = None) -> TaskConfig:
  """The task of the user's files: the train file's classes (sorted; two make
  a binary task whose positive class is the second) and GLUE's metrics for
  its kind (accuracy and F1, accuracy, or correlation for `regression`).
  A train file with one class only is a DataError. With `cache_folder`
  (the encoded-split cache), the labels the train file's label column
  holds are kept there, by the file's digest, for the next run. Its lines
  are checked when its pairs are read (`split_sources`)."""
  train_path = pair_files.require_file(train_file, columns)
  key = _fingerprint("labels", cache.file_digest(train_path), train_path.suffix.lower(),
                     list(columns))
  found = cache.remembered(cache_folder, key, lambda: _label_names(train_path, columns))
  names = set(found["names"])
  if found["unlabelled"]:
    raise DataError(f"{train_file}:1: the train file needs a label column {columns[2]!r}; "
                    "name it with --columns SENTENCE1,SENTENCE2,LABEL.")
  labels = () if regression else _sorted_labels(names)
  if len(labels) == 1:
    raise DataError(f"{train_file}: every pair has the label {labels[0]!r}; a classifier needs "
                    "two classes or more (numeric scores: pass --regression).")
  metric = ("correlation" if regression else "accuracy_f1" if len(labels) == 2 else "accuracy")
  return TaskConfig("files", labels, metric, symmetric, str(train_file), str(validation_file),
                    None if test_file is None else str(test_file), tuple(columns))


def _label_names(path: Path, columns: Sequence[str]) -> dict:
  """{"names": the labels the file's pairs carry, "unlabelled": whether it
  has no label column}, from a read of its label column alone."""
  names = pair_files.labels(path, columns)
  return {"names": sorted(names - {None}), "unlabelled": None in names}


def _label_value(task: TaskConfig, text: str | None, where: str) -> tuple[int | float, str | None]:
  """(the label's class index or score, None) or (a placeholder, the problem)."""
  if text is None:
    return (UNSCORED if task.outputs == "regression" else UNLABELLED), None
  if task.outputs == "regression":
    try:
      value = float(text)
    except ValueError:
      return UNSCORED, f"{where}: the label {text!r} is not a number (a regression score)"
    if not math.isfinite(value):
      return UNSCORED, f"{where}: the label {text!r} is not a finite number"
    return value, None
  if text not in task.labels:
    return UNLABELLED, (f"{where}: the label {text!r} is not one of the train split's "
                        f"labels {list(task.labels)}")
  return task.labels.index(text), None


def _stream_examples(task: TaskConfig, path: Path, columns: Sequence[str],
                     labelled: bool) -> Iterator[Example]:
  """The pairs of one split's file as Examples, streamed; after the last
  good one, one DataError lists every bad line."""
  problems: list[str] = []
  idx = 0
  for row in pair_files.iter_rows(path, columns, problems):
    if labelled and row.label is None:
      raise DataError(f"{path}:1: no label column {task.columns[2]!r}; the {path.name} split "
                      "must be labelled")
    label, problem = _label_value(task, row.label, f"{path}:{row.line}")
    if problem:
      problems.append(problem)
    yield Example(row.sentence1, row.sentence2, label, idx)
    idx += 1
  if problems:
    raise DataError(*tsv.capped(problems))


@dataclasses.dataclass(frozen=True)
class SplitSource:
  """One split of a task, before it is read.

  Attributes:
    fingerprint: a hash of everything the split's Examples depend on (its
      file's bytes, the columns, the label names, the reader), the key the
      encoded-split cache (`data.cache`) files its encodings under.
    read: a fresh iterator over the split's Examples, in order; a bad file
      raises one DataError listing every bad line after the last good pair.
  """

  fingerprint: str
  read: Callable[[], Iterator[Example]]


def _fingerprint(*parts: object) -> str:
  return hashlib.sha256(json.dumps([READER_VERSION, *parts], default=str).encode()).hexdigest()


def _file_split(task: TaskConfig, path: Path, columns: Sequence[str],
                labelled: bool) -> SplitSource:
  pair_files.require_file(path, columns)
  print_ = _fingerprint(cache.file_digest(path), pair_files.file_format(path), list(columns),
                        task.labels, task.outputs, labelled)
  return SplitSource(print_, lambda: _stream_examples(task, path, columns, labelled))


def _glue_folder(task: TaskConfig, data_dir: str | os.PathLike | None) -> dict[str, SplitSource]:
  if data_dir is None:
    raise DataError(f"task {task.task} reads the GLUE TSV files: pass --data-dir FOLDER with "
                    f"{', '.join(glue_layout(task).files.values())} (from GLUE's "
                    f"{task.task.upper()} download), or --data-source hf or tfds.")
  layout = glue_layout(task)
  return {split: _file_split(task, Path(data_dir) / name, layout.columns,
                             labelled=not split.startswith("test"))
          for split, name in layout.files.items()}


def _hub_examples(task: TaskConfig, records, columns: tuple[str, str]) -> list[Example]:
  """Examples of Hugging Face / TFDS records (label -1 on test), by `idx`."""
  rows = sorted(records, key=lambda r: int(r["idx"]))
  examples = []
  for i, r in enumerate(rows):
    text = [r[c].decode() if isinstance(r[c], bytes) else r[c] for c in columns]
    label = float(r["label"]) if task.outputs == "regression" else int(r["label"])
    if label == -1 and task.outputs != "regression":
      label = UNLABELLED
    examples.append(Example(text[0], text[1], label, i))
  return examples


def _hub_split(split: str, task: TaskConfig) -> str:
  return _HUB_SPLITS.get(split, split) if task.task == "mnli" else split


def _glue_hub(task: TaskConfig, source: str, cache_dir) -> dict[str, list[Example]]:
  layout = glue_layout(task)
  if source == "hf":
    try:
      import datasets
    except ImportError:
      raise DataError("--data-source hf needs datasets: pip install 'flax_mrpc[hf]'.") from None
    glue = datasets.load_dataset("nyu-mll/glue", task.task, cache_dir=cache_dir)
    tables = {split: glue[_hub_split(split, task)] for split in layout.files}
  else:
    try:
      import tensorflow_datasets as tfds
      import tensorflow_datasets.text.glue  # noqa: F401  (registers glue without TensorFlow)
    except ImportError:
      raise DataError("--data-source tfds needs tensorflow-datasets: "
                      "pip install 'flax_mrpc[tfds]'.") from None
    builder = tfds.builder(f"glue/{task.task}", data_dir=cache_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    splits = builder.as_data_source()
    tables = {split: splits[_hub_split(split, task)] for split in layout.files}
  return {split: _hub_examples(task, table, layout.hub_columns) for split, table in tables.items()}


def _files(task: TaskConfig) -> dict[str, SplitSource]:
  files = {"train": task.train_file, "validation": task.validation_file, "test": task.test_file}
  return {split: _file_split(task, Path(path), task.columns, labelled=split != "test")
          for split, path in files.items() if path is not None}


def _loaded_at_once(task: TaskConfig, load_all: Callable[[], dict[str, list[Example]]],
                    *origin: object) -> dict[str, SplitSource]:
  """SplitSources of splits that a loader reads together (MRPC, the hub
  sources), read once when the first of them is; `origin` names what they
  come from (file digests, or the source and its version)."""
  loaded = functools.cache(load_all)
  return {split: SplitSource(_fingerprint(task.task, split, *origin),
                             functools.partial(lambda s: iter(loaded()[s]), split))
          for split in glue_layout(task).files}


def _folder_digests(folder: Path) -> list[tuple[str, str]]:
  """The digests of a data folder's text files (a DataError if it is no folder)."""
  files = sorted(mrpc.require_folder(folder).iterdir())
  return [(path.name, cache.file_digest(path)) for path in files
          if path.is_file() and path.suffix in (".txt", ".tsv")]


def split_sources(task: TaskConfig, source: str = "local",
                  data_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None) -> dict[str, SplitSource]:
  """The splits of `task`, unread: "train", "validation", usually "test",
  and MNLI's mismatched ones; see the module docstring for `source` and
  `data_dir`. Files are only hashed here; a missing one is a DataError."""
  if task.task == "files":
    return _files(task)
  if source not in sources.SOURCES:
    raise ValueError(f"unknown data source {source!r}; choose one of {sources.SOURCES}.")
  if task.task == "mrpc":
    folder = (download.find_data_dir(data_dir) if source == "local"
              else mrpc.given_data_dir(data_dir))
    return _loaded_at_once(task, lambda: sources.load(source, data_dir, cache_dir), source,
                           _folder_digests(folder) if folder else _package_version(source))
  if source == "local":
    return _glue_folder(task, data_dir)
  return _loaded_at_once(task, lambda: _glue_hub(task, source, cache_dir), source,
                         _package_version(source))


def _package_version(source: str) -> str:
  """The version of the package a hub source reads with."""
  package = {"hf": "datasets", "tfds": "tensorflow-datasets"}[source]
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "absent"


def load(task: TaskConfig, source: str = "local", data_dir: str | os.PathLike | None = None,
         cache_dir: str | os.PathLike | None = None) -> dict[str, list[Example]]:
  """The splits of `split_sources`, read: Example lists in file order."""
  return {split: list(s.read())
          for split, s in split_sources(task, source, data_dir, cache_dir).items()}
