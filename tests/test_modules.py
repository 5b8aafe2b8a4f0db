import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_mrpc.config import ModelConfig
from flax_mrpc.modules import Encoder, EncoderLayer, MultiHeadAttention, PairClassifier, PreProcess

SMALL = ModelConfig(vocab_size=100, max_length=128, d_model=32, num_heads=4, d_ff=64,
                    num_layers=2)
B, S = 3, 16


def _inputs(seq=S, pad_from=10):
  ids = np.zeros((B, seq), np.int32)
  ids[:, :pad_from] = np.random.default_rng(0).integers(5, 100, (B, pad_from))
  types = np.zeros((B, seq), np.int32)
  types[:, 5:pad_from] = 1
  mask = np.zeros((B, seq), np.int32)
  mask[:, :pad_from] = 1
  return jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask)


@pytest.mark.parametrize("seed_like", [False, True])
def test_shapes_of_every_module(seed_like):
  config = ModelConfig(**{**SMALL.__dict__, "seed_embedding": seed_like,
                          "mask_attention": not seed_like})
  rngs = nnx.Rngs(0)
  ids, types, mask = _inputs()
  x = PreProcess(config, rngs=rngs)(ids, types, mask)
  chex.assert_shape(x, (B, S, 32))
  attention = MultiHeadAttention(config, rngs=rngs)
  chex.assert_shape(attention(x, mask), (B, S, 32))
  chex.assert_shape(attention.attention_weights(x, mask), (B, 4, S, S))
  chex.assert_shape(EncoderLayer(config, rngs=rngs)(x, mask), (B, S, 32))
  chex.assert_shape(Encoder(config, rngs=rngs)(ids, types, mask), (B, S, 32))
  logits = PairClassifier(config, rngs=rngs)(ids, types, mask)
  chex.assert_shape(logits, (B,))
  chex.assert_type(logits, jnp.float32)


def test_attention_gives_padded_keys_zero_weight():
  ids, types, mask = _inputs()
  x = PreProcess(SMALL, rngs=nnx.Rngs(0))(ids, types, mask)
  weights = MultiHeadAttention(SMALL, rngs=nnx.Rngs(1)).attention_weights(x, mask)
  np.testing.assert_array_equal(np.asarray(weights[..., 10:]), 0.0)
  np.testing.assert_allclose(np.asarray(weights.sum(-1)), 1.0, rtol=1e-6)


def test_unmasked_attention_attends_to_padding():
  config = ModelConfig(**{**SMALL.__dict__, "mask_attention": False})
  ids, types, mask = _inputs()
  x = PreProcess(config, rngs=nnx.Rngs(0))(ids, types, mask)
  weights = MultiHeadAttention(config, rngs=nnx.Rngs(1)).attention_weights(x, mask)
  assert float(weights[..., 10:].min()) > 0.0


def _logit_padded_to(model, seq):
  ids, types, mask = _inputs(seq=seq, pad_from=10)
  return np.asarray(model(ids, types, mask))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_padding_invariance_with_masking(norm):
  config = ModelConfig(**{**SMALL.__dict__, "norm": norm, "pooler": True})
  model = PairClassifier(config, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(_logit_padded_to(model, 64), _logit_padded_to(model, 128),
                             atol=1e-5)


def test_unmasked_attention_breaks_padding_invariance():
  config = ModelConfig(**{**SMALL.__dict__, "mask_attention": False})
  model = PairClassifier(config, rngs=nnx.Rngs(0))
  assert np.abs(_logit_padded_to(model, 64) - _logit_padded_to(model, 128)).max() > 1e-4


def test_the_seed_embedding_alone_keeps_padding_invariance():
  config = ModelConfig(**{**SMALL.__dict__, "seed_embedding": True})
  model = PairClassifier(config, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(_logit_padded_to(model, 64), _logit_padded_to(model, 128),
                             atol=1e-5)


def test_seed_embedding_adds_raw_ids_and_mask_to_every_dimension():
  config = ModelConfig(**{**SMALL.__dict__, "seed_embedding": True})
  layer = PreProcess(config, rngs=nnx.Rngs(0))
  ids, types, mask = _inputs()
  out = layer(ids, types, mask)
  plain = layer.word_embeddings(ids) + layer.position_embeddings(jnp.arange(S)[None])
  expected = plain + types[..., None] + mask[..., None]
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-6)


def test_dropout_only_with_rngs():
  model = PairClassifier(SMALL, rngs=nnx.Rngs(0))
  ids, types, mask = _inputs()
  a, b = model(ids, types, mask), model(ids, types, mask)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  c = model(ids, types, mask, rngs=nnx.Rngs(dropout=1))
  d = model(ids, types, mask, rngs=nnx.Rngs(dropout=2))
  assert np.abs(np.asarray(c) - np.asarray(d)).max() > 1e-6


def test_bfloat16_compute_keeps_float32_params():
  config = ModelConfig(**{**SMALL.__dict__, "dtype": "bfloat16", "activation": "gelu"})
  model = PairClassifier(config, rngs=nnx.Rngs(0))
  _, params = nnx.split(model)
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  ids, types, mask = _inputs()
  hidden = model.encoder(ids, types, mask)
  assert hidden.dtype == jnp.bfloat16
  assert np.isfinite(np.asarray(model(ids, types, mask))).all()


@pytest.mark.parametrize("variant", [
    {"norm": "post"}, {"norm": "pre"}, {"seed_embedding": True, "mask_attention": False},
    {"embedding_size": 16, "type_vocab_size": 0, "position_offset": 2,
     "max_positions": 130},  # ELECTRA, RoBERTa
    {"relative_attention": True, "position_buckets": 8, "max_relative_positions": 32,
     "share_relative_key": False, "absolute_positions": False,
     "norm_relative_embeddings": True},  # DeBERTa
], ids=["post-LN", "pre-LN", "seed", "projected embeddings", "relative attention"])
def test_first_token_only_equals_the_full_encoder_under_dropout(variant):
  config = ModelConfig(**{**SMALL.__dict__, **variant, "dropout": 0.3,
                          "attention_dropout": 0.3})
  encoder = Encoder(config, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(encoder)
  ids, types, mask = _inputs()

  def first_state(params, first_token_only):
    model = nnx.merge(graphdef, params)
    queries = jnp.zeros((B, 1), jnp.int32) if first_token_only else None
    hidden = model(ids, types, mask, rngs=nnx.Rngs(dropout=7), query_positions=queries)
    return hidden[:, 0]

  full, pruned = first_state(params, False), first_state(params, True)
  np.testing.assert_allclose(np.asarray(pruned), np.asarray(full), rtol=1e-5, atol=1e-6)
  without_dropout = nnx.merge(graphdef, params)(ids, types, mask)[:, 0]
  assert np.abs(np.asarray(full - without_dropout)).max() > 1e-3  # dropout was on
  loss = lambda params, flag: jnp.sum(jnp.sin(first_state(params, flag)))
  grads_full, grads_pruned = jax.grad(loss)(params, False), jax.grad(loss)(params, True)
  for a, b in zip(jax.tree.leaves(grads_full), jax.tree.leaves(grads_pruned)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_bad_model_config_is_refused():
  with pytest.raises(ValueError, match="divisible"):
    ModelConfig(d_model=30, num_heads=4)


def test_match_embedding_changes_the_output_and_is_required():
  config = ModelConfig(**{**SMALL.__dict__, "match_embedding": True})
  model = PairClassifier(config, rngs=nnx.Rngs(0))
  ids, types, mask = _inputs()
  no_match = model(ids, types, mask, jnp.zeros_like(ids))
  some_match = model(ids, types, mask, (ids % 2) * mask)
  assert np.abs(np.asarray(no_match) - np.asarray(some_match)).max() > 1e-5
  with pytest.raises(ValueError, match="match_ids"):
    model(ids, types, mask)
