"""WordPiece pair encoding: examples -> compact token arrays.

Pairs are encoded `[CLS] sentence1 [SEP] sentence2 [SEP]`, truncated
(longest sentence first) and padded to `max_length`, with Hugging Face's fast
tokenizers. The tokenizer is either learned on the train split (offline) or
loaded from a folder or hub name.

transformers is imported where a tokenizer is built, not with this module:
its `AutoTokenizer` imports torch when torch is installed (seconds), which a
run that only reads its cache, or refuses a flag, does not need.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import itertools
import json
import string
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
from tokenizers import (BertWordPieceTokenizer, Encoding, Regex, Tokenizer, normalizers,
                        pre_tokenizers)

from flax_mrpc.data.examples import Example, in_chunks

if TYPE_CHECKING:
  from transformers import PreTrainedTokenizerBase

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
  from transformers import BertTokenizer

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


def _json_object(path: Path) -> dict:
  """The JSON object in `path`, or {} when it is missing or not one."""
  try:
    value = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return {}
  return value if isinstance(value, dict) else {}


def bert_checkpoint_class(folder: Path) -> str | None:
  """"BertTokenizer" for a BERT checkpoint's folder whose tokenizer_config.json
  declares BERT's tokenizer class (without code of its own): the class
  AutoTokenizer loads for it, named without importing AutoTokenizer, which
  imports torch (seconds). None for any other folder."""
  tokenizer_config = _json_object(folder / "tokenizer_config.json")
  declared = tokenizer_config.get("tokenizer_class") in ("BertTokenizer", "BertTokenizerFast")
  model_type = _json_object(folder / "config.json").get("model_type")
  if declared and model_type == "bert" and "auto_map" not in tokenizer_config:
    return "BertTokenizer"
  return None


def load_tokenizer(name_or_dir: str, lowercase: bool = True,
                   class_name: str | None = None) -> PreTrainedTokenizerBase:
  """A tokenizer from a folder (`tokenizer.json` or `vocab.txt`) or a hub name.

  `class_name`: the transformers class `AutoTokenizer` chose for the same
  files before (`type(tokenizer).__name__`, see `cache.loaded_tokenizer`),
  or `bert_checkpoint_class` names: loaded directly, without AutoTokenizer's
  import of torch, when transformers exports it by that name."""
  import transformers

  path = Path(name_or_dir).expanduser()
  if path.is_dir() and not (path / "tokenizer.json").is_file() and (path / "vocab.txt").is_file():
    return transformers.BertTokenizer.from_pretrained(str(path), do_lower_case=lowercase)
  source = str(path) if path.is_dir() else name_or_dir
  class_name = class_name or (bert_checkpoint_class(path) if path.is_dir() else None)
  try:
    chosen = getattr(transformers, class_name, None) if class_name else None
    return (chosen or transformers.AutoTokenizer).from_pretrained(source)
  except (OSError, ValueError) as e:
    raise ValueError(
        f"could not load a tokenizer from {name_or_dir!r} ({e}). Pass --tokenizer a folder "
        "with vocab.txt or tokenizer.json, a hub name (online), or 'train' to learn one offline."
    ) from None


# Pairs tokenized per call of the tokenizer: large enough for the fast
# tokenizer's batch parallelism, small enough that its Python objects
# (tokens, offsets) stay a few MB.
ENCODE_CHUNK = 4096
# Chunks tokenized at once on threads of their own while the next is read:
# with two, one chunk's Rust tokenizing (both cores, outside Python's lock)
# overlaps the other's reading back into arrays (Python's lock).
ENCODE_AHEAD = 2


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
  """Token arrays of one split, in the narrowest types that hold them:
  `input_ids` [n, max_length] uint16 (int32 when the vocabulary has more
  than 65536 entries); `token_type_ids`, `attention_mask` [n, max_length]
  uint8; `match_ids` [n, max_length] uint8, or None when the model has no
  match embedding; `labels` [n] int32 class indices (float32 scores for
  regression); `idx` [n] int32; `lengths` [n] int32 real tokens per pair
  (computed from the mask when not given). `num_truncated` pairs were
  longer than max_length before truncation; `truncated` [n] uint8 marks
  which (None where unknown). Batches widen the token arrays to int32
  (`batching.widened`). The arrays may be memory-mapped (`data.cache`)."""

  input_ids: np.ndarray
  token_type_ids: np.ndarray
  attention_mask: np.ndarray
  match_ids: np.ndarray | None
  labels: np.ndarray
  idx: np.ndarray
  num_truncated: int
  lengths: np.ndarray = None
  truncated: np.ndarray | None = None

  def __post_init__(self):
    if self.lengths is None:
      object.__setattr__(self, "lengths",
                         np.asarray(self.attention_mask, np.int32).sum(axis=1, dtype=np.int32))

  def __len__(self) -> int:
    return len(self.labels)

  def rows(self, keep: np.ndarray) -> EncodedSplit:
    """The pairs at the indices `keep`, in that order, in memory."""
    if self.truncated is None:
      raise ValueError("this split does not record which pairs were truncated.")
    arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
              if f.name != "num_truncated"}
    return EncodedSplit(**{name: None if array is None else np.asarray(array[keep])
                           for name, array in arrays.items()},
                        num_truncated=int(self.truncated[keep].sum()))

  def features(self) -> dict[str, np.ndarray]:
    """The arrays a batch carries: ids, segments, mask, match ids (when
    present) and labels."""
    features = {
        "input_ids": self.input_ids,
        "token_type_ids": self.token_type_ids,
        "attention_mask": self.attention_mask,
        "match_ids": self.match_ids,
        "labels": self.labels,
    }
    return {name: array for name, array in features.items() if array is not None}


def id_dtype(vocab_size: int) -> np.dtype:
  """The narrowest type that holds token ids below `vocab_size`."""
  return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)


def exact_match_ids(
    input_ids: np.ndarray, token_type_ids: np.ndarray, special_mask: np.ndarray
) -> np.ndarray:
  """[n, seq] uint8 0/1: 1 where a (non-special) token also occurs in the
  other sentence of its pair. `special_mask` is 1 on [CLS], [SEP] and padding."""
  n, seq = input_ids.shape
  # One key per (row, token id), so a membership test stays inside each row.
  keys = np.arange(n, dtype=np.int64)[:, None] * (int(input_ids.max(initial=0)) + 1) + input_ids
  words = special_mask == 0
  first, second = words & (token_type_ids == 0), words & (token_type_ids == 1)
  match = (first & np.isin(keys, keys[second])) | (second & np.isin(keys, keys[first]))
  return match.astype(np.uint8)


def label_array(labels: Sequence[int | float]) -> np.ndarray:
  """[n] int32 class indices, or float32 when the labels are regression scores."""
  return np.array(labels, np.float32 if any(isinstance(x, float) for x in labels) else np.int32)


def labelled(labels: np.ndarray) -> np.ndarray:
  """[n] bool: which of `label_array`'s labels are real (not UNLABELLED / NaN)."""
  return ~np.isnan(labels) if labels.dtype.kind == "f" else labels >= 0


def _truncating_copy(backend: Tokenizer, max_length: int, direction: str) -> Tokenizer:
  """A copy of the Rust tokenizer `backend` set to truncate pairs longest
  first to `max_length` tokens, unpadded (`backend` keeps its settings)."""
  copy = Tokenizer.from_str(backend.to_str())
  copy.no_padding()
  copy.enable_truncation(max_length, strategy="longest_first", direction=direction)
  return copy


def _plain(text: str) -> bool:
  """Whether `text` is printable ASCII only (U+0020 to U+007E)."""
  return text.isascii() and text.isprintable()


# BERT's pair template, as (piece, sequence, type id): [CLS] A [SEP] B [SEP].
_BERT_PAIR = [("SpecialToken", None, 0), ("Sequence", "A", 0), ("SpecialToken", None, 0),
              ("Sequence", "B", 1), ("SpecialToken", None, 1)]


def _bert_pair_layout(backend: Tokenizer) -> bool:
  """Whether `backend` lays a pair out as BERT does: one special token, the
  first sentence and one special token with type id 0, the second sentence
  and one special token with type id 1. Swapping such a pair only moves
  its tokens (`_swapped`), unless truncation cut it."""
  processor = json.loads(backend.post_processor.__getstate__()) if backend.post_processor else {}
  if processor.get("type") == "BertProcessing":
    return True
  if processor.get("type") != "TemplateProcessing":
    return False
  pieces = [(kind, spec["id"] if kind == "Sequence" else None, spec["type_id"])
            for piece in processor["pair"] for kind, spec in piece.items()]
  return pieces == _BERT_PAIR and all(len(token["ids"]) == 1
                                      for token in processor["special_tokens"].values())


def _ascii_bert_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
  """BERT's pre-tokenizer on printable ASCII text: words split at spaces, and
  each ASCII punctuation character a word of its own. BERT's own checks
  every character against Unicode's punctuation table, the largest single
  cost in a profile of the encoding."""
  punctuation = "".join("\\" + char for char in string.punctuation)
  return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                  pre_tokenizers.Split(Regex(f"[{punctuation}]"), "isolated")])


class _FastPairEncoder:
  """A fast tokenizer's Rust backend, copied to encode pairs truncated to
  `max_length`. Where the normalizer is BERT's, a second copy encodes the
  pairs of printable ASCII text, which BERT's passes other than lowercasing
  leave as they are (removing control characters, spacing out Chinese
  characters, stripping accents), with lowercasing alone, and, where the
  pre-tokenizer is BERT's too, with `_ascii_bert_pre_tokenizer`: the same
  tokens without three passes and a Unicode table lookup per character.
  `bert_layout`: whether pairs come out in BERT's layout (`_bert_pair_layout`)."""

  def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int):
    backend, direction = tokenizer.backend_tokenizer, tokenizer.truncation_side
    self.backend = _truncating_copy(backend, max_length, direction)
    self.bert_layout = _bert_pair_layout(backend)
    self.plain_backend = None
    if isinstance(backend.normalizer, normalizers.BertNormalizer):
      self.plain_backend = _truncating_copy(backend, max_length, direction)
      self.plain_backend.normalizer = (normalizers.Lowercase() if backend.normalizer.lowercase
                                       else None)
      if isinstance(backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer):
        self.plain_backend.pre_tokenizer = _ascii_bert_pre_tokenizer()

  def encode(self, pairs: list[tuple[str, str]]) -> list[Encoding]:
    """The encodings of `pairs`, in order."""
    if self.plain_backend is None:
      return self.backend.encode_batch_fast(pairs)
    plain = [_plain(first) and _plain(second) for first, second in pairs]
    plain_encodings = iter(self.plain_backend.encode_batch_fast(
        [pair for pair, is_plain in zip(pairs, plain) if is_plain]))
    other_encodings = iter(self.backend.encode_batch_fast(
        [pair for pair, is_plain in zip(pairs, plain) if not is_plain]))
    return [next(plain_encodings if is_plain else other_encodings) for is_plain in plain]


def _padded(rows: Iterable[list[int]], lengths: np.ndarray, max_length: int, fill: int,
            dtype) -> np.ndarray:
  """[n, max_length] `rows` (of `lengths` entries) followed by `fill`; each
  row is read as `rows` yields it, so no list outlives its copy."""
  out = np.full((len(lengths), max_length), fill, dtype)
  out[np.arange(max_length) < lengths[:, None]] = np.fromiter(
      itertools.chain.from_iterable(rows), dtype, int(lengths.sum()))
  return out


def _fast_tokens(tokenizer, encoder: _FastPairEncoder, first: list[str], second: list[str],
                 max_length: int, with_special: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """A fast tokenizer's pair encodings, read straight off its Rust encodings
  and padded here (on the right), which is what the transformers call gives
  with padding="max_length", minus its Python lists of every padded row.
  Returns the arrays and [n] uint8 flags of the pairs truncation cut, read
  from the same call: a truncated encoding keeps what it cut in `overflowing`."""
  encodings = encoder.encode(list(zip(first, second)))
  lengths = np.fromiter(map(len, encodings), np.int64, len(encodings))
  arrays = {
      "input_ids": _padded((e.ids for e in encodings), lengths, max_length,
                           tokenizer.pad_token_id, id_dtype(len(tokenizer))),
      "token_type_ids": _padded((e.type_ids for e in encodings), lengths, max_length,
                                tokenizer.pad_token_type_id, np.uint8),
      "attention_mask": (np.arange(max_length) < lengths[:, None]).astype(np.uint8),
  }
  if with_special:
    arrays["special_tokens_mask"] = _padded((e.special_tokens_mask for e in encodings), lengths,
                                            max_length, 1, np.uint8)
  return arrays, np.fromiter((bool(e.overflowing) for e in encodings), np.uint8, len(encodings))


def _python_tokens(tokenizer, first: list[str], second: list[str], max_length: int,
                   with_special: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """`_fast_tokens` of a tokenizer without a Rust backend, through its own
  call; truncation is counted by encoding again without it."""
  encoded = tokenizer(
      first, second, truncation="longest_first", padding="max_length",
      max_length=max_length, return_tensors="np", return_token_type_ids=True,
      return_attention_mask=True, return_special_tokens_mask=with_special,
  )
  names = ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask")
  dtypes = (id_dtype(len(tokenizer)), np.uint8, np.uint8, np.uint8)
  arrays = {name: encoded[name].astype(dtype) for name, dtype in zip(names, dtypes)
            if name in encoded}
  full = tokenizer(first, second)["input_ids"]
  return arrays, np.array([len(ids) > max_length for ids in full], np.uint8)


@functools.lru_cache(maxsize=8)
def _pair_encoder(tokenizer: PreTrainedTokenizerBase, max_length: int) -> _FastPairEncoder | None:
  """What encodes a fast tokenizer's pairs (None: the tokenizer's own call),
  built once per tokenizer and length (copying the Rust backend takes tens
  of ms, which `predict` would otherwise pay per batch)."""
  if getattr(tokenizer, "backend_tokenizer", None) is None:
    return None
  return _FastPairEncoder(tokenizer, max_length)


def _encoded(tokenizer: PreTrainedTokenizerBase, encoder: _FastPairEncoder | None,
             examples: Sequence[Example], max_length: int, swap: bool,
             with_match_ids: bool) -> EncodedSplit:
  """`encode_pairs` with the encoder of `_pair_encoder(tokenizer, max_length)`."""
  first = [e.sentence2 if swap else e.sentence1 for e in examples]
  second = [e.sentence1 if swap else e.sentence2 for e in examples]
  if encoder is None:
    arrays, truncated = _python_tokens(tokenizer, first, second, max_length, with_match_ids)
  else:
    arrays, truncated = _fast_tokens(tokenizer, encoder, first, second, max_length,
                                     with_match_ids)
  return EncodedSplit(
      input_ids=arrays["input_ids"],
      token_type_ids=arrays["token_type_ids"],
      attention_mask=arrays["attention_mask"],
      match_ids=(exact_match_ids(arrays["input_ids"], arrays["token_type_ids"],
                                 arrays["special_tokens_mask"]) if with_match_ids else None),
      labels=label_array([e.label for e in examples]),
      idx=np.array([e.idx for e in examples], np.int32),
      num_truncated=int(truncated.sum()),
      truncated=truncated,
  )


def _swapped(view: EncodedSplit, pad_id: int, pad_type_id: int) -> EncodedSplit:
  """`view`'s pairs, in BERT's layout (`_bert_pair_layout`), in the other
  order: each `[CLS] A [SEP] B [SEP]` becomes `[CLS] B [SEP] A [SEP]` with
  type ids 0 up to the first [SEP] and 1 after it, as the tokenizer would
  encode the swapped pair unless truncation cut it (then it cuts the
  longer sentence the other way round on a tie; `_encoded_views` encodes
  those again). The type ids, not the [SEP] id, find where A ends, so a
  sentence that holds the text "[SEP]" moves whole."""
  ids, types = view.input_ids, view.token_type_ids
  position = np.arange(ids.shape[1])
  lengths = view.lengths[:, None].astype(np.int64)
  real = position < lengths
  first = np.sum((types == 0) & real, axis=1, keepdims=True) - 2  # tokens of sentence A
  second = lengths - first - 3
  source = np.select(
      [position == 0, position <= second, position == second + 1, position < lengths - 1],
      [0, position + first + 1, first + 1, position - second - 1], default=lengths - 1)
  return dataclasses.replace(
      view,
      input_ids=np.where(real, np.take_along_axis(ids, source, 1), pad_id).astype(ids.dtype),
      token_type_ids=np.where(real, position > second + 1, pad_type_id).astype(types.dtype))


def _encoded_views(tokenizer: PreTrainedTokenizerBase, encoder: _FastPairEncoder | None,
                   examples: Sequence[Example], max_length: int, swaps: Sequence[bool],
                   with_match_ids: bool) -> list[EncodedSplit]:
  """`_encoded` of `examples` in each order of `swaps`. Both orders of pairs
  in BERT's layout, without match ids, are tokenized once: the swapped
  order moves the tokens (`_swapped`), and only the pairs truncation cut
  are encoded again."""
  if encoder is None or not encoder.bert_layout or with_match_ids or set(swaps) != {False, True}:
    return [_encoded(tokenizer, encoder, examples, max_length, swap, with_match_ids)
            for swap in swaps]
  straight = _encoded(tokenizer, encoder, examples, max_length, False, False)
  swapped = _swapped(straight, tokenizer.pad_token_id, tokenizer.pad_token_type_id)
  cut = np.flatnonzero(straight.truncated)
  if len(cut):
    again = _encoded(tokenizer, encoder, [examples[i] for i in cut], max_length, True, False)
    swapped.input_ids[cut] = again.input_ids
    swapped.token_type_ids[cut] = again.token_type_ids
  return [swapped if swap else straight for swap in swaps]


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_length: int,
    swap: bool = False,
    with_match_ids: bool = False,
) -> EncodedSplit:
  """Encodes each (sentence1, sentence2) pair, or (sentence2, sentence1) when
  `swap`, into `max_length` tokens (`[CLS] sentence1 [SEP] sentence2 [SEP]`
  in BERT's layout, truncated longest first, padded on the right), in one
  call of the tokenizer: pass at most a few thousand pairs (`encode_chunks`
  streams more). `match_ids` are computed only `with_match_ids` (a model
  with `match_embedding`)."""
  return _encoded(tokenizer, _pair_encoder(tokenizer, max_length), examples, max_length, swap,
                  with_match_ids)


def encode_chunks(
    tokenizer: PreTrainedTokenizerBase,
    examples: Iterable[Example],
    max_length: int,
    swaps: Sequence[bool] = (False,),
    with_match_ids: bool = False,
    chunk_size: int = ENCODE_CHUNK,
) -> Iterator[list[EncodedSplit]]:
  """Streams `examples` `chunk_size` at a time; yields, per chunk, its
  `encode_pairs` in each order of `swaps` (one read of the examples serves
  both orders of a symmetric split), in order. Up to `ENCODE_AHEAD` chunks
  are encoded on threads while the next is read: reading and checking a
  file and reading the encodings back are Python's work, tokenizing the
  Rust tokenizer's, which leaves Python's lock (a tokenizer without a Rust
  backend encodes one chunk at a time)."""
  encoder = _pair_encoder(tokenizer, max_length)
  ahead = ENCODE_AHEAD if encoder is not None else 1
  with concurrent.futures.ThreadPoolExecutor(ahead, thread_name_prefix="encode") as pool:
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    for chunk in in_chunks(examples, chunk_size):
      pending.append(pool.submit(_encoded_views, tokenizer, encoder, chunk, max_length, swaps,
                                 with_match_ids))
      if len(pending) > ahead:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def encode_in_memory(
    tokenizer: PreTrainedTokenizerBase,
    examples: Iterable[Example],
    max_length: int,
    swaps: Sequence[bool] = (False,),
    with_match_ids: bool = False,
) -> list[EncodedSplit]:
  """`encode_chunks`, joined: one EncodedSplit per order in `swaps` (empty
  examples give an empty list)."""
  parts = zip(*encode_chunks(tokenizer, examples, max_length, swaps, with_match_ids))
  return [concatenated(p) for p in parts]


def concatenated(parts: Sequence[EncodedSplit]) -> EncodedSplit:
  """One EncodedSplit of several, in order."""
  def joined(name):
    arrays = [getattr(p, name) for p in parts]
    return None if arrays[0] is None else np.concatenate(arrays)

  names = ("input_ids", "token_type_ids", "attention_mask", "match_ids", "labels", "idx",
           "lengths", "truncated")
  return EncodedSplit(**{name: joined(name) for name in names},
                      num_truncated=sum(p.num_truncated for p in parts))
