"""The rotary-position families (ModernBERT, GTE, EuroBERT) in our modules:
small random transformers models (tests/hf_models.py ROPE_CONFIGS), weights
moved well away from their init, saved with save_pretrained. Our hidden
states and probabilities equal transformers' on padded pairs of several
lengths; packed rows give the logits and gradients of one pair per row; our
export reloads in transformers with the same probabilities; a wrong
checkpoint or an unsupported rope_type is an error naming it."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_mrpc.config import Config, ModelConfig, TrainConfig
from flax_mrpc.hf import load, save

torch = pytest.importorskip("torch", reason="parity needs torch: pip install torch==2.13.0")
transformers = pytest.importorskip("transformers")
from hf_models import (  # noqa: E402  (needs torch)
    ROPE_CONFIGS, SEQ, VOCAB, pair_inputs, random_model, reference_outputs)
from test_packing import (  # noqa: E402
    ROW, assert_packed_equals_unpacked, logits_of, packed, pairs)

# The parity pairs (hf_models.LENGTHS: 16, 11, 6) are longer than the window (8 or 6 tokens).


@pytest.fixture(params=sorted(ROPE_CONFIGS))
def family(request):
  return request.param


def _ours(model, ids, types, mask):
  hidden = np.asarray(model.encoder(ids, types, mask))
  return hidden, 1 / (1 + np.exp(-np.asarray(model(ids, types, mask))))


@pytest.mark.parametrize("with_head", [True, False], ids=["with head", "base model"])
def test_hidden_states_and_probability_equal_transformers(family, with_head, tmp_path):
  hf = random_model(family, VOCAB)
  (hf if with_head else hf.base_model).save_pretrained(str(tmp_path))
  ids, types, mask = pair_inputs(hf.config)
  hidden_ref, probability_ref = reference_outputs(hf, ids, types, mask)
  model, _, _ = load.load_pretrained(str(tmp_path), max_length=SEQ)
  hidden, probability = _ours(model, ids, types, mask)
  real = mask.astype(bool)
  np.testing.assert_allclose(hidden[real], hidden_ref[real], atol=1e-4)
  if with_head:
    np.testing.assert_allclose(probability, probability_ref, atol=1e-4)
  else:  # a fresh head: the encoder's weights only
    assert np.abs(probability - probability_ref).max() > 1e-3


def _loaded(family, tmp_path):
  hf = random_model(family, VOCAB)
  hf.save_pretrained(str(tmp_path / "checkpoint"))
  return hf, load.load_pretrained(str(tmp_path / "checkpoint"), max_length=ROW)


def test_packed_rows_give_the_logits_and_gradients_of_one_pair_per_row(family, tmp_path):
  _, (model, _, _) = _loaded(family, tmp_path)
  assert pairs().attention_mask.sum(1).max() > 8  # longer than the window
  assert_packed_equals_unpacked(*nnx.split(model))


def test_rotary_positions_restart_at_each_pair(family, tmp_path, monkeypatch):
  """RoPE is relative, so a packed pair's logits barely show where its
  positions start: every rotation in a packed forward pass must use the
  row's `positions` (the pair starts' 0 for the last layer's queries when it
  pools the first token), and
  the rotated keys of a packed pair must equal those of the pair alone."""
  from flax_mrpc import modules

  _, (model, _, _) = _loaded(family, tmp_path)
  split = pairs()
  batch, order = packed(split)
  seen, rotary = [], modules.rotary
  monkeypatch.setattr(modules, "rotary", lambda x, positions, theta: seen.append(
      np.asarray(positions)) or rotary(x, positions, theta))
  logits_of(*nnx.split(model), batch)
  monkeypatch.undo()
  rows = [p for p in seen if p.shape == batch["positions"].shape]
  starts = [p for p in seen if p.shape == batch["first_positions"].shape]
  assert len(rows) + len(starts) == len(seen) and len(rows) >= 2 * len(model.encoder.layers) - 1
  assert all(np.array_equal(p, batch["positions"]) for p in rows)
  assert len(starts) == (model.pooling == "first") and not any(p.any() for p in starts)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(*batch["input_ids"].shape, 32)),
                  jnp.float32)
  attention = model.encoder.layers[1].attention
  keys = np.asarray(attention._queries_keys(x, None, batch["positions"])[1])
  row, slot = 0, 1  # the second pair of the first row
  tokens = np.asarray(batch["attention_mask"][0]) == slot + 1
  alone = np.asarray(attention._queries_keys(x[:1, tokens], None,
                                             jnp.arange(tokens.sum())[None])[1])
  np.testing.assert_allclose(keys[row][:, tokens], alone[0], atol=1e-5)


def test_export_reloads_in_transformers_with_the_same_probabilities(family, tmp_path):
  hf, (model, config, checkpoint) = _loaded(family, tmp_path)
  _export_and_compare(hf, model, config, checkpoint, tmp_path)


@pytest.mark.parametrize("family, pooling", [("modernbert", "mean"), ("eurobert", "first"),
                                             ("eurobert-bos", "mean")])
def test_a_changed_pooling_is_exported(family, pooling, tmp_path):
  """A --set model field (here the pooling) goes into the exported config.json."""
  hf = random_model(family, VOCAB)
  hf.save_pretrained(str(tmp_path / "checkpoint"))
  model, config, checkpoint = load.load_pretrained(str(tmp_path / "checkpoint"), max_length=ROW,
                                                   pooling=pooling)
  _export_and_compare(hf, model, config, checkpoint, tmp_path)


def _export_and_compare(hf, model, config, checkpoint, tmp_path):
  """Exports `model` (loaded from `checkpoint`) as export does, reloads it in
  transformers: no missing or unexpected keys, the same probabilities."""
  trained = Config(model=config, train=TrainConfig(pretrained=str(checkpoint)))
  hf_config = save.classifier_config(trained)
  weights = save.classifier_weights(nnx.state(model, nnx.Param), config, hf_config["model_type"])
  out = tmp_path / "exported"
  out.mkdir()
  (out / "config.json").write_text(json.dumps(hf_config))
  from safetensors.numpy import save_file
  save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
  reloaded, loading = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(out), output_loading_info=True)
  assert not any(loading.values()), loading  # no missing, unexpected or mis-shaped keys
  ids, types, mask = pair_inputs(hf.config)
  _, probability_ref = reference_outputs(reloaded.eval(), ids, types, mask)
  np.testing.assert_allclose(_ours(model, ids, types, mask)[1], probability_ref, atol=1e-4)


def test_an_incomplete_or_wrong_checkpoint_lists_the_weights(family, tmp_path):
  from safetensors.numpy import load_file, save_file

  random_model(family, VOCAB).base_model.save_pretrained(str(tmp_path))
  weights = load_file(str(tmp_path / "model.safetensors"))
  dropped = next(k for k in sorted(weights) if ".1." in k and k.endswith(("Wo.weight",
                                                                          "o_proj.weight")))
  changed = next(k for k in sorted(weights)
                 if k.endswith(("norm.weight", "LayerNorm.weight", "_ln.weight")))
  weights.pop(dropped)
  weights[changed] = np.zeros(31, np.float32)
  weights["extra.weight"] = np.zeros(3, np.float32)
  save_file(weights, str(tmp_path / "model.safetensors"))
  with pytest.raises(load.PretrainedError) as error:
    load.load_pretrained(str(tmp_path), max_length=SEQ)
  message = str(error.value)
  assert f"missing: {dropped}" in message and "unexpected: extra.weight" in message
  assert f"{changed}: (31,) in the" in message


@pytest.mark.parametrize("family, option, value, named", [
    ("modernbert", "rope_parameters", {"full_attention": {"rope_type": "yarn", "rope_theta": 1e4},
                                       "sliding_attention": {"rope_type": "default"}},
     "rope_type 'yarn'"),
    ("modernbert", "rope_scaling", {"type": "linear", "factor": 2.0}, "rope_type 'linear'"),
    ("modernbert", "layer_types", ["sliding_attention", "full_attention"] * 2, "layer_types"),
    ("modernbert", "classifier_pooling", "max", "classifier_pooling 'max'"),
    ("gte", "rope_parameters", {"rope_type": "ntk", "rope_theta": 1e4}, "rope_type 'ntk'"),
    ("eurobert", "rope_parameters", {"rope_type": "llama3", "rope_theta": 1e4},
     "rope_type 'llama3'"),
    ("eurobert", "head_dim", 16, "head_dim 16")])
def test_an_unsupported_option_is_named(family, option, value, named, tmp_path):
  config = ROPE_CONFIGS[family](VOCAB).to_dict() | {option: value}
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(load.PretrainedError, match=named):
    load.model_config(tmp_path, SEQ)


def test_the_config_json_of_our_model_reads_back_as_the_same_model(family, tmp_path):
  from flax_mrpc.hf.families import FAMILIES

  source = ROPE_CONFIGS[family](VOCAB).to_dict()
  module = FAMILIES[source["model_type"]]
  fields = module.model_fields(source, tmp_path)
  written = module.hf_config(ModelConfig(**fields, max_length=SEQ))
  assert module.model_fields(source | written, tmp_path) == fields
  assert module.model_fields(written, tmp_path) == fields  # without the source's keys too


def test_a_field_the_family_cannot_hold_is_named(family, tmp_path):
  from flax_mrpc.hf.families import FAMILIES

  source = ROPE_CONFIGS[family](VOCAB).to_dict()
  module = FAMILIES[source["model_type"]]
  model = ModelConfig(**module.model_fields(source, tmp_path), max_length=SEQ)
  with pytest.raises(load.PretrainedError, match="match_embedding=True"):
    module.hf_config(dataclasses.replace(model, match_embedding=True))
  with pytest.raises(load.PretrainedError, match="rotary_theta=None .* needs a number"):
    module.hf_config(dataclasses.replace(model, rotary_theta=None))


@pytest.mark.parametrize("family, learning_rate", [("modernbert", 5e-5), ("gte", 2e-5),
                                                   ("eurobert", 2e-5)])
def test_pretrained_alone_takes_the_family_s_learning_rate(family, learning_rate, tmp_path):
  from flax_mrpc import train

  random_model(family, VOCAB).save_pretrained(str(tmp_path))
  args = ["--pretrained", str(tmp_path), "--workdir", "w", "--set", "max_length=32"]
  assert train.config_from_args(train.parse_args(args)).train.learning_rate == learning_rate


def test_a_modernbert_tokenizer_json_writes_cls_a_sep_b_sep(tmp_path):
  """ModernBERT ships tokenizer.json alone (a BPE with a [CLS] A [SEP] B [SEP]
  template, no token types): loaded from the folder, pairs come out in that format."""
  from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

  from flax_mrpc.data import tokenization
  from flax_mrpc.data.examples import Example

  sentences = ["the cat sat on the mat", "a dog lay on the rug", "the cat and the dog"] * 5
  bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
  bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  bpe.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=120, special_tokens=special))
  bpe.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  transformers.PreTrainedTokenizerFast(
      tokenizer_object=bpe, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
      unk_token="[UNK]", mask_token="[MASK]",
      model_input_names=["input_ids", "attention_mask"]).save_pretrained(str(tmp_path))
  tokenizer = tokenization.load_tokenizer(str(tmp_path))
  encoded = tokenization.encode_pairs(
      tokenizer, [Example(sentences[0], sentences[1], 1, 0)], max_length=32)
  tokens = tokenizer.convert_ids_to_tokens(encoded.input_ids[0][encoded.attention_mask[0] == 1])
  middle = tokens.index("[SEP]")
  assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
  assert "[CLS]" not in tokens[1:] and 1 < middle < len(tokens) - 2
  assert not encoded.token_type_ids.any()


def test_modernbert_s_older_config_keys_read_the_same(tmp_path):
  """Hub configs written before transformers 5 name the layer pattern and the
  RoPE bases with global_attn_every_n_layers, global_rope_theta and
  local_rope_theta instead of layer_types and rope_parameters."""
  from flax_mrpc.hf.families import modernbert

  config = ROPE_CONFIGS["modernbert"](VOCAB).to_dict()
  older = {k: v for k, v in config.items() if k not in ("layer_types", "rope_parameters")}
  older |= {"global_attn_every_n_layers": 3, "global_rope_theta": 5000.0,
            "local_rope_theta": 300.0}
  assert modernbert.model_fields(older, tmp_path) == modernbert.model_fields(config, tmp_path)


@pytest.mark.parametrize("family", ["modernbert", "eurobert"])
def test_dot_product_attention_gives_the_einsum_s_logits(family, tmp_path):
  """attention_implementation="xla" with RoPE, the sliding window (ModernBERT)
  and grouped-query attention (EuroBERT), on packed rows."""
  random_model(family, VOCAB).save_pretrained(str(tmp_path))
  batch, _ = packed(pairs())
  einsum, fused = (logits_of(*nnx.split(load.load_pretrained(
      str(tmp_path), max_length=ROW, attention_implementation=implementation)[0]), batch)
                   for implementation in ("einsum", "xla"))
  np.testing.assert_allclose(np.asarray(fused), np.asarray(einsum), rtol=1e-5, atol=1e-5)
