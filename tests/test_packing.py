"""Packed batches: the same logits and gradients as one pair per row,
attention confined to each pair, and a deterministic packing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_mrpc.config import ModelConfig
from flax_mrpc.data import packing, tokenization
from flax_mrpc.training.scoring import predict_probabilities
from flax_mrpc.modules import MultiHeadAttention, PairClassifier, PreProcess
from flax_mrpc.training import steps

ROW = 32
N = 11  # pairs of 4 to 20 tokens: two or three to a row
BASE = dict(vocab_size=100, max_length=ROW, d_model=32, num_heads=4, d_ff=64, num_layers=2,
            dropout=0.0, attention_dropout=0.0)
VARIANTS = {
    "post-LN, match embedding": {"match_embedding": True},
    "pre-LN, pooler": {"norm": "pre", "pooler": True},
    "RoBERTa/ELECTRA: offset positions, no segments, projected embeddings": {
        "position_offset": 2, "max_positions": ROW + 2, "type_vocab_size": 0,
        "embedding_size": 16},
    "DeBERTa: relative attention": {
        "relative_attention": True, "position_buckets": 8, "max_relative_positions": 16,
        "share_relative_key": False, "absolute_positions": False,
        "norm_relative_embeddings": True},
}


def pairs(seed=0) -> tokenization.EncodedSplit:
  """N pairs of random tokens, padded to ROW: two segments, match ids, labels."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(4, 21, N)
  real = np.arange(ROW)[None, :] < lengths[:, None]
  return tokenization.EncodedSplit(
      input_ids=(rng.integers(5, 100, (N, ROW)) * real).astype(np.int32),
      token_type_ids=((np.arange(ROW)[None, :] >= lengths[:, None] // 2) & real).astype(np.int32),
      attention_mask=real.astype(np.int32),
      match_ids=(rng.integers(0, 2, (N, ROW)) * real).astype(np.int32),
      labels=rng.integers(0, 2, N).astype(np.int32), idx=np.arange(N), num_truncated=0)


def packed(split, rows_per_batch=8):
  """The split packed into one batch, and the pair index of each real slot."""
  features = split.features()
  rows = packing.pack_rows(features["attention_mask"].sum(axis=1), np.arange(N), ROW)
  (batch,) = packing.packed_batches(features, rows, rows_per_batch)
  return {k: jnp.asarray(v) for k, v in batch.items()}, np.concatenate(rows)


def logits_of(graphdef, params, batch, rngs=None):
  model = nnx.merge(graphdef, params)
  return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
               batch["match_ids"], positions=batch.get("positions"),
               first_positions=batch.get("first_positions"), rngs=rngs)


def assert_packed_equals_unpacked(graphdef, params):
  """The pairs() packed several to a row give the logits of one pair per row
  (within 1e-5), and the same loss and gradients (within 1e-4)."""
  split = pairs()
  batch, order = packed(split)
  assert int(batch["weights"].sum()) == N and batch["weights"].sum(axis=1).max() >= 2
  unpacked = {k: jnp.asarray(v) for k, v in split.features().items()}
  unpacked["weights"] = jnp.ones(N)

  # Compiled whole: op by op, the gradients take tens of seconds on a CPU.
  logits = jax.jit(functools.partial(logits_of, graphdef))
  one_per_row = logits(params, unpacked)
  slots = logits(params, batch)
  np.testing.assert_allclose(np.asarray(slots)[np.asarray(batch["weights"]) > 0],
                             np.asarray(one_per_row)[order], rtol=1e-5, atol=1e-5)

  @jax.jit
  def loss_and_grads(params, batch):
    return jax.value_and_grad(lambda p: steps.weighted_bce_sum(
        logits_of(graphdef, p, batch), batch["labels"], batch["weights"], pos_weight=0.5))(params)

  (loss_packed, grads_packed), (loss_unpacked, grads_unpacked) = (
      loss_and_grads(params, batch), loss_and_grads(params, unpacked))
  np.testing.assert_allclose(float(loss_packed), float(loss_unpacked), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads_packed), jax.tree.leaves(grads_unpacked)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_packed_rows_give_the_logits_and_gradients_of_one_pair_per_row(variant):
  config = ModelConfig(**{**BASE, **variant})
  model = PairClassifier(config, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  # Move the weights far from their N(0, 0.02) init, so that every path matters.
  params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape),
                        params)
  assert_packed_equals_unpacked(graphdef, params)


def test_no_attention_weight_crosses_a_pair_boundary():
  config = ModelConfig(**BASE)
  batch, _ = packed(pairs())
  segments = np.asarray(batch["attention_mask"])
  x = PreProcess(config, rngs=nnx.Rngs(0))(batch["input_ids"], batch["token_type_ids"],
                                           batch["attention_mask"], positions=batch["positions"])
  weights = np.asarray(MultiHeadAttention(config, rngs=nnx.Rngs(1)).attention_weights(
      x, batch["attention_mask"]))  # [rows, heads, query, key]
  query, key = segments[:, None, :, None], segments[:, None, None, :]
  crossing = np.broadcast_to((query > 0) & (query != key), weights.shape)
  assert crossing.sum() > 0
  assert np.all(weights[crossing] == 0.0)
  real_queries = np.broadcast_to(segments[:, None, :] > 0, weights.shape[:3])
  within = np.where((query > 0) & (query == key), weights, 0.0).sum(-1)
  np.testing.assert_allclose(within[real_queries], 1.0, rtol=1e-6)


def test_rows_restart_positions_and_hold_each_pair_once():
  split = pairs()
  batch, order = packed(split)
  assert sorted(order) == list(range(N))
  first = np.asarray(batch["first_positions"])
  positions, segments = np.asarray(batch["positions"]), np.asarray(batch["attention_mask"])
  for row in range(len(first)):
    for slot in range(int(np.asarray(batch["weights"])[row].sum())):
      tokens = segments[row] == slot + 1
      assert positions[row, first[row, slot]] == 0
      np.testing.assert_array_equal(positions[row][tokens], np.arange(tokens.sum()))


def test_packing_is_a_pure_function_of_seed_and_epoch():
  lengths = np.random.default_rng(0).integers(10, 90, 500)
  epoch = functools.partial(packing.epoch_rows, lengths, 128)
  same = [np.concatenate(rows) for rows in (epoch(0, 1), epoch(0, 1))]
  np.testing.assert_array_equal(*same)
  assert not np.array_equal(np.concatenate(epoch(0, 2)), same[0])
  assert not np.array_equal(np.concatenate(epoch(1, 1)), same[0])
  for rows in (epoch(0, 1), epoch(3, 7)):
    assert sorted(np.concatenate(rows)) == list(range(500))
    assert max(lengths[row].sum() for row in rows) <= 128
    assert max(len(row) for row in rows) <= packing.PAIRS_PER_ROW
    assert lengths.sum() / (128 * len(rows)) > 0.9  # almost no padding


def plain_best_fit(lengths, order, row_length, pairs_per_row):
  """Best-fit decreasing written out: each pair, longest first, into an open
  row with the least room that holds it (of those, the one that reached
  that room last), with a scan over the rooms."""
  rows, open_by_room = [], [[] for _ in range(row_length + 1)]
  for pair in order[np.argsort(-lengths[order], kind="stable")]:
    length = int(lengths[pair])
    room = next((r for r in range(length, row_length + 1) if open_by_room[r]), None)
    if room is None:
      row, room = len(rows), row_length
      rows.append([])
    else:
      row = open_by_room[room].pop()
    rows[row].append(int(pair))
    if len(rows[row]) < pairs_per_row:
      open_by_room[room - length].append(row)
  return rows


@pytest.mark.parametrize("seed", range(4))
def test_packing_is_best_fit_decreasing_with_the_same_row_count_every_epoch(seed):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, [128, 40, 9, 128][seed] + 1, size=[700, 300, 50, 1][seed])
  order = rng.permutation(len(lengths))
  rows = packing.pack_rows(lengths, order, 128)
  assert [list(r) for r in rows] == plain_best_fit(lengths, order, 128, packing.PAIRS_PER_ROW)
  counts = {len(packing.epoch_rows(lengths, 128, seed, epoch)) for epoch in range(1, 5)}
  assert counts == {len(rows)}


def test_a_pair_longer_than_the_row_is_truncated_first(splits, tmp_path):
  tokenizer = tokenization.train_wordpiece(
      [s for e in splits["train"][:200] for s in (e.sentence1, e.sentence2)], 300, True, tmp_path)
  split = tokenization.encode_pairs(tokenizer, splits["train"][:200], max_length=24)
  assert split.num_truncated > 0  # reported, as without packing
  lengths = split.attention_mask.sum(axis=1)
  rows = packing.pack_rows(lengths, np.arange(200), 24)
  assert sorted(np.concatenate(rows)) == list(range(200))
  with pytest.raises(ValueError, match="truncate"):
    packing.pack_rows(lengths + 1, np.arange(200), 24)


def test_packed_evaluation_scores_every_pair_in_order():
  config = ModelConfig(**BASE)
  graphdef, params = nnx.split(PairClassifier(config, rngs=nnx.Rngs(0)))
  eval_fn = jax.jit(functools.partial(steps.eval_step, graphdef=graphdef))
  split = pairs()
  padded = predict_probabilities(eval_fn, params, split, batch_size=4)
  packed_scores = predict_probabilities(eval_fn, params, split, batch_size=2, pack=True)
  np.testing.assert_allclose(packed_scores, padded, rtol=1e-5, atol=1e-6)


FUSED_VARIANTS = ["post-LN, match embedding",
                  "RoBERTa/ELECTRA: offset positions, no segments, projected embeddings"]


@pytest.mark.parametrize("layout", ["one pair per row", "packed"])
@pytest.mark.parametrize("variant", [VARIANTS[k] for k in FUSED_VARIANTS], ids=FUSED_VARIANTS)
def test_dot_product_attention_gives_the_einsum_s_logits_and_gradients(variant, layout):
  """`attention_implementation="xla"` (jax.nn.dot_product_attention) against
  the einsum path: the same weights, masks and dropout on the hidden states."""
  split = pairs()
  if layout == "packed":
    batch, _ = packed(split)
  else:
    batch = {k: jnp.asarray(v) for k, v in split.features().items()}
    batch["weights"] = jnp.ones(N)
  models = {}
  for implementation in ("einsum", "xla"):
    config = ModelConfig(**{**BASE, **variant, "dropout": 0.1,
                            "attention_implementation": implementation})
    graphdef, params = nnx.split(PairClassifier(config, rngs=nnx.Rngs(0)))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape),
                          params)
    models[implementation] = (graphdef, params)

  def loss(graphdef, params, rngs):
    return steps.weighted_bce_sum(logits_of(graphdef, params, batch, rngs), batch["labels"],
                                  batch["weights"], pos_weight=0.5)

  for rngs in (None, 7):  # deterministic, then with dropout on the hidden states
    einsum, fused = (logits_of(*models[i], batch, rngs and nnx.Rngs(dropout=rngs))
                     for i in ("einsum", "xla"))
    np.testing.assert_allclose(np.asarray(fused), np.asarray(einsum), rtol=1e-5, atol=1e-5)
  grads = [jax.grad(lambda p, g=models[i][0]: loss(g, p, nnx.Rngs(dropout=7)))(models[i][1])
           for i in ("einsum", "xla")]  # with dropout on the hidden states
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4)

def test_dot_product_attention_refuses_attention_dropout_and_relative_attention():
  for refused in ({"attention_dropout": 0.1}, VARIANTS["DeBERTa: relative attention"],
                  {"mask_attention": False}):
    with pytest.raises(ValueError, match="no dropout on the attention weights"):
      ModelConfig(**{**BASE, **refused, "attention_implementation": "xla"})
