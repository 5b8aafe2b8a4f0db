"""The encoded-split cache (`data.cache`) and the compact one-pass encoding
it stores (`tokenization.encode_chunks`)."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from flax_mrpc.data import batching, cache, packing, tasks, tokenization

MAX_LENGTH = 32


@pytest.fixture(scope="module")
def tokenizer(splits, tmp_path_factory):
  sentences = [s for e in splits["train"][:500] for s in (e.sentence1, e.sentence2)]
  return tokenization.train_wordpiece(sentences, 600, True, tmp_path_factory.mktemp("tok"))


def write_csv(path, examples):
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["sentence1", "sentence2", "label"])
    writer.writerows((e.sentence1, e.sentence2, e.label) for e in examples)
  return path


@pytest.fixture
def pair_file(splits, tmp_path):
  return write_csv(tmp_path / "pairs.csv", splits["validation"][:300])


def source_of(path) -> tasks.SplitSource:
  task = tasks.files_task(str(path), str(path))
  return tasks.split_sources(task)["validation"]


class CountingCalls:
  """Counts the encodings a tokenizer makes: calls of its `__call__` and of
  the encoder that runs its Rust backend (both monkeypatched)."""

  def __init__(self, monkeypatch, tokenizer):
    self.count = 0

    def counting(method):
      def counted(*args, **kwargs):
        self.count += 1
        return method(*args, **kwargs)
      return counted

    monkeypatch.setattr(type(tokenizer), "__call__", counting(type(tokenizer).__call__))
    monkeypatch.setattr(tokenization._FastPairEncoder, "encode",
                        counting(tokenization._FastPairEncoder.encode))


def views(folder, source, tokenizer, max_length=MAX_LENGTH, swaps=(False, True)):
  return cache.encoded_views(cache.EncodedCache(folder), source.fingerprint, source.read,
                             tokenizer, max_length, swaps, with_match_ids=True)


def assert_same_split(a: tokenization.EncodedSplit, b: tokenization.EncodedSplit):
  for name in cache.ARRAYS:
    x, y = getattr(a, name), getattr(b, name)
    assert (x is None) == (y is None), name
    if x is not None:
      assert x.dtype == y.dtype, name
      np.testing.assert_array_equal(x, y, err_msg=name)
  assert a.num_truncated == b.num_truncated


def test_a_hit_maps_the_arrays_without_tokenizing(monkeypatch, pair_file, tokenizer, tmp_path):
  source = source_of(pair_file)
  calls = CountingCalls(monkeypatch, tokenizer)
  built, hit = views(tmp_path / "cache", source, tokenizer)
  assert not hit and calls.count > 0
  calls.count = 0
  reused, hit = views(tmp_path / "cache", source, tokenizer)
  assert hit and calls.count == 0
  assert all(isinstance(split.input_ids, np.memmap) for split in reused)
  in_memory = tokenization.encode_in_memory(tokenizer, source.read(), MAX_LENGTH, (False, True),
                                            with_match_ids=True)
  for a, b, c in zip(built, reused, in_memory):
    assert_same_split(a, b)
    assert_same_split(b, c)


def test_a_changed_file_tokenizer_or_max_length_misses(splits, pair_file, tokenizer, tmp_path):
  folder = tmp_path / "cache"
  source = source_of(pair_file)
  assert not views(folder, source, tokenizer)[1]
  assert views(folder, source, tokenizer)[1]
  assert not views(folder, source, tokenizer, max_length=MAX_LENGTH + 8)[1]
  sentences = [s for e in splits["train"][:200] for s in (e.sentence1, e.sentence2)]
  other = tokenization.train_wordpiece(sentences, 300, True, tmp_path / "other")
  assert not views(folder, source, other)[1]
  lines = pair_file.read_text().splitlines(keepends=True)
  pair_file.write_text("".join(lines[:-1]))  # one pair fewer
  changed = source_of(pair_file)
  encoded, hit = views(folder, changed, tokenizer)
  assert not hit and len(encoded[0]) == len(lines) - 2


def test_a_rerun_loads_the_class_auto_tokenizer_chose_without_it(monkeypatch, tokenizer,
                                                                 tmp_path):
  transformers = pytest.importorskip("transformers")
  named = tmp_path / "named"
  tokenizer.save_pretrained(str(named))  # tokenizer.json and tokenizer_config.json
  first = cache.loaded_tokenizer(tmp_path / "cache", str(named), True)

  def not_again(*args, **kwargs):
    raise AssertionError("AutoTokenizer was asked again")

  monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", not_again)
  again = cache.loaded_tokenizer(tmp_path / "cache", str(named), True)
  assert type(again) is type(first)
  assert cache.tokenizer_fingerprint(again) == cache.tokenizer_fingerprint(first)
  config = json.loads((named / "tokenizer_config.json").read_text())
  (named / "tokenizer_config.json").write_text(json.dumps(config | {"model_max_length": 64}))
  with pytest.raises(AssertionError, match="asked again"):  # changed files: AutoTokenizer decides
    cache.loaded_tokenizer(tmp_path / "cache", str(named), True)


def test_a_truncated_file_is_rebuilt_with_one_warning(pair_file, tokenizer, tmp_path, capsys):
  folder = tmp_path / "cache"
  source = source_of(pair_file)
  [expected], _ = views(folder, source, tokenizer, swaps=(False,))
  expected = tokenization.concatenated([expected])  # in memory, off the files
  array = next(folder.glob("*/input_ids.bin"))
  cut = array.with_suffix(".cut")
  cut.write_bytes(array.read_bytes()[:1000])  # as a copy cut short would leave it
  cut.replace(array)
  capsys.readouterr()
  rebuilt, hit = views(folder, source, tokenizer, swaps=(False,))
  warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert not hit
  assert len(warnings) == 1 and warnings[0].startswith("warning:")
  assert "input_ids.bin" in warnings[0]
  assert_same_split(rebuilt[0], expected)
  assert views(folder, source, tokenizer, swaps=(False,))[1]


def test_a_bad_file_leaves_no_entry(tmp_path, tokenizer, splits):
  path = write_csv(tmp_path / "pairs.csv", splits["validation"][:50])
  source = source_of(path)
  with open(path, "a", encoding="utf-8") as f:
    f.write("a sentence,,1\n")
  folder = tmp_path / "cache"
  with pytest.raises(tasks.DataError, match=r"pairs.csv:52: .*empty"):
    views(folder, source, tokenizer)
  assert not [p for p in folder.iterdir()]


def test_a_partial_entry_of_a_stopped_run_is_removed(pair_file, tokenizer, tmp_path, capsys):
  folder = tmp_path / "cache"
  source = source_of(pair_file)
  views(folder, source, tokenizer, swaps=(False,))
  entry = next(p for p in folder.iterdir() if not p.name.startswith("."))
  stopped = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True).stdout.strip()
  partial = folder / f".{entry.name}.partial-{os.uname().nodename}-{stopped}-0000"
  partial.mkdir()
  (partial / "input_ids.bin").write_bytes(b"\0" * 10)
  import shutil
  shutil.rmtree(entry)
  capsys.readouterr()
  _, hit = views(folder, source, tokenizer, swaps=(False,))
  assert not hit and not partial.exists()
  assert "partial encoding left by a stopped run" in capsys.readouterr().err


RACER = textwrap.dedent("""
    import sys, time
    from flax_mrpc.data import cache, tasks, tokenization
    tokenizer = tokenization.load_tokenizer(sys.argv[1])
    task = tasks.files_task(sys.argv[2], sys.argv[2])
    source = tasks.split_sources(task)["validation"]
    def slow():
      for i, example in enumerate(source.read()):
        if i % 100 == 0:
          time.sleep(0.3)  # so that both processes are writing at once
        yield example
    built, hit = cache.encoded_views(cache.EncodedCache(sys.argv[3]), source.fingerprint, slow,
                                     tokenizer, 32, (False, True), True)
    print(hit, int(built[0].input_ids.sum()), int(built[1].match_ids.sum()))
""")


def test_two_processes_racing_leave_one_good_copy(pair_file, tokenizer, tmp_path):
  tokenizer.save_pretrained(str(tmp_path / "tok"))
  folder = tmp_path / "cache"
  racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "tok"), str(pair_file),
                              str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=os.environ | {"PYTHONPATH": os.getcwd()})
            for _ in range(2)]
  outputs = [racer.communicate(timeout=120) for racer in racers]
  assert all(racer.returncode == 0 for racer in racers), [err for _, err in outputs]
  assert outputs[0][0] == outputs[1][0]
  entries = sorted(p.name for p in folder.iterdir())
  assert len(entries) == 2 and not any(name.startswith(".") for name in entries)
  source = source_of(pair_file)
  expected = tokenization.encode_in_memory(tokenizer, source.read(), MAX_LENGTH, (False, True),
                                           with_match_ids=True)
  mapped, hit = views(folder, source, tokenizer)
  assert hit
  for a, b in zip(mapped, expected):
    assert_same_split(a, b)
  assert json.loads((folder / entries[0] / "meta.json").read_text())["format"] == 1


def int32_copy(split: tokenization.EncodedSplit) -> dict[str, np.ndarray]:
  """The features as they were before compact arrays: every array int32."""
  return {name: array.astype(np.int32) if array.dtype.kind in "ui" else array
          for name, array in split.features().items()}


def assert_same_batches(compact, wide):
  compact, wide = list(compact), list(wide)
  assert len(compact) == len(wide)
  for a, b in zip(compact, wide):
    assert a.keys() == b.keys()
    for name in a:
      assert a[name].dtype == b[name].dtype, name
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_compact_arrays_give_the_int32_batches(splits, tokenizer):
  split = tokenization.encode_pairs(tokenizer, splits["train"][:150], MAX_LENGTH,
                                    with_match_ids=True)
  assert split.input_ids.dtype == np.uint16 and split.attention_mask.dtype == np.uint8
  wide = int32_copy(split)
  order = batching.epoch_order(len(split), seed=0, epoch=1)
  for pad_multiple in (None, 8):
    assert_same_batches(
        batching.batches(split.features(), 16, order, pad_multiple, lengths=split.lengths),
        batching.batches(wide, 16, order, pad_multiple))
  rows = packing.pack_rows(split.lengths, order, MAX_LENGTH)
  assert_same_batches(packing.packed_batches(split.features(), rows, 4, lengths=split.lengths),
                      packing.packed_batches(wide, rows, 4))


def loop_match_ids(input_ids, token_type_ids, special_mask):
  """The exact-match ids row by row, as first written."""
  match = np.zeros_like(input_ids)
  for row, (ids, segments, special) in enumerate(zip(input_ids, token_type_ids, special_mask)):
    words = special == 0
    first, second = ids[words & (segments == 0)], ids[words & (segments == 1)]
    match[row] = words & np.where(segments == 0, np.isin(ids, second), np.isin(ids, first))
  return match


def test_vectorised_match_ids_and_one_pass_truncation_count(splits, tokenizer):
  examples = splits["train"][:400]
  encoded = tokenizer([e.sentence1 for e in examples], [e.sentence2 for e in examples],
                      truncation="longest_first", padding="max_length", max_length=MAX_LENGTH,
                      return_tensors="np", return_special_tokens_mask=True)
  np.testing.assert_array_equal(
      tokenization.exact_match_ids(encoded["input_ids"], encoded["token_type_ids"],
                                   encoded["special_tokens_mask"]),
      loop_match_ids(encoded["input_ids"], encoded["token_type_ids"],
                     encoded["special_tokens_mask"]))
  split = tokenization.encode_pairs(tokenizer, examples, 64)
  full = tokenizer([e.sentence1 for e in examples], [e.sentence2 for e in examples])
  expected = sum(len(ids) > 64 for ids in full["input_ids"])
  assert any(len(ids) == 64 for ids in full["input_ids"])  # a full pair is not truncated
  assert 0 < split.num_truncated == expected < len(examples)
  assert split.match_ids is None and "match_ids" not in split.features()


def test_a_share_of_the_pairs_is_the_encoding_of_that_share(splits, tokenizer):
  examples = splits["train"][:300]
  keep = np.array([3, 10, 11, 150, 299])
  whole = tokenization.encode_pairs(tokenizer, examples, MAX_LENGTH, with_match_ids=True)
  share = tokenization.encode_pairs(tokenizer, [examples[i] for i in keep], MAX_LENGTH,
                                    with_match_ids=True)
  assert_same_split(whole.rows(keep), share)
  np.testing.assert_array_equal(whole.rows(keep).truncated, share.truncated)
