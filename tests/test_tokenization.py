import string

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from tokenizers import Tokenizer, processors

from flax_mrpc.data import tokenization
from flax_mrpc.data.examples import Example


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tok")


@pytest.fixture(scope="module")
def tokenizer(splits, tokenizer_dir):
  sentences = [s for e in splits["train"][:1000] for s in (e.sentence1, e.sentence2)]
  return tokenization.train_wordpiece(sentences, 2000, True, tokenizer_dir)


def test_trained_vocabulary_knows_common_words(tokenizer):
  tokens = tokenizer.tokenize("The company said on Tuesday that its shares rose.")
  assert "[UNK]" not in tokens
  assert tokens[:3] == ["the", "company", "said"]
  assert 1000 < len(tokenizer) <= 2000


def test_pair_layout_segments_and_padding(tokenizer):
  pair = Example("the company said", "shares rose", 1, 0)
  enc = tokenization.encode_pairs(tokenizer, [pair], max_length=16)
  tokens = tokenizer.convert_ids_to_tokens(enc.input_ids[0])
  assert tokens[:8] == ["[CLS]", "the", "company", "said", "[SEP]", "shares", "rose", "[SEP]"]
  assert tokens[8:] == ["[PAD]"] * 8
  np.testing.assert_array_equal(enc.token_type_ids[0], [0] * 5 + [1] * 3 + [0] * 8)
  np.testing.assert_array_equal(enc.attention_mask[0], [1] * 8 + [0] * 8)
  assert enc.input_ids.dtype == np.uint16  # a vocabulary of 2000: the narrowest type
  assert enc.token_type_ids.dtype == enc.attention_mask.dtype == np.uint8
  assert list(enc.lengths) == [8]
  assert enc.num_truncated == 0


def test_truncation_is_counted_and_swap_reverses(tokenizer):
  long = Example(" ".join(["company"] * 20), "shares rose", 0, 3)
  enc = tokenization.encode_pairs(tokenizer, [long], max_length=8)
  assert enc.num_truncated == 1
  assert enc.input_ids.shape == (1, 8)
  assert list(enc.labels) == [0] and list(enc.idx) == [3]
  swapped = tokenization.encode_pairs(tokenizer, [long], max_length=32, swap=True)
  assert tokenizer.convert_ids_to_tokens(swapped.input_ids[0][:4]) == [
      "[CLS]", "shares", "rose", "[SEP]"]


# Letters, digits, ASCII's punctuation and spaces, with what BERT's normalizer
# changes (control and format characters, tabs, accents, Chinese and full-width
# characters, the replacement character): pairs of printable ASCII take
# the encoder's shortcut, the others BERT's whole normalizer.
TEXT = st.text(alphabet=st.sampled_from(
    list("the company said Shares ROSE 42 ") + list(string.punctuation)
    + ["\t", "\n", "\x00", "\x7f", "\u200b", "\ufffd", "é", "Ö", "中", "京", "Ｆ"]),
    max_size=40)


@pytest.mark.parametrize("lowercase", [True, False], ids=["lowercase", "cased"])
def test_the_encoding_equals_the_tokenizer_s_own_call(lowercase, tokenizer_dir, tokenizer):
  loaded = tokenization.load_tokenizer(str(tokenizer_dir), lowercase)

  @settings(max_examples=60, deadline=None)
  @given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=12))
  def check(pairs):
    examples = [Example(a, b, 0, i) for i, (a, b) in enumerate(pairs)]
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    expected = loaded(first, second, truncation="longest_first", padding="max_length",
                      max_length=12, return_tensors="np")
    encoded = tokenization.encode_pairs(loaded, examples, max_length=12)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
      np.testing.assert_array_equal(getattr(encoded, name), expected[name], err_msg=name)
    untruncated = loaded(first, second)["input_ids"]
    assert list(encoded.truncated) == [len(ids) > 12 for ids in untruncated]

  check()


# Sentences that are empty, hold the special tokens' text or are cut by truncation.
SENTENCE = st.one_of(TEXT, st.lists(st.sampled_from(
    ["the", "company", "[SEP]", "[CLS]", "rose", "Shares", "é", "."]), max_size=14).map(" ".join))


def test_both_orders_equal_the_tokenizer_s_own_swapped_pairs(tokenizer):
  assert tokenization._FastPairEncoder(tokenizer, 8).bert_layout  # the swap by moving tokens

  @settings(max_examples=80, deadline=None)
  @given(st.lists(st.tuples(SENTENCE, SENTENCE), min_size=1, max_size=12), st.integers(5, 24))
  def check(pairs, max_length):
    examples = [Example(a, b, 0, i) for i, (a, b) in enumerate(pairs)]
    views = tokenization.encode_in_memory(tokenizer, examples, max_length, (False, True))
    for view, swap in zip(views, (False, True)):
      expected = tokenization.encode_pairs(tokenizer, examples, max_length, swap=swap)
      for name in ("input_ids", "token_type_ids", "attention_mask", "lengths", "truncated"):
        np.testing.assert_array_equal(getattr(view, name), getattr(expected, name), err_msg=name)

  check()


@pytest.mark.parametrize("pair, bert", [("[CLS] $A [SEP] $B:1 [SEP]:1", True),
                                        ("[CLS] $A [SEP] [SEP] $B:1 [SEP]:1", False),
                                        ("[CLS] $A:0 [SEP]:0 $B:0 [SEP]:0", False)])
def test_only_bert_s_pair_template_is_swapped_by_moving_tokens(tokenizer, pair, bert):
  backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
  backend.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair=pair,
      special_tokens=[(t, tokenizer.convert_tokens_to_ids(t)) for t in ("[CLS]", "[SEP]")])
  assert tokenization._bert_pair_layout(backend) == bert


def test_a_folder_with_vocab_txt_loads(tokenizer, tokenizer_dir):
  assert sorted(p.name for p in tokenizer_dir.iterdir()) == ["vocab.txt"]
  loaded = tokenization.load_tokenizer(str(tokenizer_dir))
  text = "The company said on Tuesday."
  assert loaded.tokenize(text) == tokenizer.tokenize(text)


def test_unknown_tokenizer_names_the_fix(tmp_path):
  with pytest.raises(ValueError, match="--tokenizer"):
    tokenization.load_tokenizer(str(tmp_path / "no-such-folder"))


def test_training_twice_gives_the_same_ids(splits, tmp_path):
  sentences = [s for e in splits["train"][:300] for s in (e.sentence1, e.sentence2)]
  a = tokenization.train_wordpiece(sentences, 800, True, tmp_path / "a")
  b = tokenization.train_wordpiece(sentences, 800, True, tmp_path / "b")
  assert (tmp_path / "a" / "vocab.txt").read_text() == (tmp_path / "b" / "vocab.txt").read_text()
  assert a.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]) == [0, 1, 2, 3]
  text = splits["validation"][0].sentence1
  assert a(text)["input_ids"] == b(text)["input_ids"]


def test_equally_frequent_merges_go_in_code_point_order(tmp_path):
  # Six `##` merges of equal count (6) and room for three: the trainer alone
  # picks any three, depending on its hash-map order (picks these 1 time in 20).
  words = [first + pair for first in "xyw" for pair in ["ab", "cd", "ef", "gh", "ij", "kl"]]
  tokenizer = tokenization.train_wordpiece([" ".join(words)] * 2, 35, True, tmp_path)
  merged = {token for token in tokenizer.get_vocab() if len(token) == 4}
  assert merged == {"##ab", "##cd", "##ef"}
  assert len(tokenizer) == 35


def test_match_ids_mark_tokens_found_in_the_other_sentence(tokenizer):
  pair = Example("the company said", "the shares rose", 1, 0)
  enc = tokenization.encode_pairs(tokenizer, [pair], max_length=12, with_match_ids=True)
  tokens = tokenizer.convert_ids_to_tokens(enc.input_ids[0])
  assert tokens[:9] == ["[CLS]", "the", "company", "said", "[SEP]", "the", "shares", "rose",
                        "[SEP]"]
  np.testing.assert_array_equal(enc.match_ids[0], [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
