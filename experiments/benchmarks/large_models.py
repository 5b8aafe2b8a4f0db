"""The large encoders that memory_plan.py and large_model_step.py measure:
each one's shapes from its published `config.json`, as a fine-tuning Config."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

from flax_mrpc.config import Config, TaskConfig, get_preset, with_task
from flax_mrpc.hf import load

# The shapes of each model's published config.json (Hugging Face hub ids in
# the comments); only the fields the translation reads.
MODELS = {
    "bert-base": {  # google-bert/bert-base-uncased
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
        "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12},
    "deberta-v3-large": {  # microsoft/deberta-v3-large
        "model_type": "deberta-v2", "vocab_size": 128100, "hidden_size": 1024,
        "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 0,
        "layer_norm_eps": 1e-7, "relative_attention": True, "position_buckets": 256,
        "max_relative_positions": -1, "norm_rel_ebd": "layer_norm", "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"], "position_biased_input": False},
    "modernbert-large": {  # answerdotai/ModernBERT-large
        "model_type": "modernbert", "vocab_size": 50368, "hidden_size": 1024,
        "num_hidden_layers": 28, "num_attention_heads": 16, "intermediate_size": 2624,
        "hidden_activation": "gelu", "max_position_embeddings": 8192,
        "global_attn_every_n_layers": 3, "local_attention": 128, "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0, "norm_eps": 1e-5, "norm_bias": False, "mlp_bias": False,
        "attention_bias": False, "classifier_pooling": "mean"},
    "xlm-r-large": {  # FacebookAI/xlm-roberta-large
        "model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 1024,
        "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
        "hidden_act": "gelu", "max_position_embeddings": 514, "type_vocab_size": 1,
        "layer_norm_eps": 1e-5, "pad_token_id": 1},
    "eurobert-2.1b": {  # EuroBERT/EuroBERT-2.1B
        "model_type": "eurobert", "vocab_size": 128256, "hidden_size": 2304,
        "num_hidden_layers": 32, "num_attention_heads": 18, "num_key_value_heads": 6,
        "intermediate_size": 6144, "hidden_act": "silu", "max_position_embeddings": 8192,
        "rope_theta": 250000.0, "rms_norm_eps": 1e-5, "mlp_bias": False,
        "attention_bias": False, "classifier_pooling": "late"},
}
MAX_LENGTH, BATCH_SIZE = 512, 32


def model_config(name: str) -> Config:
  """The fine-tuning Config of MODELS[name] at MAX_LENGTH tokens and BATCH_SIZE pairs."""
  with tempfile.TemporaryDirectory() as folder:
    (Path(folder) / "config.json").write_text(json.dumps(MODELS[name]))
    model = load.model_config(Path(folder), MAX_LENGTH)
  config = with_task(get_preset("finetune"), TaskConfig())
  model = dataclasses.replace(model, num_labels=config.model.num_labels)
  return dataclasses.replace(config, model=model).replace(batch_size=BATCH_SIZE)
