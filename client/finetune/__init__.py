"""Downstream fine-tuning of a pretrained (or scratch) encoder on a labelled task."""

from client.finetune.config import FinetuneConfig
from client.finetune.run import FinetuneResult, run_finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "run_finetune"]
