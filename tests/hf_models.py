"""Small random Hugging Face models of every supported family, built offline
with transformers (torch CPU), their weights moved well away from the
0.02-std init so that a wrong mapping shows, and tokenizers to go with them."""

from pathlib import Path

import numpy as np
import torch
import transformers

SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             hidden_act="gelu", layer_norm_eps=1e-7, num_labels=2)
CONFIGS = {
    "bert": lambda vocab: transformers.BertConfig(**SHAPE, vocab_size=vocab,
                                                  max_position_embeddings=40),
    "roberta": lambda vocab: transformers.RobertaConfig(
        **SHAPE, vocab_size=vocab, max_position_embeddings=42, type_vocab_size=1, pad_token_id=1),
    "xlm-roberta": lambda vocab: transformers.XLMRobertaConfig(
        **SHAPE, vocab_size=vocab, max_position_embeddings=42, type_vocab_size=1, pad_token_id=1),
    "electra": lambda vocab: transformers.ElectraConfig(
        **SHAPE, vocab_size=vocab, embedding_size=16, max_position_embeddings=40),
    "distilbert": lambda vocab: transformers.DistilBertConfig(
        vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=37, activation="gelu",
        max_position_embeddings=40, num_labels=2, seq_classif_dropout=0.3),
    # DeBERTa-v3's layout: shared position projections, no absolute positions, no segments;
    # 8 buckets, so that pairs of 16 tokens reach the logarithmic ones.
    "deberta-v3": lambda vocab: transformers.DebertaV2Config(
        **SHAPE, vocab_size=vocab, max_position_embeddings=40, type_vocab_size=0,
        relative_attention=True, position_buckets=8, max_relative_positions=40,
        pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
        position_biased_input=False, pooler_hidden_size=32, pooler_dropout=0),
    # DeBERTa-v2's other options: own position projections, absolute positions, segments.
    "deberta-v2": lambda vocab: transformers.DebertaV2Config(
        **SHAPE, vocab_size=vocab, max_position_embeddings=40, type_vocab_size=2,
        relative_attention=True, max_relative_positions=12, pos_att_type=["c2p", "p2c"],
        share_att_key=False, position_biased_input=True, pooler_hidden_size=32),
}
# The rotary-position families (tests/test_rope_families.py): 4 layers, so that
# ModernBERT's global (0, 3) and sliding-window (1, 2) layers both occur, and a
# window of 8 (4 tokens each way), shorter than the test pairs.
ROPE_SHAPE = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=24, num_labels=2, pad_token_id=0, bos_token_id=2,
                  eos_token_id=3)
ROPE_CONFIGS = {
    "modernbert": lambda vocab: transformers.ModernBertConfig(
        **ROPE_SHAPE, vocab_size=vocab, cls_token_id=2, sep_token_id=3, local_attention=8,
        global_attn_every_n_layers=3, global_rope_theta=5000.0, local_rope_theta=300.0),
    # ModernBERT's other options: mean pooling, biases, global every other layer.
    "modernbert-mean": lambda vocab: transformers.ModernBertConfig(
        **ROPE_SHAPE, vocab_size=vocab, cls_token_id=2, sep_token_id=3, local_attention=6,
        global_attn_every_n_layers=2, classifier_pooling="mean", attention_bias=True,
        mlp_bias=True, norm_bias=True, classifier_bias=True, classifier_activation="relu",
        hidden_activation="silu"),
    "gte": lambda vocab: transformers.GteConfig(
        **ROPE_SHAPE, vocab_size=vocab, type_vocab_size=2, layer_norm_eps=1e-7,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0}),
    # Grouped-query attention (2 key/value heads for 4 query heads), late pooling.
    "eurobert": lambda vocab: transformers.EuroBertConfig(
        **ROPE_SHAPE, vocab_size=vocab, num_key_value_heads=2, mask_token_id=4,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0}),
    # EuroBERT's other options: first-token pooling, biases.
    "eurobert-bos": lambda vocab: transformers.EuroBertConfig(
        **ROPE_SHAPE, vocab_size=vocab, mask_token_id=4, classifier_pooling="bos",
        attention_bias=True, mlp_bias=True, rms_norm_eps=1e-6),
}
BYTE_LEVEL = ("roberta", "xlm-roberta")  # byte-level BPE tokenizers; the rest WordPiece
# Parity inputs: three pairs padded to SEQ tokens, of LENGTHS real tokens.
VOCAB, SEQ, LENGTHS = 100, 16, (16, 11, 6)


def pair_inputs(config) -> tuple:
  """(ids, segments, mask), each [3, SEQ] int64, for a model of `config`:
  random ids, the second segment from token 4 (all 0 where the family has
  fewer than 2 segments), padding with the config's pad id."""
  rng = np.random.default_rng(0)
  pad = config.pad_token_id if config.pad_token_id is not None else 0
  mask = (np.arange(SEQ)[None] < np.array(LENGTHS)[:, None]).astype(np.int64)
  ids = np.where(mask, rng.integers(5, VOCAB, (len(LENGTHS), SEQ)), pad)
  types = np.where(mask & (np.arange(SEQ)[None] >= 4), 1, 0)
  if getattr(config, "type_vocab_size", 0) < 2:
    types = np.zeros_like(types)
  return ids, types, mask


def reference_outputs(hf, ids, types, mask) -> tuple:
  """transformers' last hidden states [batch, seq, hidden] (after any final
  norm) and softmax[:, 1] [batch] of a 2-label `hf`."""
  args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
  if getattr(hf.config, "type_vocab_size", 0):
    args["token_type_ids"] = torch.tensor(types)
  with torch.no_grad():
    hidden = hf.base_model(**args).last_hidden_state.numpy()
    probability = torch.softmax(hf(**args).logits, -1)[:, 1].numpy()
  return hidden, probability


def random_model(family: str, vocab_size: int, num_labels: int = 2,
                 id2label: dict[int, str] | None = None):
  """An eval-mode `*ForSequenceClassification` (2 labels, or `num_labels`
  named by `id2label`) of `family` (a key of CONFIGS or ROPE_CONFIGS)."""
  torch.manual_seed(0)
  config = (CONFIGS | ROPE_CONFIGS)[family](vocab_size)
  config.num_labels = num_labels
  if id2label:
    config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
  model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
  with torch.no_grad():
    for parameter in model.parameters():
      parameter.add_(torch.randn_like(parameter) * 0.3)
  return model


def write_tokenizer(family: str, folder: Path, sentences: list[str]) -> int:
  """Learns the family's kind of tokenizer on `sentences`, saves it in
  `folder` as a checkpoint's would be; returns its vocabulary size."""
  from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer

  if family in BYTE_LEVEL:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences, vocab_size=400, min_frequency=2, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = transformers.RobertaTokenizerFast(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
  else:
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(sentences, vocab_size=300, min_frequency=2, show_progress=False)
    wordpiece.save_model(str(folder))
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
  tokenizer.save_pretrained(str(folder))
  return len(tokenizer)


def checkpoint(family: str, folder: Path, sentences: list[str], with_head: bool = False) -> Path:
  """A checkpoint folder of `family` with a tokenizer learned on `sentences`."""
  folder.mkdir(parents=True, exist_ok=True)
  model = random_model(family, write_tokenizer(family, folder, sentences))
  (model if with_head else model.base_model).save_pretrained(str(folder))
  return folder
