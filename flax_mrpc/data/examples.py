"""What every reader yields: `Example(sentence1, sentence2, label, idx)` in the
GLUE / Hugging Face schema, and `DataError`, the one error for a missing or
malformed data file."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterable, Iterator

SPLITS = ("train", "validation", "test")
UNLABELLED = -1


class DataError(ValueError):
  """A data file is missing or malformed: one message per problem, each
  naming the file (and line) and the fix."""

  def __init__(self, *problems: str):
    super().__init__("\n".join(problems))
    self.problems = list(problems)


@dataclasses.dataclass(frozen=True)
class Example:
  sentence1: str
  sentence2: str
  # The class index (MRPC: 1 paraphrase, 0 not; UNLABELLED (-1) when the split
  # has no labels), or a regression task's score (NaN when unlabelled).
  label: int | float
  idx: int


def in_chunks(examples: Iterable[Example], size: int) -> Iterator[list[Example]]:
  """`examples` in lists of `size`, streamed (the last may be shorter)."""
  iterator = iter(examples)
  while chunk := list(itertools.islice(iterator, size)):
    yield chunk
