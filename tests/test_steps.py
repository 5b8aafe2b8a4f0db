import functools

import jax
import numpy as np
import pytest
from flax import nnx

from flax_mrpc.config import ModelConfig, TrainConfig
from flax_mrpc.data import batching, tokenization
from flax_mrpc.training.scoring import predict_probabilities
from flax_mrpc.modules import PairClassifier
from flax_mrpc.training import steps
from flax_mrpc.training.optimizer import make_optimizer

CONFIG = ModelConfig(vocab_size=50, max_length=12, d_model=16, num_heads=2, d_ff=32,
                     dropout=0.0, attention_dropout=0.0)


def _np_bce(logits, labels, pos_weight):
  p = 1 / (1 + np.exp(-logits))
  return -(pos_weight * labels * np.log(p) + (1 - labels) * np.log(1 - p))


@pytest.mark.parametrize("pos_weight", [None, 0.5, 2.0])
def test_loss_is_the_hand_computed_weighted_bce(pos_weight):
  logits = np.array([2.0, -1.0, 0.3, -0.7], np.float32)
  labels = np.array([1, 0, 1, 1], np.int32)
  weights = np.array([1, 1, 1, 0], np.float32)
  expected = _np_bce(logits[:3], labels[:3], 1.0 if pos_weight is None else pos_weight).sum()
  got = steps.weighted_bce_sum(logits, labels, weights, pos_weight)
  np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def _features(n, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.ones((n, 12), np.int32)
  mask[:, 9:] = 0
  return {
      "input_ids": rng.integers(5, 50, (n, 12)).astype(np.int32) * mask,
      "token_type_ids": np.zeros((n, 12), np.int32),
      "attention_mask": mask,
      "labels": rng.integers(0, 2, n).astype(np.int32),
  }


def _setup(epochs=1):
  model = PairClassifier(CONFIG, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(TrainConfig(learning_rate=1e-2, warmup_fraction=0.0), 100)
  step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx, loss=steps.PairLoss(0.5)))
  return graphdef, steps.TrainState.create(params, tx), step


def test_padding_rows_change_nothing():
  _, state, step = _setup()
  feats = _features(5)
  [padded] = list(batching.batches(feats, 8))
  assert list(padded["weights"]) == [1] * 5 + [0] * 3
  [exact] = list(batching.batches(feats, 5))
  a, ma = step(state, padded, jax.random.key(0))
  b, mb = step(state, exact, jax.random.key(0))
  assert float(ma["count"]) == float(mb["count"]) == 5.0
  np.testing.assert_allclose(float(ma["loss_sum"]), float(mb["loss_sum"]), rtol=1e-6)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def test_training_lowers_the_loss_and_is_deterministic():
  feats = _features(32)
  runs = []
  for _ in range(2):
    _, state, step = _setup()
    losses = []
    for epoch in range(15):
      for batch in batching.batches(feats, 16, batching.epoch_order(32, 0, epoch)):
        state, m = step(state, batch, jax.random.key(1))
        losses.append(float(m["loss_sum"] / m["count"]))
    runs.append((losses, state))
  losses = runs[0][0]
  assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
  assert runs[0][0] == runs[1][0]
  assert int(runs[0][1].step) == 30


def test_eval_step_gives_probabilities():
  graphdef, state, _ = _setup()
  [batch] = list(batching.batches(_features(4), 4))
  probs = np.asarray(steps.eval_step(state.params, batch, graphdef=graphdef))
  assert probs.shape == (4,) and ((probs > 0) & (probs < 1)).all()


def test_epoch_order_is_a_fresh_permutation_per_epoch():
  a, b = batching.epoch_order(100, 0, 1), batching.epoch_order(100, 0, 2)
  assert sorted(a) == list(range(100)) and not np.array_equal(a, b)
  np.testing.assert_array_equal(a, batching.epoch_order(100, 0, 1))


def test_weight_decay_skips_biases_and_norms():
  _, state, _ = _setup()
  opt = make_optimizer(TrainConfig(learning_rate=1.0, weight_decay=0.5, schedule="constant",
                                   warmup_fraction=0.0, clip_norm=None), 10)
  zero_grads = jax.tree.map(np.zeros_like, state.params)
  updates, _ = opt.update(zero_grads, opt.init(state.params), state.params)
  decayed = {}
  for path, u in jax.tree_util.tree_leaves_with_path(updates):
    decayed[jax.tree_util.keystr(path)] = bool(np.any(np.asarray(u) != 0))
  wrong = [k for k, v in decayed.items() if v != ("['kernel']" in k or "['embedding']" in k)]
  assert decayed and not wrong


def _varied_lengths(n, seed=0):
  """`_features` with real lengths 2..12 (so [n, 12] arrays end in padding)."""
  feats = _features(n, seed)
  lengths = np.random.default_rng(seed + 1).integers(2, 13, n)
  mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int32)
  return {**feats, "input_ids": feats["input_ids"] * mask, "attention_mask": mask}, lengths


def test_dynamic_padding_cuts_each_batch_to_its_longest_pair():
  feats, lengths = _varied_lengths(37)
  order = batching.epoch_order(37, 0, 1)
  seen = []
  for start, batch in zip(range(0, 37, 8), batching.batches(feats, 8, order, pad_multiple=4)):
    rows = order[start:start + 8]
    seq = batch["input_ids"].shape[1]
    assert seq % 4 == 0 and lengths[rows].max() <= seq < lengths[rows].max() + 4
    assert batch["token_type_ids"].shape == batch["attention_mask"].shape == (8, seq)
    assert batch["labels"].shape == (8,)
    np.testing.assert_array_equal(batch["input_ids"][: len(rows)], feats["input_ids"][rows, :seq])
    seen += list(rows[batch["weights"][: len(rows)] == 1])
  assert sorted(seen) == list(range(37))


def test_length_grouped_order_sorts_within_groups_only():
  lengths = np.random.default_rng(0).integers(1, 100, 1000)
  order = batching.length_grouped_order(lengths, 4, seed=0, epoch=1)
  assert sorted(order) == list(range(1000))
  group = batching.GROUP_BATCHES * 4
  for start in range(0, 1000, group):
    chunk = lengths[order[start:start + group]]
    assert (np.diff(chunk) <= 0).all()
  assert not (np.diff(lengths[order]) <= 0).all()  # groups are not one global sort
  np.testing.assert_array_equal(order, batching.length_grouped_order(lengths, 4, seed=0, epoch=1))
  assert not np.array_equal(order, batching.length_grouped_order(lengths, 4, seed=0, epoch=2))


def test_dynamic_padding_gives_the_same_predictions_in_file_order():
  graphdef, state, _ = _setup()
  feats, _ = _varied_lengths(21)
  split = tokenization.EncodedSplit(
      input_ids=feats["input_ids"], token_type_ids=feats["token_type_ids"],
      attention_mask=feats["attention_mask"], match_ids=np.zeros_like(feats["input_ids"]),
      labels=feats["labels"], idx=np.arange(21), num_truncated=0)
  eval_fn = jax.jit(functools.partial(steps.eval_step, graphdef=graphdef))
  full = predict_probabilities(eval_fn, state.params, split, 8)
  dynamic = predict_probabilities(eval_fn, state.params, split, 8, pad_multiple=2)
  assert len(set(np.round(full, 4))) > 10  # the pairs get distinct scores
  np.testing.assert_allclose(dynamic, full, atol=1e-6)
