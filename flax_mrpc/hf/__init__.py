"""Hugging Face checkpoints in and out: `families` (one module per
`model_type`: config translation, weight names, head), `load` (a checkpoint
into this project's modules) and `save` (a trained model as a checkpoint).
"""
