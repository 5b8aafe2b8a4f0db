"""How close are this project's modules to transformers on a checkpoint?

Command: PYTHONPATH=. python experiments/family_parity.py CHECKPOINT... \
             [--data-dir DIR] [--pairs 32] [--max-length 64]
Machine: any (needs torch); seconds per small checkpoint.
For each checkpoint folder it scores the first `--pairs` MRPC test pairs,
padded to the longest, with the checkpoint's tokenizer, and prints the
largest absolute difference from transformers' `AutoModelForSequenceClassification`
(eval mode) in the last hidden states (real tokens only; the base model's
output, after its final norm where it has one) and, when the
checkpoint has a 2-label head, in the probability (our sigmoid against its
softmax[:, 1]).

Measured on the 2-core CPU (torch 2.13.0, transformers 5.2x), with
`--max-length 40` on the random 2-label checkpoints of every family in
tests/hf_models.py (weights moved 0.3 std from their init, a WordPiece or
byte-level BPE vocabulary learned on MRPC's train sentences; made with
`hf_models.checkpoint(family, folder, sentences, with_head=True)`) and on
all-MiniLM-L6-v2, 32 test pairs:

  checkpoint        model_type    hidden   probability
  bert              bert          3.3e-6   2.4e-7
  roberta           roberta       7.8e-7   3.0e-8
  xlm-roberta       xlm-roberta   2.4e-6   2.2e-8
  electra           electra       3.0e-6   4.8e-7
  distilbert        distilbert    6.6e-6   9.5e-7
  deberta-v2        deberta-v2    1.9e-6   6.0e-8
  deberta-v3        deberta-v2    3.8e-6   3.3e-7
  modernbert        modernbert    4.1e-6   1.8e-7
  modernbert-mean   modernbert    3.8e-6   2.4e-7
  gte               gte           6.6e-6   5.4e-7
  eurobert          eurobert      9.1e-6   0 (saturated: transformers gives 0.99997-0.99999)
  eurobert-bos      eurobert      1.2e-5   6.0e-7
  all-MiniLM-L6-v2  bert          3.7e-6   no head

On unsaturated probabilities the tests (tests/test_families.py,
tests/test_rope_families.py) check every family's head within 1e-4.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from flax import nnx

from flax_mrpc.data import sources, tokenization
from flax_mrpc.data.examples import Example
from flax_mrpc.hf import load
from flax_mrpc.modules import PairClassifier


def differences(folder: Path, pairs: list[Example], max_length: int) -> tuple[float, float | None]:
  """(max |hidden state difference|, max |probability difference| or None)."""
  import torch
  import transformers

  config = load.model_config(folder, max_length)
  model = PairClassifier(config, rngs=nnx.Rngs(0))
  has_head = load.load_into(model, config, folder)
  tokenizer = tokenization.load_tokenizer(str(folder))
  batch = tokenizer([e.sentence1 for e in pairs], [e.sentence2 for e in pairs],
                    truncation="longest_first", max_length=max_length, padding=True,
                    return_tensors="np", return_token_type_ids=True)
  hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
  inputs = {k: torch.tensor(batch[k]) for k in ("input_ids", "attention_mask")}
  if getattr(hf.config, "type_vocab_size", 0):  # DistilBERT, ModernBERT, EuroBERT: no segments
    inputs["token_type_ids"] = torch.tensor(batch["token_type_ids"])
  with torch.no_grad():
    # The base model's output: after the final norm where there is one (ModernBERT, EuroBERT).
    last_hidden = hf.base_model(**inputs).last_hidden_state.numpy()
    logits = hf(**inputs).logits
  args = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
  real = batch["attention_mask"].astype(bool)
  hidden = np.abs(np.asarray(model.encoder(*args))[real] - last_hidden[real])
  if not has_head:
    return float(hidden.max()), None
  ours = 1 / (1 + np.exp(-np.asarray(model(*args))))
  theirs = torch.softmax(logits, -1)[:, 1].numpy()
  return float(hidden.max()), float(np.abs(ours - theirs).max())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("checkpoints", nargs="+", type=Path)
  parser.add_argument("--data-dir", help="MRPC folder (default: $FLAX_MRPC_DATA_DIR)")
  parser.add_argument("--pairs", type=int, default=32)
  parser.add_argument("--max-length", type=int, default=64)
  args = parser.parse_args()
  pairs = sources.load("local", args.data_dir)["test"][:args.pairs]
  print(f"{'checkpoint':40} {'model_type':12} {'hidden':>9} {'probability':>11}")
  for folder in args.checkpoints:
    hidden, probability = differences(folder, pairs, args.max_length)
    kind = json.loads((folder / "config.json").read_text()).get("model_type", "bert")
    shown = "no head" if probability is None else f"{probability:.2e}"
    print(f"{str(folder)[-40:]:40} {kind:12} {hidden:9.2e} {shown:>11}")


if __name__ == "__main__":
  main()
