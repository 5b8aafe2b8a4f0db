import hashlib
import io
import shutil
import urllib.error

import pytest

from flax_mrpc.data import download, mrpc
from flax_mrpc.data.examples import UNLABELLED, DataError, Example


def test_standard_split_sizes_and_labels(splits):
  assert {k: len(v) for k, v in splits.items()} == {"train": 3668, "validation": 408, "test": 1725}
  assert sum(e.label for e in splits["test"]) == 1147
  assert sum(e.label for e in splits["train"]) + sum(e.label for e in splits["validation"]) == 2753
  assert [e.idx for e in splits["test"]] == list(range(1725))
  first = splits["train"][0]
  assert first.sentence1.startswith("Amrozi accused his brother")
  assert first.label == 1


def test_validation_is_the_dev_id_rows(splits, mrpc_dir):
  dev_ids = (mrpc_dir / mrpc.DEV_IDS_FILE).read_text().split()
  assert len(dev_ids) == 2 * 408
  train_sentences = {(e.sentence1, e.sentence2) for e in splits["train"]}
  assert not any((e.sentence1, e.sentence2) in train_sentences for e in splits["validation"])


def _copy(mrpc_dir, tmp_path):
  for name in (mrpc.TRAIN_FILE, mrpc.TEST_FILE, mrpc.DEV_IDS_FILE):
    shutil.copy(mrpc_dir / name, tmp_path / name)
  return tmp_path


def _edit_line(path, line_number, new_line):
  lines = path.read_text(encoding="utf-8-sig").splitlines()
  lines[line_number - 1] = new_line
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_missing_file_names_the_file_and_the_fix(mrpc_dir, tmp_path):
  d = _copy(mrpc_dir, tmp_path)
  (d / mrpc.TEST_FILE).unlink()
  with pytest.raises(DataError, match=r"msr_paraphrase_test\.txt: file not found.*--data-dir"):
    mrpc.load_splits(d)


def test_missing_folder_is_refused(tmp_path):
  with pytest.raises(DataError, match="not a folder"):
    mrpc.load_splits(tmp_path / "nowhere")


@pytest.mark.parametrize("file, line, content, message", [
    (mrpc.TRAIN_FILE, 1, "label\tid1\tid2\ts1\ts2",
     r"msr_paraphrase_train\.txt:1: expected the header"),
    (mrpc.TEST_FILE, 7, "1\t123\t456\tonly one sentence",
     r"msr_paraphrase_test\.txt:7: expected 5 .* found 4"),
    (mrpc.TRAIN_FILE, 3, "2\t1\t2\ta\tb", r"msr_paraphrase_train\.txt:3: label must be 0 or 1"),
    (mrpc.DEV_IDS_FILE, 5, "999999\t888888", r"mrpc_dev_ids\.tsv:5: dev id pair .* is absent"),
], ids=["wrong header", "wrong number of fields", "label other than 0/1", "dev id absent"])
def test_malformed_file_names_the_file_and_line(mrpc_dir, tmp_path, file, line, content, message):
  d = _copy(mrpc_dir, tmp_path)
  _edit_line(d / file, line, content)
  with pytest.raises(DataError, match=message):
    mrpc.load_splits(d)


def test_glue_style_folder_gives_the_same_examples(splits, mrpc_dir, tmp_path):
  header = "\t".join(mrpc.HEADER)
  for name, split in (("train.tsv", "train"), ("dev.tsv", "validation")):
    rows = [f"{e.label}\t{i}\t{i + 1}\t{e.sentence1}\t{e.sentence2}"
            for i, e in enumerate(splits[split])]
    (tmp_path / name).write_text("\n".join([header, *rows]) + "\n")
  shutil.copy(mrpc_dir / mrpc.TEST_FILE, tmp_path / mrpc.TEST_FILE)
  assert mrpc.load_splits(tmp_path) == splits


def test_glue_unlabelled_test_file(splits, tmp_path):
  header = "\t".join(mrpc.HEADER)
  for name in ("train.tsv", "dev.tsv"):
    (tmp_path / name).write_text(f"{header}\n1\t1\t2\ta\tb\n")
  (tmp_path / "test.tsv").write_text("\t".join(mrpc.GLUE_TEST_HEADER) + "\n0\t1\t2\tc\td\n")
  test = mrpc.load_splits(tmp_path)["test"]
  assert test == [Example("c", "d", UNLABELLED, 0)]


class _FakeResponse(io.BytesIO):
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def test_download_verifies_sums_and_reuses_the_cache(monkeypatch, tmp_path):
  payloads = {url: name.encode() for name, (url, _) in download.FILES.items()}
  monkeypatch.setattr(download, "FILES", {
      name: (url, hashlib.sha256(payloads[url]).hexdigest())
      for name, (url, _) in download.FILES.items()})
  fetched = []

  def fake_urlopen(url, timeout):
    fetched.append(url)
    return _FakeResponse(payloads[url])

  monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)
  folder = download.ensure_downloaded(tmp_path / "cache")
  assert sorted(p.name for p in folder.iterdir()) == sorted(download.FILES)
  assert len(fetched) == 3
  download.ensure_downloaded(tmp_path / "cache")
  assert len(fetched) == 3  # nothing fetched again


def test_download_refuses_a_wrong_checksum(monkeypatch, tmp_path):
  monkeypatch.setattr(download.urllib.request, "urlopen",
                      lambda url, timeout: _FakeResponse(b"not mrpc"))
  with pytest.raises(DataError, match="differs from the published"):
    download.ensure_downloaded(tmp_path)
  assert list(tmp_path.iterdir()) == []


def test_offline_download_fails_fast_naming_data_dir(monkeypatch, tmp_path):
  def offline(url, timeout):
    raise urllib.error.URLError("no network")

  monkeypatch.setattr(download.urllib.request, "urlopen", offline)
  monkeypatch.delenv("FLAX_MRPC_DATA_DIR", raising=False)
  monkeypatch.setenv("FLAX_MRPC_CACHE", str(tmp_path))
  with pytest.raises(DataError, match="--data-dir"):
    download.find_data_dir(None)
