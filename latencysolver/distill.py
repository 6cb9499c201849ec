"""Knowledge distillation (Hinton et al., 2015) from the teacher's cached logits.

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T))  +  (1 - alpha) * CE(s, y)

The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones when T changes
(the soft gradients shrink as 1/T^2).  Teacher logits were computed once on the train split; a batch looks its
rows up by index, so a trial never runs the teacher.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from latencysolver.batches import Batch, EncodedSplit
from latencysolver.config import TrainConfig
from latencysolver.training import TrainResult, train


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                    F.log_softmax(teacher_logits / temperature, dim=-1),
                    reduction="batchmean", log_target=True) * temperature ** 2
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def distill(student: nn.Module, train_split: EncodedSplit, teacher_logits: torch.Tensor, config: TrainConfig,
            temperature: float, alpha: float, *, pad_id: int = 0, progress: bool = True,
            should_stop=None) -> TrainResult:
    if teacher_logits.shape[0] != len(train_split):
        raise ValueError(f"teacher logits cover {teacher_logits.shape[0]} rows, the train split has {len(train_split)}")

    def loss_fn(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return distillation_loss(logits, teacher_logits[batch.indices], batch.labels, temperature, alpha)

    return train(student, train_split, config, loss_fn, pad_id=pad_id, desc="distill", progress=progress,
                 should_stop=should_stop)
