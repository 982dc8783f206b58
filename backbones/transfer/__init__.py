"""Which backbone for my data: features, probes, transferability scores, fine-tuning, checkpoints."""
