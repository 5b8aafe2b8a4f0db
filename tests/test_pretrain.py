"""Masked-language-model pretraining: masking, the tied head, the loss, resume,
fine-tuning from a pretraining workdir and its Hugging Face export."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_mrpc import export, train
from flax_mrpc.config import ModelConfig, TrainConfig, get_preset
from flax_mrpc.data import corpus, masking
from flax_mrpc.data.examples import DataError
from flax_mrpc.modules import MaskedLM, PairClassifier
from flax_mrpc.training import pretrained_encoder, pretraining, steps
from flax_mrpc.training.optimizer import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(vocab_size=50, max_length=16, d_model=16, num_heads=2, d_ff=32, num_layers=1,
                   dropout=0.0, attention_dropout=0.0)
MASK_ID = 4


def test_masking_proportions_hold():
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 1000, (400, 128))
  maskable = rng.random((400, 128)) < 0.9
  masked = masking.mask_tokens(ids, maskable, np.random.default_rng(1), MASK_ID, 1000, 0.15)
  chosen = masked["mlm_weights"] > 0
  rows = np.arange(400)[:, None]
  # 15% of each row's maskable tokens (rounded), only maskable ones, targets the originals.
  np.testing.assert_array_equal(chosen.sum(1), np.round(0.15 * maskable.sum(1)))
  positions = np.where(chosen, masked["mlm_positions"], 0)
  assert maskable[rows, positions][chosen].all()
  np.testing.assert_array_equal(masked["mlm_targets"][chosen], ids[rows, positions][chosen])
  # Of the chosen tokens 80% become [MASK], 10% a random token, 10% stay; the rest never change.
  after = masked["input_ids"][rows, positions][chosen]
  original = ids[rows, positions][chosen]
  share_masked = np.mean(after == MASK_ID)
  share_kept = np.mean(after == original)  # includes random draws of the same id (0.1%)
  assert abs(share_masked - 0.8) < 0.02 and abs(share_kept - 0.1) < 0.015
  assert abs(1 - share_masked - share_kept - 0.1) < 0.015
  untouched = np.ones_like(maskable)
  untouched[np.broadcast_to(rows, chosen.shape)[chosen], positions[chosen]] = False
  np.testing.assert_array_equal(masked["input_ids"][untouched], ids[untouched])


def _masked_batch(seed=0, rows=8):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, 30, (rows, TINY.max_length)).astype(np.int32)  # ids 30-49 never occur
  batch = {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
           "attention_mask": np.ones_like(ids)}
  return batch | masking.mask_tokens(ids, np.ones(ids.shape, bool), rng, MASK_ID, 30)


def test_the_head_is_tied_to_the_word_embeddings():
  model = MaskedLM(TINY, rngs=nnx.Rngs(0))
  shapes = [x.shape for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
  assert (TINY.d_model, TINY.vocab_size) not in shapes  # no decoder matrix of its own
  batch = {k: jnp.asarray(v) for k, v in _masked_batch().items()}
  graphdef, params = nnx.split(model)
  loss = lambda p: steps.MaskedLMLoss()(nnx.merge(graphdef, p), batch, None)[0]
  grads = jax.grad(loss)(params)
  word = np.asarray(grads["encoder"]["embeddings"]["word_embeddings"]["embedding"].get_value())
  # Ids 30-49 are in no input: their rows get gradient only as output embeddings.
  assert np.abs(word[30:]).min() > 0
  # And the logits move when only such a row changes.
  changed = jax.tree.map(lambda x: x, params)
  table = changed["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  table.set_value(table.get_value().at[40].add(1.0))
  logits = lambda p: nnx.merge(graphdef, p)(batch["input_ids"], batch["token_type_ids"],
                                            batch["attention_mask"], batch["mlm_positions"])
  diff = np.abs(np.asarray(logits(changed) - logits(params)))
  assert diff[..., 40].min() > 0 and diff[..., :30].max() < 1e-5


def test_the_masked_lm_loss_falls_over_a_few_steps():
  model = MaskedLM(TINY, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(TrainConfig(learning_rate=1e-2, warmup_fraction=0.0), 30)
  step = jax.jit(functools.partial(steps.train_step, graphdef=graphdef, tx=tx,
                                   loss=steps.MaskedLMLoss()))
  state = steps.TrainState.create(params, tx)
  batch = _masked_batch()
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch, jax.random.key(0))
    losses.append(float(metrics["loss_sum"] / metrics["count"]))
  assert losses[0] > np.log(30) - 0.5  # about uniform at the start
  assert losses[-1] < 0.5 * losses[0]


def test_a_bad_corpus_is_one_clear_error(tmp_path):
  with pytest.raises(DataError, match="file not found"):
    corpus.CorpusFile(tmp_path / "missing.txt")
  (tmp_path / "one.txt").write_text("only one line\n\n")
  with pytest.raises(DataError, match="fewer than 2"):
    corpus.CorpusFile(tmp_path / "one.txt")
  (tmp_path / "latin1.txt").write_bytes(b"fine\nalso fine\ncaf\xe9\n")
  with pytest.raises(DataError, match=r"latin1.txt:3: not UTF-8"):
    list(corpus.CorpusFile(tmp_path / "latin1.txt"))


def test_lines_pair_up_in_order_and_an_odd_last_line_is_kept():
  pairs = list(corpus.line_pairs(["a", "b", "c", "d", "e"]))
  assert [(p.sentence1, p.sentence2) for p in pairs] == [("a", "b"), ("c", "d"), ("e", "")]


RUN = ["--preset", "tiny", "--epochs", "2", "--no-progress", "--checkpoint-every-steps", "3"]


def _start(workdir, mrpc_dir, corpus_file):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAX_MRPC_DATA_DIR": str(mrpc_dir)}
  return subprocess.Popen([sys.executable, "-m", "flax_mrpc.pretrain", *RUN, "--corpus",
                           str(corpus_file), "--workdir", str(workdir)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def corpus_file(splits, tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
  path.write_text("\n".join(corpus.mrpc_lines(splits["train"][:300])) + "\n")
  return path


@pytest.fixture(scope="module")
def pretrained_dir(mrpc_dir, corpus_file, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pretrained")
  _, err = _start(workdir, mrpc_dir, corpus_file).communicate(timeout=600)
  assert pretrained_encoder.is_pretraining_workdir(workdir), err
  return workdir


def _records(workdir):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in records]


def _params(workdir):
  return jax.tree.leaves(nnx.state(pretrained_encoder.restore_masked_lm(workdir)[0]))


@pytest.mark.slow
def test_a_killed_pretraining_resumes_exactly(pretrained_dir, mrpc_dir, corpus_file, tmp_path):
  proc = _start(tmp_path, mrpc_dir, corpus_file)
  folder = tmp_path / "checkpoints"
  while not (folder.is_dir() and len([p for p in folder.iterdir() if p.name.isdigit()]) >= 2):
    assert proc.poll() is None, proc.communicate()[1]
  proc.kill()
  proc.wait()
  assert not (tmp_path / "results.json").exists()
  _, err = _start(tmp_path, mrpc_dir, corpus_file).communicate(timeout=600)
  assert "resuming from the checkpoint at step" in err, err
  assert _records(tmp_path) == _records(pretrained_dir)
  for a, b in zip(_params(tmp_path), _params(pretrained_dir)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_train_pretrained_takes_the_encoder_unchanged(pretrained_dir):
  args = train.parse_args(["--workdir", "unused", "--pretrained", str(pretrained_dir),
                           "--preset", "tiny", "--set", "match_embedding=true"])
  config = train.config_from_args(args)
  assert config.train.tokenizer == str(pretrained_dir / "tokenizer")
  assert config.pretrain.pretrain_epochs == 0 and config.model.match_embedding
  model = PairClassifier(config.model, rngs=nnx.Rngs(0))
  fresh = nnx.to_flat_state(nnx.state(model.encoder, nnx.Param))
  fresh = {path: np.asarray(v.get_value()) for path, v in fresh}
  pretrained_encoder.load_encoder(model, pretrained_dir)
  source = pretrained_encoder.restore_masked_lm(pretrained_dir)[0].encoder
  expected = dict(nnx.to_flat_state(nnx.state(source, nnx.Param)))
  loaded = dict(nnx.to_flat_state(nnx.state(model.encoder, nnx.Param)))
  assert set(loaded) - set(expected) == {("embeddings", "match_embeddings", "embedding")}
  for path, value in expected.items():
    np.testing.assert_array_equal(loaded[path].get_value(), value.get_value())
    assert not np.array_equal(fresh[path], value.get_value()) or path[-1] in ("bias", "scale")


@pytest.mark.slow
def test_a_pretrained_encoder_of_another_shape_is_refused(pretrained_dir):
  model = PairClassifier(ModelConfig(vocab_size=1000, max_length=32, d_model=64, num_heads=2,
                                     d_ff=64, num_layers=1), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="does not fit this model"):
    pretrained_encoder.load_encoder(model, pretrained_dir)


@pytest.mark.slow
def test_the_export_is_a_bert_for_masked_lm(pretrained_dir, tmp_path):
  torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
  from transformers import AutoModelForMaskedLM

  export.export(pretrained_dir, tmp_path)
  hf = AutoModelForMaskedLM.from_pretrained(str(tmp_path)).eval()
  model, _ = pretrained_encoder.restore_masked_lm(pretrained_dir)
  ids = np.random.default_rng(0).integers(5, 200, (2, 12)).astype(np.int32)
  types = np.concatenate([np.zeros((2, 6), np.int32), np.ones((2, 6), np.int32)], axis=1)
  ours = model(ids, types, np.ones_like(ids), np.tile(np.arange(12, dtype=np.int32), (2, 1)))
  with torch.no_grad():
    theirs = hf(input_ids=torch.tensor(ids, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=2e-4)
  assert hf.get_output_embeddings().weight.data_ptr() == (
      hf.get_input_embeddings().weight.data_ptr())


def test_a_fine_tuning_run_pretrains_once_in_its_workdir(splits, corpus_file, tmp_path, capsys):
  config = get_preset("tiny").replace(pretrain_epochs=1, corpus=str(corpus_file))
  pretraining.cached_pretraining(config, tmp_path, splits, False, None, "none")
  done = tmp_path / pretraining.CACHE / "results.json"
  first = done.read_text()
  pretraining.cached_pretraining(config.replace(learning_rate=1e-2), tmp_path, splits, False, None,
                              "none")  # a fine-tuning field: the same pretraining
  assert "found finished" in capsys.readouterr().err and done.read_text() == first
  with pytest.raises(ValueError, match="pretrain_learning_rate: 0.0005 -> 0.001"):
    pretraining.cached_pretraining(config.replace(pretrain_learning_rate=1e-3), tmp_path, splits,
                                False, None, "none")


@pytest.mark.slow
def test_predict_on_a_pretraining_workdir_says_to_fine_tune_first(pretrained_dir):
  from flax_mrpc.inference import load_trained

  with pytest.raises(ValueError, match="flax_mrpc.train --pretrained"):
    load_trained(pretrained_dir)


def test_the_match_embedding_is_pretrained_only_when_asked():
  from flax_mrpc.config import pretraining_config

  config = get_preset("default").replace(pretrain_epochs=2, learning_rate=1e-3)
  assert not pretraining_config(config).model.match_embedding
  assert pretraining_config(config.replace(pretrain_match=True)).model.match_embedding
  assert not pretraining_config(config.replace(pretrain_match=True, match_embedding=False)
                                ).model.match_embedding
  # Fine-tuning fields do not enter the pretraining, so its cache stays valid.
  assert pretraining_config(config) == pretraining_config(config.replace(learning_rate=5e-4))
