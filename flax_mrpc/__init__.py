"""flax_mrpc: a BERT-style paraphrase classifier for GLUE MRPC in JAX/Flax."""

from flax_mrpc.config import Config, ModelConfig, PretrainConfig, TrainConfig, get_preset
from flax_mrpc.modules import (
    Encoder,
    EncoderLayer,
    MaskedLM,
    MultiHeadAttention,
    PairClassifier,
    PreProcess,
)

__all__ = [
    "Config", "ModelConfig", "PretrainConfig", "TrainConfig", "get_preset",
    "PreProcess", "MultiHeadAttention", "EncoderLayer", "Encoder", "PairClassifier", "MaskedLM",
]
__version__ = "0.1.0"
