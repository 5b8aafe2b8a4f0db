"""WordPiece pair encoding: examples -> int32 token arrays.

Pairs are encoded `[CLS] sentence1 [SEP] sentence2 [SEP]`, truncated
(longest sentence first) and padded to `max_length`, with Hugging Face's fast
tokenizers. The tokenizer is either learned on the train split (offline) or
loaded from a folder or hub name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import BertWordPieceTokenizer
from transformers import AutoTokenizer, BertTokenizer, PreTrainedTokenizerBase

from flax_mrpc.data.examples import Example

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(
    sentences: Sequence[str], vocab_size: int, lowercase: bool, save_dir: Path
) -> PreTrainedTokenizerBase:
  """Learns a WordPiece vocabulary of at most `vocab_size` entries from
  `sentences`, writes `save_dir/vocab.txt` and returns its tokenizer.

  The same sentences always give the same vocabulary. The trainer breaks
  ties between equally frequent merges by token id, and numbers the
  `##`-prefixed characters in hash-map order, which varies between processes
  (huggingface/tokenizers#1794). Declaring the characters and then the
  `##`-characters up front, each in code-point order, fixes every id at one
  of the numberings the trainer itself can draw; the trainer adds exactly
  those tokens anyway (every character is kept: none maps to [UNK]).
  """
  wordpiece = BertWordPieceTokenizer(lowercase=lowercase)
  words = {word for sentence in sentences
           for word, _ in wordpiece.pre_tokenizer.pre_tokenize_str(
               wordpiece.normalizer.normalize_str(sentence))}
  characters = sorted({char for word in words for char in word})
  continuing = sorted({"##" + char for word in words for char in word[1:]})
  wordpiece.train_from_iterator(
      sentences, vocab_size=vocab_size, min_frequency=2,
      special_tokens=SPECIAL_TOKENS + characters + continuing, show_progress=False,
  )
  learned = sorted(set(wordpiece.get_vocab()) - set(SPECIAL_TOKENS))
  save_dir.mkdir(parents=True, exist_ok=True)
  (save_dir / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + learned) + "\n", encoding="utf-8")
  return BertTokenizer.from_pretrained(str(save_dir), do_lower_case=lowercase)


def load_tokenizer(name_or_dir: str, lowercase: bool = True) -> PreTrainedTokenizerBase:
  """A tokenizer from a folder (`tokenizer.json` or `vocab.txt`) or a hub name."""
  path = Path(name_or_dir).expanduser()
  if path.is_dir() and not (path / "tokenizer.json").is_file() and (path / "vocab.txt").is_file():
    return BertTokenizer.from_pretrained(str(path), do_lower_case=lowercase)
  try:
    return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name_or_dir)
  except (OSError, ValueError) as e:
    raise ValueError(
        f"could not load a tokenizer from {name_or_dir!r} ({e}). Pass --tokenizer a folder "
        "with vocab.txt or tokenizer.json, a hub name (online), or 'train' to learn one offline."
    ) from None


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
  """Token arrays of one split: ids, segments, mask and match ids are
  [n, max_length] int32; labels are [n] int32 class indices (float32 scores
  for regression), idx [n] int32; `num_truncated` pairs
  were longer than max_length before truncation."""

  input_ids: np.ndarray
  token_type_ids: np.ndarray
  attention_mask: np.ndarray
  match_ids: np.ndarray
  labels: np.ndarray
  idx: np.ndarray
  num_truncated: int

  def __len__(self) -> int:
    return len(self.labels)

  def features(self) -> dict[str, np.ndarray]:
    """The arrays a batch carries: ids, segments, mask, match ids and labels."""
    return {
        "input_ids": self.input_ids,
        "token_type_ids": self.token_type_ids,
        "attention_mask": self.attention_mask,
        "match_ids": self.match_ids,
        "labels": self.labels,
    }


def exact_match_ids(
    input_ids: np.ndarray, token_type_ids: np.ndarray, special_mask: np.ndarray
) -> np.ndarray:
  """[n, seq] 0/1: 1 where a (non-special) token also occurs in the other
  sentence of its pair. `special_mask` is 1 on [CLS], [SEP] and padding."""
  match = np.zeros_like(input_ids)
  for row, (ids, segments, special) in enumerate(zip(input_ids, token_type_ids, special_mask)):
    words = special == 0
    first, second = ids[words & (segments == 0)], ids[words & (segments == 1)]
    match[row] = words & np.where(segments == 0, np.isin(ids, second), np.isin(ids, first))
  return match


def label_array(labels: Sequence[int | float]) -> np.ndarray:
  """[n] int32 class indices, or float32 when the labels are regression scores."""
  return np.array(labels, np.float32 if any(isinstance(x, float) for x in labels) else np.int32)


def labelled(labels: np.ndarray) -> np.ndarray:
  """[n] bool: which of `label_array`'s labels are real (not UNLABELLED / NaN)."""
  return ~np.isnan(labels) if labels.dtype.kind == "f" else labels >= 0


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_length: int,
    swap: bool = False,
) -> EncodedSplit:
  """Encodes each (sentence1, sentence2) pair, or (sentence2, sentence1) when
  `swap`, into `max_length` tokens."""
  first = [e.sentence2 if swap else e.sentence1 for e in examples]
  second = [e.sentence1 if swap else e.sentence2 for e in examples]
  full_lengths = [len(ids) for ids in tokenizer(first, second)["input_ids"]]
  encoded = tokenizer(
      first, second, truncation="longest_first", padding="max_length",
      max_length=max_length, return_tensors="np", return_token_type_ids=True,
      return_attention_mask=True, return_special_tokens_mask=True,
  )
  return EncodedSplit(
      input_ids=encoded["input_ids"].astype(np.int32),
      token_type_ids=encoded["token_type_ids"].astype(np.int32),
      attention_mask=encoded["attention_mask"].astype(np.int32),
      match_ids=exact_match_ids(encoded["input_ids"], encoded["token_type_ids"],
                                encoded["special_tokens_mask"]).astype(np.int32),
      labels=label_array([e.label for e in examples]),
      idx=np.array([e.idx for e in examples], np.int32),
      num_truncated=sum(n > max_length for n in full_lengths),
  )
