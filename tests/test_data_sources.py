"""Every data source yields the local reader's MRPC splits (the real files)."""

import collections
import sys

import pytest

from flax_mrpc import train
from flax_mrpc.config import get_preset
from flax_mrpc.data import sources
from flax_mrpc.data.examples import UNLABELLED, DataError

_EXTRAS = {"tfds": "tensorflow_datasets", "hf": "datasets"}


@pytest.fixture(scope="module", params=sorted(_EXTRAS))
def source_splits(request, mrpc_dir, tmp_path_factory):
  pytest.importorskip(_EXTRAS[request.param], reason=f"pip install 'flax_mrpc[{request.param}]'")
  cache = tmp_path_factory.mktemp(request.param)
  return request.param, sources.load(request.param, mrpc_dir, cache_dir=cache)


def _pairs(examples, with_labels=True):
  return collections.Counter(
      (e.sentence1, e.sentence2) + ((e.label,) if with_labels else ()) for e in examples)


def test_same_examples_as_the_local_reader(source_splits, splits):
  source, loaded = source_splits
  assert {name: len(v) for name, v in loaded.items()} == {
      "train": 3668, "validation": 408, "test": 1725}
  for name in ("train", "validation"):
    assert _pairs(loaded[name]) == _pairs(splits[name])
    assert loaded[name] == splits[name]  # same order and idx: both follow the original rows
  if source == "tfds":  # TFDS publishes no test labels
    assert _pairs(loaded["test"], False) == _pairs(splits["test"], False)
    assert {e.label for e in loaded["test"]} == {UNLABELLED}
  else:
    assert loaded["test"] == splits["test"]


@pytest.fixture(scope="module")
def short_run(mrpc_dir, tmp_path_factory):
  """results.json of a one-epoch tiny run reading `source`, one run per source."""
  results = {}

  def run(source):
    if source not in results:
      results[source] = train.train_and_evaluate(
          get_preset("tiny").replace(epochs=1, train_fraction=0.1),
          tmp_path_factory.mktemp(source), mrpc_dir,
          progress=False, data_source=source)
    return results[source]
  return run


def test_a_short_run_gives_the_same_metrics_from_every_source(source_splits, short_run):
  source, _ = source_splits
  results = {name: short_run(name) for name in ("local", source)}
  assert results["local"]["validation"] == results[source]["validation"]
  if source == "tfds":
    assert results[source]["test"] is None
  else:
    assert results["local"]["test"] == results[source]["test"]


@pytest.mark.parametrize("source", sorted(_EXTRAS))
def test_a_missing_extra_names_the_install_command(source, mrpc_dir, monkeypatch):
  monkeypatch.setitem(sys.modules, _EXTRAS[source], None)  # makes the import fail
  with pytest.raises(DataError, match=rf"pip install 'flax_mrpc\[{source}\]'"):
    sources.load(source, mrpc_dir)


@pytest.mark.parametrize("source", sorted(_EXTRAS))
def test_glue_style_folders_are_refused_with_the_fix(source, tmp_path):
  (tmp_path / "train.tsv").write_text("Quality\n")
  with pytest.raises(DataError, match="original MRPC files.*msr_paraphrase_train.txt"):
    sources.load(source, tmp_path)
