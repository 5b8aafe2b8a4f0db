"""Flax NNX modules of the BERT-style pair classifier.

Names mirror the seed's PyTorch code: `PreProcess` (the seed's `Pre_process`),
`MultiHeadAttention`, `EncoderLayer`, `Encoder`, and `PairClassifier` on top.
Every module is a plain `nnx.Module`: use it directly, or take its pure
(graphdef, state) pair with `nnx.split` for `jax.jit` / `jax.pmap`.

Dropout is active only when an `nnx.Rngs` with a `dropout` stream is passed
as `rngs=`; without it the modules are deterministic (evaluation).

Shapes: `batch` rows of `seq` tokens, `hidden` = `config.d_model`.

A row holds one pair, or several pairs packed one after another
(`flax_mrpc.data.packing`). `attention_mask` is then a row of segment ids: 0 on
padding, k on the k-th pair's tokens; a token attends only to tokens of its
own segment, so a 0/1 mask is the one-pair case. `positions` restart at each
pair, and `first_positions` [batch, K] say where the row's pairs start.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax_mrpc.config import ModelConfig

_INIT = nnx.initializers.normal(stddev=0.02)


def _dtype(config: ModelConfig) -> jnp.dtype:
  return jnp.dtype(config.dtype)


def _linear(d_in: int, d_out: int, config: ModelConfig, rngs: nnx.Rngs,
            bias: bool = True) -> nnx.Linear:
  return nnx.Linear(d_in, d_out, use_bias=bias, kernel_init=_INIT, dtype=_dtype(config),
                    rngs=rngs)


def _layer_norm(config: ModelConfig, rngs: nnx.Rngs,
                width: int | None = None) -> nnx.LayerNorm | nnx.RMSNorm:
  """`config.norm_type`'s norm: LayerNorm (with a bias when `config.norm_bias`) or RMSNorm."""
  if config.norm_type == "rms":
    return nnx.RMSNorm(width or config.d_model, epsilon=config.layer_norm_eps,
                       dtype=_dtype(config), rngs=rngs)
  return nnx.LayerNorm(width or config.d_model, epsilon=config.layer_norm_eps,
                       use_bias=config.norm_bias, dtype=_dtype(config), rngs=rngs)


_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "silu": jax.nn.silu,
                "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


def at_queries(full: jax.Array, query_positions: jax.Array, axis: int = 1) -> jax.Array:
  """The entries of `full` [batch, ...] at `query_positions` [batch, K] along
  `axis` (1 for [batch, seq, hidden], 2 for [batch, heads, query, key])."""
  shape = [1] * full.ndim
  shape[0], shape[axis] = query_positions.shape
  return jnp.take_along_axis(full, query_positions.reshape(shape), axis=axis)


def _dropout(x: jax.Array, layer: nnx.Dropout, rngs: nnx.Rngs | None,
             full_shape: tuple[int, ...] | None = None,
             query_positions: jax.Array | None = None, axis: int = 1) -> jax.Array:
  """Dropout of `x`. With `full_shape`, `x` holds the rows at `query_positions`
  (along `axis`) of a tensor of that shape, and gets the part of the mask
  that the whole tensor would draw: the same key, the same bits."""
  if full_shape is None or rngs is None:
    return layer(x, deterministic=rngs is None, rngs=rngs)
  scale = layer(jnp.ones(full_shape, x.dtype), deterministic=False, rngs=rngs)
  return x * at_queries(scale, query_positions, axis)


class PreProcess(nnx.Module):
  """Token embeddings: the seed's `Pre_process`.

  Correct mode (BERT): word + learned position + learned segment embedding
  (+ the exact-match embedding when `config.match_embedding`), LayerNorm,
  dropout; without segments when `config.type_vocab_size` is 0 (DistilBERT);
  positions from `config.position_offset` (RoBERTa); `config.embedding_width`
  wide. With `config.seed_embedding`: word + position embedding plus
  `token_type_ids` and `attention_mask` added as raw numbers to every
  dimension, then dropout, exactly as the seed does. Without
  `config.embedding_norm`, no norm (EuroBERT).
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.seed_embedding = config.seed_embedding
    self.position_offset = config.position_offset
    width = config.embedding_width
    embed = lambda n: nnx.Embed(n, width, embedding_init=_INIT, dtype=_dtype(config), rngs=rngs)
    self.word_embeddings = embed(config.vocab_size)
    self.position_embeddings = embed(config.num_positions) if config.absolute_positions else None
    if config.seed_embedding:
      self.token_type_embeddings = None
      self.norm = None
    else:
      self.token_type_embeddings = embed(config.type_vocab_size) if config.type_vocab_size else None
      self.norm = _layer_norm(config, rngs, width) if config.embedding_norm else None
    self.match_embeddings = embed(2) if config.match_embedding else None
    self.dropout = nnx.Dropout(config.dropout)

  def __call__(
      self,
      input_ids: jax.Array,
      token_type_ids: jax.Array,
      attention_mask: jax.Array,
      match_ids: jax.Array | None = None,
      *,
      positions: jax.Array | None = None,
      rngs: nnx.Rngs | None = None,
  ) -> jax.Array:
    """[batch, seq] int ids, token types, mask (and 0/1 match ids when the
    model has a match embedding; positions, 0, 1, ... by default) ->
    [batch, seq, embedding width]."""
    if positions is None:
      positions = jnp.arange(input_ids.shape[-1])[None, :]
    positions = positions + self.position_offset
    x = self.word_embeddings(input_ids)
    if self.position_embeddings is not None:
      x = x + self.position_embeddings(positions)
    if self.match_embeddings is not None:
      if match_ids is None:
        raise ValueError("this model has a match embedding: pass match_ids [batch, seq].")
      x = x + self.match_embeddings(match_ids)
    if self.seed_embedding:
      x = x + token_type_ids[..., None].astype(x.dtype)
      x = x + attention_mask[..., None].astype(x.dtype)
    else:
      if self.token_type_embeddings is not None:
        x = x + self.token_type_embeddings(token_type_ids)
      if self.norm is not None:
        x = self.norm(x)
    return _dropout(x, self.dropout, rngs)


def attended(attention_mask: jax.Array, query_positions: jax.Array | None = None,
             window: int = 0, positions: jax.Array | None = None) -> jax.Array:
  """[batch, seq] segment ids -> [batch, 1, query, key] booleans: which keys
  each query attends to, those of its own segment; the queries are every
  position or the K positions `query_positions` [batch, K]. Padding queries
  (segment 0) attend to every real key: their outputs are never read.

  With a `window` (ModernBERT's local attention), only the keys at most
  window // 2 `positions` [batch or 1, seq] (the token's place in its pair)
  from the query's."""
  query_segments = (attention_mask if query_positions is None
                    else jnp.take_along_axis(attention_mask, query_positions, axis=1))
  key_segments = attention_mask[:, None, None, :]
  query_segments = query_segments[:, None, :, None]
  keep = (key_segments > 0) & ((key_segments == query_segments) | (query_segments == 0))
  if not window:
    return keep
  positions = jnp.broadcast_to(positions, attention_mask.shape)
  query_at = positions if query_positions is None else at_queries(positions, query_positions)
  distance = jnp.abs(query_at[:, None, :, None] - positions[:, None, None, :])
  return keep & (distance <= window // 2)


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
  """Rotary position embedding (RoPE, transformers' rotate-half layout) of
  `x` [batch, heads, seq, width] at `positions` [batch or 1, seq]: each
  pair (i, i + width / 2) of features turned by the angle position * theta^(-2i / width),
  computed in float32."""
  width = x.shape[-1]
  inverse_frequency = 1.0 / (theta ** (jnp.arange(0, width, 2, dtype=jnp.float32) / width))
  angles = positions[..., None].astype(jnp.float32) * inverse_frequency  # [batch, seq, width/2]
  angles = jnp.concatenate([angles, angles], axis=-1)[:, None]
  first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  turned = jnp.concatenate([-second, first], axis=-1)
  return (x.astype(jnp.float32) * jnp.cos(angles) + turned * jnp.sin(angles)).astype(x.dtype)


class MultiHeadAttention(nnx.Module):
  """Scaled dot-product self-attention with q, k, v and output (`fc`) projections.

  A query attends to the keys of its own segment (`attention_mask`: 0 on
  padding, k on the k-th pair of a packed row), unless
  `config.mask_attention` is False: then every position is attended to, as
  the seed does. `config.attention_implementation` other than "einsum"
  computes the same through `jax.nn.dot_product_attention` (cuDNN's fused
  kernel with "cudnn"), without attention dropout.

  Layer `index` of the encoder may rotate queries and keys by their positions
  (`config.rotary_theta`, RoPE), attend within a sliding window (when
  `config.local_window` and index % `config.global_every` != 0; then with
  `config.local_rotary_theta`), and share each key/value head among
  num_heads // `config.num_kv_heads` query heads (grouped-query attention).
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, index: int = 0):
    d = config.d_model
    self.num_heads = config.num_heads
    self.num_kv_heads = config.num_kv_heads or config.num_heads
    self.use_mask = config.mask_attention
    self.implementation = config.attention_implementation
    local = bool(config.local_window) and index % config.global_every != 0
    self.window = config.local_window if local else 0
    theta = config.local_rotary_theta if local else None
    self.rotary_theta = theta or config.rotary_theta
    kv = d // self.num_heads * self.num_kv_heads
    bias = config.attention_bias
    self.q = _linear(d, d, config, rngs, bias)
    self.k = _linear(d, kv, config, rngs, bias)
    self.v = _linear(d, kv, config, rngs, bias)
    self.fc = _linear(d, d, config, rngs, bias)
    self.attention_dropout = nnx.Dropout(config.attention_dropout)

  def _heads(self, x: jax.Array, heads: int | None = None) -> jax.Array:
    """[batch, seq, heads x width] -> [batch, num_heads, seq, width]: `heads`
    (num_heads by default; num_kv_heads for keys and values), each repeated
    for its group of query heads."""
    b, s, d = x.shape
    heads = heads or self.num_heads
    x = x.reshape(b, s, heads, d // heads).transpose(0, 2, 1, 3)
    return jnp.repeat(x, self.num_heads // heads, axis=1) if heads != self.num_heads else x

  def _queries_keys(self, x: jax.Array, query_positions: jax.Array | None,
                    positions: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """[batch, heads, query, width] queries and [batch, heads, key, width]
    keys, rotated by their `positions` [batch or 1, seq] with RoPE."""
    queries = x if query_positions is None else at_queries(x, query_positions)
    q, k = self._heads(self.q(queries)), self._heads(self.k(x), self.num_kv_heads)
    if self.rotary_theta is None:
      return q, k
    positions = jnp.broadcast_to(positions, x.shape[:2])
    query_at = positions if query_positions is None else at_queries(positions, query_positions)
    return rotary(q, query_at, self.rotary_theta), rotary(k, positions, self.rotary_theta)

  def scores(self, q: jax.Array, k: jax.Array, relative: jax.Array | None,
             query_positions: jax.Array | None, rngs: nnx.Rngs | None) -> jax.Array:
    """[batch, heads, query, head width], [batch, heads, key, head width] ->
    [batch, heads, query, key] float32 scaled dot products."""
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k).astype(jnp.float32)
    return scores / jnp.sqrt(jnp.float32(q.shape[-1]))

  def attention_weights(self, x: jax.Array, attention_mask: jax.Array,
                        query_positions: jax.Array | None = None,
                        relative: jax.Array | None = None,
                        rngs: nnx.Rngs | None = None,
                        positions: jax.Array | None = None) -> jax.Array:
    """[batch, seq, hidden], [batch, seq] segment ids -> [batch, heads, query,
    key] weights; the queries are every position, or the K positions
    `query_positions` [batch, K]. `relative` is the encoder's
    relative-position embeddings, for `RelativeAttention`; `positions`
    [batch or 1, seq] each token's place in its pair, for RoPE and the
    sliding window (0, 1, ... by default).

    Softmax is taken in float32 whatever the compute dtype.
    """
    if positions is None:
      positions = jnp.arange(x.shape[1])[None]
    q, k = self._queries_keys(x, query_positions, positions)
    scores = self.scores(q, k, relative, query_positions, rngs)
    if self.use_mask:
      keep = attended(attention_mask, query_positions, self.window, positions)
      scores = jnp.where(keep, scores, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(scores, axis=-1)

  def __call__(
      self, x: jax.Array, attention_mask: jax.Array, *, rngs: nnx.Rngs | None = None,
      query_positions: jax.Array | None = None, relative: jax.Array | None = None,
      positions: jax.Array | None = None,
  ) -> jax.Array:
    """[batch, seq, hidden], [batch, seq] segment ids -> [batch, seq, hidden],
    or [batch, K, hidden] (the outputs at `query_positions` [batch, K] alone):
    the same values and dropout at a fraction of the work. `positions`
    [batch or 1, seq]: each token's place in its pair (RoPE, sliding window)."""
    if positions is None:
      positions = jnp.arange(x.shape[1])[None]
    if self.implementation != "einsum":
      return self._fused(x, attention_mask, query_positions, positions)
    weights = self.attention_weights(x, attention_mask, query_positions, relative,
                                     rngs, positions).astype(x.dtype)
    b, h, _, s = weights.shape
    full_shape = None if query_positions is None else (b, h, s, s)
    weights = _dropout(weights, self.attention_dropout, rngs, full_shape, query_positions, 2)
    v = self._heads(self.v(x), self.num_kv_heads)
    out = jnp.einsum("bhqk,bhkd->bhqd", weights, v)
    b, h, s, dh = out.shape
    return self.fc(out.transpose(0, 2, 1, 3).reshape(b, s, h * dh))

  def _fused(self, x: jax.Array, attention_mask: jax.Array,
             query_positions: jax.Array | None, positions: jax.Array) -> jax.Array:
    """`__call__` through `jax.nn.dot_product_attention` (no attention dropout)."""
    q, k = self._queries_keys(x, query_positions, positions)
    seq_major = lambda y: y.transpose(0, 2, 1, 3)  # [batch, heads, seq, width] -> [b, s, h, w]
    out = jax.nn.dot_product_attention(
        seq_major(q), seq_major(k), seq_major(self._heads(self.v(x), self.num_kv_heads)),
        mask=attended(attention_mask, query_positions, self.window, positions),
        implementation=None if self.implementation == "auto" else self.implementation)
    return self.fc(out.reshape(*out.shape[:2], -1))


def log_bucket_positions(relative: np.ndarray, buckets: int, max_position: int) -> np.ndarray:
  """DeBERTa's bucketed relative positions (ints): exact within buckets // 2
  of zero, logarithmic beyond, up to max_position; computed in float32, as
  transformers does, so that the buckets' edges fall alike."""
  mid = buckets // 2
  near = (relative < mid) & (relative > -mid)
  absolute = np.where(near, mid - 1, np.abs(relative)).astype(np.float32)
  log_position = np.ceil(np.log(absolute / np.float32(mid))
                         / np.log(np.float32((max_position - 1) / mid))
                         * np.float32(mid - 1)) + np.float32(mid)
  return np.where(absolute <= mid, relative, log_position * np.sign(relative)).astype(np.int32)


class RelativeAttention(MultiHeadAttention):
  """DeBERTa's disentangled attention: content-to-content scores plus
  content-to-position (c2p: each query against the key's relative position)
  and position-to-content (p2c: each key against the query's) scores, from
  the encoder's relative-position embeddings projected by the content
  projections (`share_relative_key`) or their own (`pos_k`, `pos_q`); all
  divided by sqrt(head width x (1 + number of position terms)). The
  position embeddings take dropout in every layer, as in transformers."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, index: int = 0):
    super().__init__(config, rngs=rngs, index=index)
    self.types = tuple(config.relative_attention_types.split("|"))
    self.span = config.position_buckets or config.max_relative_positions
    self.buckets, self.max_relative = config.position_buckets, config.max_relative_positions
    own = not config.share_relative_key
    d = config.d_model
    self.pos_k = _linear(d, d, config, rngs) if own and "c2p" in self.types else None
    self.pos_q = _linear(d, d, config, rngs) if own and "p2c" in self.types else None
    self.position_dropout = nnx.Dropout(config.dropout)

  def positions(self, query_positions: jax.Array | None, num_keys: int) -> jax.Array:
    """[batch or 1, query, key] rows of the relative embeddings: bucket(i - j)
    + span for query position i (every position, or `query_positions`
    [batch, K]) and key position j, clipped to the table. Positions are the
    row's: within one packed pair, i - j is the pair's own distance."""
    distance = np.arange(-(num_keys - 1), num_keys)  # every i - j, as a static table
    if self.buckets > 0:
      distance = log_bucket_positions(distance, self.buckets, self.max_relative)
    table = jnp.asarray(np.clip(distance + self.span, 0, 2 * self.span - 1))
    queries = jnp.arange(num_keys)[None] if query_positions is None else query_positions
    return table[queries[:, :, None] - jnp.arange(num_keys)[None, None, :] + num_keys - 1]

  def scores(self, q: jax.Array, k: jax.Array, relative: jax.Array | None,
             query_positions: jax.Array | None, rngs: nnx.Rngs | None) -> jax.Array:
    relative = _dropout(relative, self.position_dropout, rngs)[None]  # [1, 2 span, hidden]
    index = self.positions(query_positions, k.shape[2])[:, None]  # [batch or 1, 1, query, key]
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k).astype(jnp.float32)
    if "c2p" in self.types:
      position_keys = self._heads((self.pos_k or self.k)(relative))[0]  # [heads, 2 span, width]
      c2p = jnp.einsum("bhqd,hrd->bhqr", q, position_keys).astype(jnp.float32)
      scores = scores + jnp.take_along_axis(c2p, index, axis=-1)
    if "p2c" in self.types:
      position_queries = self._heads((self.pos_q or self.q)(relative))[0]
      p2c = jnp.einsum("bhkd,hrd->bhkr", k, position_queries).astype(jnp.float32)
      scores = scores + jnp.take_along_axis(p2c, jnp.swapaxes(index, 2, 3),
                                            axis=-1).swapaxes(2, 3)
    return scores / jnp.sqrt(jnp.float32(q.shape[-1] * (1 + len(self.types))))


class EncoderLayer(nnx.Module):
  """Attention then a two-layer feed-forward block, each with a residual and
  LayerNorm: after the residual (`norm="post"`, BERT and the seed) or before
  the sublayer (`norm="pre"`).

  The feed-forward block is output(activation(intermediate(x))), or gated
  with `config.gated_feed_forward`: output(activation(intermediate(x)) *
  up(x)) (GeGLU, SwiGLU). Layer `index` 0 of a pre-LN encoder without
  `config.first_attention_norm` has no attention norm (ModernBERT)."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, index: int = 0):
    self.pre_norm = config.norm == "pre"
    self.activation = config.activation
    attention = RelativeAttention if config.relative_attention else MultiHeadAttention
    self.attention = attention(config, rngs=rngs, index=index)
    unnormed = self.pre_norm and index == 0 and not config.first_attention_norm
    self.attention_norm = None if unnormed else _layer_norm(config, rngs)
    in_bias = config.feed_forward_in_bias
    self.intermediate = _linear(config.d_model, config.d_ff, config, rngs, in_bias)
    self.up = (_linear(config.d_model, config.d_ff, config, rngs, in_bias)
               if config.gated_feed_forward else None)
    self.output = _linear(config.d_ff, config.d_model, config, rngs, config.feed_forward_out_bias)
    self.output_norm = _layer_norm(config, rngs)
    self.dropout = nnx.Dropout(config.dropout)

  def _feed_forward(self, x: jax.Array) -> jax.Array:
    hidden = _ACTIVATIONS[self.activation](self.intermediate(x))
    return self.output(hidden if self.up is None else hidden * self.up(x))

  def __call__(
      self, x: jax.Array, attention_mask: jax.Array, *, rngs: nnx.Rngs | None = None,
      query_positions: jax.Array | None = None, relative: jax.Array | None = None,
      positions: jax.Array | None = None,
  ) -> jax.Array:
    """[batch, seq, hidden], [batch, seq] segment ids -> [batch, seq, hidden],
    or [batch, K, hidden] with `query_positions` [batch, K]: those positions
    attend to every key, and only their rows go through the rest of the
    layer. `relative`: the encoder's relative-position embeddings (DeBERTa);
    `positions` [batch or 1, seq]: each token's place in its pair (RoPE,
    sliding window)."""
    full_shape = None if query_positions is None else x.shape
    attend = lambda y: self.attention(y, attention_mask, rngs=rngs,
                                      query_positions=query_positions, relative=relative,
                                      positions=positions)
    drop = lambda y: _dropout(y, self.dropout, rngs, full_shape, query_positions)
    residual = x if query_positions is None else at_queries(x, query_positions)
    if self.pre_norm:
      normed = x if self.attention_norm is None else self.attention_norm(x)
      x = residual + drop(attend(normed))
      return x + drop(self._feed_forward(self.output_norm(x)))
    x = self.attention_norm(residual + drop(attend(x)))
    return self.output_norm(x + drop(self._feed_forward(x)))


def _run_layer(layer: EncoderLayer, x: jax.Array, attention_mask: jax.Array,
               rngs: nnx.Rngs | None, query_positions: jax.Array | None,
               relative: jax.Array | None, positions: jax.Array | None) -> jax.Array:
  """`layer(x, ...)` as a function of all its inputs, for `nnx.remat`."""
  return layer(x, attention_mask, rngs=rngs, query_positions=query_positions,
               relative=relative, positions=positions)


class Encoder(nnx.Module):
  """`PreProcess` (projected to d_model when the embeddings are narrower, as
  in ELECTRA) then `num_layers` encoder layers (and a final LayerNorm when
  pre-LN). With `config.remat` each layer's activations are recomputed in
  the backward pass rather than kept."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.remat = config.remat
    self.embeddings = PreProcess(config, rngs=rngs)
    self.embeddings_project = (_linear(config.embedding_width, config.d_model, config, rngs)
                               if config.embedding_width != config.d_model else None)
    self.layers = nnx.List([EncoderLayer(config, rngs=rngs, index=i)
                            for i in range(config.num_layers)])
    self.final_norm = _layer_norm(config, rngs) if config.norm == "pre" else None
    span = config.position_buckets or config.max_relative_positions
    self.relative_embeddings = nnx.Embed(
        2 * span, config.d_model, embedding_init=_INIT, dtype=_dtype(config),
        rngs=rngs) if config.relative_attention else None
    self.relative_norm = (_layer_norm(config, rngs) if config.relative_attention
                          and config.norm_relative_embeddings else None)

  def __call__(
      self,
      input_ids: jax.Array,
      token_type_ids: jax.Array,
      attention_mask: jax.Array,
      match_ids: jax.Array | None = None,
      *,
      positions: jax.Array | None = None,
      query_positions: jax.Array | None = None,
      rngs: nnx.Rngs | None = None,
  ) -> jax.Array:
    """[batch, seq] ids, token types, segment ids (, match ids, positions) ->
    [batch, seq, hidden].

    With `query_positions` [batch, K]: [batch, K, hidden], the states at those
    positions alone, equal to the full output's (dropout included); the last
    layer then runs its queries, feed-forward and norms on those K rows.
    """
    x = self.embeddings(input_ids, token_type_ids, attention_mask, match_ids,
                        positions=positions, rngs=rngs)
    if self.embeddings_project is not None:
      x = self.embeddings_project(x)
    relative = None
    if self.relative_embeddings is not None:
      relative = self.relative_embeddings.embedding.get_value().astype(x.dtype)
      relative = self.relative_norm(relative) if self.relative_norm is not None else relative
    run_layer = nnx.remat(_run_layer) if self.remat else _run_layer
    for i, layer in enumerate(self.layers):
      last = i == len(self.layers) - 1
      x = run_layer(layer, x, attention_mask, rngs, query_positions if last else None,
                    relative, positions)
    if self.final_norm is not None:
      x = self.final_norm(x)
    return x


def segment_means(states: jax.Array, attention_mask: jax.Array, num_pairs: int) -> jax.Array:
  """[batch, seq, hidden] states, [batch, seq] segment ids -> [batch,
  num_pairs, hidden]: slot k the mean over the tokens of segment k + 1 (zero
  for an empty slot)."""
  slots = attention_mask[:, None, :] == jnp.arange(1, num_pairs + 1)[None, :, None]
  slots = slots.astype(states.dtype)  # [batch, num_pairs, seq]
  counts = jnp.maximum(slots.sum(axis=-1, keepdims=True), 1)
  return jnp.einsum("bks,bsh->bkh", slots, states) / counts


class PairClassifier(nnx.Module):
  """Encoder, first-token ([CLS] / <s>) pooling, an optional pooler (dense +
  `config.pooler_activation`, after dropout with `config.pooler_input_dropout`),
  dropout and `config.num_labels` outputs: one logit of a binary task (the
  score that the pair is a paraphrase), a regression score, or a logit per class.

  The pooler and the logits cover the heads of the BERT family: BERT's pooler
  (tanh), RoBERTa's and ELECTRA's classification heads (dropout, dense, tanh
  or GELU), DistilBERT's pre_classifier (ReLU); a 2-label head becomes one
  logit, the difference of its two. With `config.pooling` "mean" the pair is
  the mean of its tokens' states instead of the first's (ModernBERT), with
  "late" the mean of the pooler over each token (EuroBERT); `config.pooler_norm`
  adds a norm after the pooler (ModernBERT's head).
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.encoder = Encoder(config, rngs=rngs)
    self.pooling = config.pooling
    self.pooler = (_linear(config.d_model, config.d_model, config, rngs, config.pooler_bias)
                   if config.pooler else None)
    self.pooler_norm = _layer_norm(config, rngs) if config.pooler_norm else None
    self.pooler_activation = config.pooler_activation
    self.pooler_dropout = nnx.Dropout(config.dropout) if config.pooler_input_dropout else None
    dropout = config.dropout if config.classifier_dropout is None else config.classifier_dropout
    self.dropout = nnx.Dropout(dropout)
    self.classifier = _linear(config.d_model, config.num_labels, config, rngs)

  def pooled(
      self,
      input_ids: jax.Array,
      token_type_ids: jax.Array,
      attention_mask: jax.Array,
      match_ids: jax.Array | None = None,
      *,
      positions: jax.Array | None = None,
      first_positions: jax.Array | None = None,
      rngs: nnx.Rngs | None = None,
  ) -> jax.Array:
    """[batch, seq] inputs -> [batch, hidden] pair representations, or
    [batch, K, hidden], one per pair starting at `first_positions` [batch, K]
    (pair k holding the tokens of segment k + 1)."""
    one_pair = first_positions is None
    if one_pair:
      first_positions = jnp.zeros((input_ids.shape[0], 1), jnp.int32)
    if self.pooling == "first":
      first = self.encoder(input_ids, token_type_ids, attention_mask, match_ids,
                           positions=positions, query_positions=first_positions, rngs=rngs)
      pooled = self.pool(first, rngs)
    else:
      states = self.encoder(input_ids, token_type_ids, attention_mask, match_ids,
                            positions=positions, rngs=rngs)
      if self.pooling == "late":
        states = self.pool(states, rngs)
      pooled = segment_means(states, attention_mask, first_positions.shape[1])
      if self.pooling == "mean":
        pooled = self.pool(pooled, rngs)
    return pooled[:, 0] if one_pair else pooled

  def pool(self, first: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
    """[..., hidden] first-token (or mean, or each token's) states ->
    [..., hidden] through the pooler (and its norm)."""
    if self.pooler is None:
      return first
    if self.pooler_dropout is not None:
      first = _dropout(first, self.pooler_dropout, rngs)
    pooled = _ACTIVATIONS[self.pooler_activation](self.pooler(first))
    return pooled if self.pooler_norm is None else self.pooler_norm(pooled)

  def __call__(
      self,
      input_ids: jax.Array,
      token_type_ids: jax.Array,
      attention_mask: jax.Array,
      match_ids: jax.Array | None = None,
      *,
      positions: jax.Array | None = None,
      first_positions: jax.Array | None = None,
      rngs: nnx.Rngs | None = None,
  ) -> jax.Array:
    """[batch, seq] inputs -> [batch] float32 logits, or [batch, K] with
    `first_positions` [batch, K] (packed rows: one logit per pair slot);
    with `num_labels` N above 1, [batch, N] or [batch, K, N]."""
    pooled = self.pooled(input_ids, token_type_ids, attention_mask, match_ids,
                         positions=positions, first_positions=first_positions, rngs=rngs)
    logits = self.classifier(_dropout(pooled, self.dropout, rngs)).astype(jnp.float32)
    return logits[..., 0] if logits.shape[-1] == 1 else logits


class MaskedLM(nnx.Module):
  """Encoder and BERT's masked-language-model head: dense, the encoder's
  activation, LayerNorm,
  then logits over the vocabulary from the word embeddings themselves (the
  decoder is tied to `encoder.embeddings.word_embeddings`) plus a bias.

  Its `encoder` is the `PairClassifier`'s, so pretrained weights move
  across by path (`flax_mrpc.hf.load.load_into`).
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.encoder = Encoder(config, rngs=rngs)
    self.transform = _linear(config.d_model, config.embedding_width, config, rngs)
    self.transform_norm = _layer_norm(config, rngs, config.embedding_width)
    self.output_bias = nnx.Param(jnp.zeros((config.vocab_size,), jnp.float32))
    self.activation = config.activation

  def __call__(
      self,
      input_ids: jax.Array,
      token_type_ids: jax.Array,
      attention_mask: jax.Array,
      mlm_positions: jax.Array,
      match_ids: jax.Array | None = None,
      *,
      positions: jax.Array | None = None,
      rngs: nnx.Rngs | None = None,
  ) -> jax.Array:
    """[batch, seq] inputs (segment ids in `attention_mask`, see the module
    docstring; match ids when the model has a match embedding) and [batch, P]
    `mlm_positions` -> [batch, P, vocab] float32 logits of the tokens at
    those positions. The last layer runs only on those P rows."""
    hidden = self.encoder(input_ids, token_type_ids, attention_mask, match_ids,
                          positions=positions, query_positions=mlm_positions, rngs=rngs)
    hidden = self.transform_norm(_ACTIVATIONS[self.activation](self.transform(hidden)))
    embedding = self.encoder.embeddings.word_embeddings.embedding.get_value()
    logits = hidden @ embedding.astype(hidden.dtype).T
    return logits.astype(jnp.float32) + self.output_bias.get_value()
