"""The seed's PyTorch model, ported faithfully: the baseline that
`flax_mrpc.modules` with `seed_embedding=True, mask_attention=False` mirrors.

`Pre_process` adds word and learned position embeddings, then the segment ids
and the attention mask as raw numbers to every dimension, then dropout.
`MultiHeadAttention` attends to every position (no mask). Each encoder layer
is post-LN (attention, residual, LayerNorm; ReLU feed-forward, residual,
LayerNorm), and the classifier reads the first token through dropout into one
logit. `from_flax` copies a Flax `PairClassifier`'s weights into this model,
which is how tests prove the two compute the same function.

Shapes: [batch, seq] int64 ids, segment ids and 0/1 mask -> [batch] logits.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from flax_mrpc.config import ModelConfig


class Pre_process(nn.Module):  # noqa: N801  (the seed's name)

  def __init__(self, config: ModelConfig):
    super().__init__()
    self.word_embeddings = nn.Embedding(config.vocab_size, config.d_model)
    self.position_embeddings = nn.Embedding(config.num_positions, config.d_model)
    self.dropout = nn.Dropout(config.dropout)

  def forward(self, input_ids, token_type_ids, attention_mask):
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
    x = x + token_type_ids[..., None].float() + attention_mask[..., None].float()
    return self.dropout(x)


class MultiHeadAttention(nn.Module):

  def __init__(self, config: ModelConfig):
    super().__init__()
    d = config.d_model
    self.num_heads = config.num_heads
    self.q, self.k, self.v, self.fc = (nn.Linear(d, d) for _ in range(4))
    self.attention_dropout = nn.Dropout(config.attention_dropout)

  def _heads(self, x):
    b, s, d = x.shape
    return x.view(b, s, self.num_heads, d // self.num_heads).transpose(1, 2)

  def forward(self, x):
    q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    out = self.attention_dropout(scores.softmax(dim=-1)) @ v
    b, h, s, dh = out.shape
    return self.fc(out.transpose(1, 2).reshape(b, s, h * dh))


class EncoderLayer(nn.Module):

  def __init__(self, config: ModelConfig):
    super().__init__()
    self.attention = MultiHeadAttention(config)
    self.attention_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
    self.intermediate = nn.Linear(config.d_model, config.d_ff)
    self.output = nn.Linear(config.d_ff, config.d_model)
    self.output_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
    self.dropout = nn.Dropout(config.dropout)

  def forward(self, x):
    x = self.attention_norm(x + self.dropout(self.attention(x)))
    return self.output_norm(x + self.dropout(self.output(torch.relu(self.intermediate(x)))))


class SeedClassifier(nn.Module):

  def __init__(self, config: ModelConfig):
    super().__init__()
    self.embeddings = Pre_process(config)
    self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
    self.dropout = nn.Dropout(config.dropout)
    self.classifier = nn.Linear(config.d_model, 1)

  def forward(self, input_ids, token_type_ids, attention_mask):
    x = self.embeddings(input_ids, token_type_ids, attention_mask)
    for layer in self.layers:
      x = layer(x)
    return self.classifier(self.dropout(x[:, 0]))[:, 0]


def from_flax(config: ModelConfig, flax_model) -> SeedClassifier:
  """A SeedClassifier holding the weights of a Flax `PairClassifier` built
  with `config` (which must have the seed's embedding and unmasked attention)."""
  if not config.seed_embedding or config.mask_attention:
    raise ValueError("the seed port mirrors models with seed_embedding=True and "
                     "mask_attention=False only.")
  model = SeedClassifier(config)

  def tensor(param, transpose=False):
    array = np.asarray(param[...], np.float32)
    return torch.tensor(array.T if transpose else array)  # a copy

  def linear(target: nn.Linear, source):
    target.weight.data, target.bias.data = tensor(source.kernel, True), tensor(source.bias)

  def norm(target: nn.LayerNorm, source):
    target.weight.data, target.bias.data = tensor(source.scale), tensor(source.bias)

  embeddings = flax_model.encoder.embeddings
  model.embeddings.word_embeddings.weight.data = tensor(embeddings.word_embeddings.embedding)
  model.embeddings.position_embeddings.weight.data = tensor(
      embeddings.position_embeddings.embedding)
  for ours, theirs in zip(model.layers, flax_model.encoder.layers):
    for name in ("q", "k", "v", "fc"):
      linear(getattr(ours.attention, name), getattr(theirs.attention, name))
    norm(ours.attention_norm, theirs.attention_norm)
    linear(ours.intermediate, theirs.intermediate)
    linear(ours.output, theirs.output)
    norm(ours.output_norm, theirs.output_norm)
  linear(model.classifier, flax_model.classifier)
  return model
