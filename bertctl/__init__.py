"""bertctl: BERT/GPT pretraining, fine-tuning, GLUE, probing and prompting from one CLI."""

__version__ = "0.1.0"
