"""Pretraining text: a plain-text corpus, or MRPC's train sentences.

A corpus is a UTF-8 file with one sentence or document per line; blank
lines are skipped. It is read line by line each time it is iterated (to
learn the tokenizer, then to encode it), never whole. Consecutive lines
make the pairs that pretraining encodes like MRPC's pairs, `[CLS] line 1
[SEP] line 2 [SEP]`, so the model learns across the [SEP] as fine-tuning
will use it; an odd last line is a pair with an empty second segment.
Without a corpus, the lines are MRPC's train pairs, sentence 1 then
sentence 2 (never validation or test sentences).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from flax_mrpc.data import tokenization
from flax_mrpc.data.examples import DataError, Example

class CorpusFile:
  """The non-blank lines of a text file, streamed on each iteration.
  Raises DataError for a missing, unreadable, non-UTF-8 or nearly empty file."""

  def __init__(self, path: str | Path):
    self.path = Path(path).expanduser()
    if not self.path.is_file():
      raise DataError(f"--corpus {self.path}: file not found. Pass a UTF-8 text file with one "
                      "sentence or document per line.")
    if sum(1 for _ in zip(self, range(2))) < 2:
      raise DataError(f"--corpus {self.path}: fewer than 2 non-blank lines; pretraining needs "
                      "a corpus of at least one pair of lines.")

  def __iter__(self) -> Iterator[str]:
    with open(self.path, "rb") as f:
      for number, raw in enumerate(f, 1):
        try:
          line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
          raise DataError(f"--corpus {self.path}:{number}: not UTF-8 ({e.reason}). Convert "
                          "the file to UTF-8 (e.g. iconv -t UTF-8).") from None
        if line.strip():
          yield line


def mrpc_lines(train: Sequence[Example]) -> list[str]:
  """The default corpus: each train pair's sentence 1, then its sentence 2."""
  return [s for e in train for s in (e.sentence1, e.sentence2)]


def line_pairs(lines: Iterable[str]) -> Iterator[Example]:
  """Consecutive lines as unlabelled pairs: (1, 2), (3, 4), ..."""
  first = None
  for i, line in enumerate(lines):
    if first is None:
      first = line
    else:
      yield Example(first, line, label=0, idx=i // 2)
      first = None
  if first is not None:
    yield Example(first, "", label=0, idx=i // 2)


def encode_corpus(tokenizer, lines: Iterable[str], max_length: int,
                  with_match_ids: bool = False) -> dict[str, np.ndarray]:
  """The line pairs of `lines` as [pairs, max_length] token arrays
  (`tokenization.EncodedSplit.features`), tokenized a chunk at a time
  (`tokenization.encode_chunks`); long pairs are truncated like MRPC's."""
  [encoded] = tokenization.encode_in_memory(tokenizer, line_pairs(lines), max_length,
                                            with_match_ids=with_match_ids)
  return encoded.features()
