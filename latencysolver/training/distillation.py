"""Knowledge distillation: the teacher's logits (Hinton et al., 2015) and, optionally, its hidden states.

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T))  +  (1 - alpha) * CE(s, y)
           + hidden_weight * mean over the student's layers j of MSE(h_s[j], h_t[target(j)])

The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones when T changes
(the soft gradients shrink as 1/T^2).  Teacher logits were computed once on the train split; a batch looks its
rows up by index, so the logit loss never runs the teacher.

The hidden-state term (as in TinyBERT, Jiao et al. 2020, without its attention and embedding terms) asks each
kept layer to produce what the teacher has computed by the end of the layers it stands in for: with layers
[0, 3] of 6 kept, student layer 0 replaces teacher layers 0-2 and is pulled towards the teacher's output after
layer 2, student layer 1 towards its final output.  The MSE is over real tokens (padding masked) and the hidden
width, so a weight of 1 puts it on the scale of the logit loss (both start near 0.4 for a 2-layer MiniLM
student).  It needs the teacher's hidden states of each batch, which are too big to cache (layers x tokens x
width per row), so the teacher runs forward once per step, without gradients, which costs a small student more
than the logit loss does (benchmarks/README.md, ``layerwise_cost.py``).  Pruning keeps the hidden width, so no
projection is needed.  It is a knob for the search to try, off by default: on BoolQ it did not raise the
benchmark's fast students' accuracy (benchmarks/README.md, "what moved the fast students").
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from latencysolver.config.training import TrainConfig
from latencysolver.data.batches import Batch, EncodedSplit
from latencysolver.devices import Placement, on_device
from latencysolver.training.loop import TrainResult, train
from latencysolver.training.relations import capture_projections, relation_loss


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    soft = (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=-1),
            F.log_softmax(teacher_logits / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def hidden_targets(kept_layers: tuple[int, ...] | list[int], teacher_depth: int) -> list[int]:
    """For each student layer, the teacher layer whose output it learns: the last of the block it replaces.

    ``kept_layers`` are the teacher indices the student's layers were copied from, in order; the block of
    layer j runs from ``kept_layers[j]`` to just before ``kept_layers[j + 1]`` (the last one to the end).
    """
    kept = list(kept_layers)
    if not kept or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= teacher_depth:
        raise ValueError(f"kept layers {kept} are not increasing indices into {teacher_depth} teacher layers")
    return [nxt - 1 for nxt in kept[1:]] + [teacher_depth - 1]


def hidden_state_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    targets: list[int] | None,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Mean over student layers of the masked MSE against the teacher layer ``targets[j]``.

    Both tuples are Hugging Face ``hidden_states``: entry 0 is the embeddings, entry i + 1 layer i's output.
    ``targets=None`` compares only the two final outputs: under LayerDrop the student runs a different subset of
    its layers each step, so only its last output has a fixed counterpart.
    """
    if targets is None:
        pairs = [(student_hidden[-1], teacher_hidden[-1])]
    elif len(student_hidden) == len(targets) + 1:
        pairs = [(student_hidden[j + 1], teacher_hidden[t + 1]) for j, t in enumerate(targets)]
    else:
        raise ValueError(f"the student has {len(student_hidden) - 1} layers, but {len(targets)} targets were given")
    mask = attention_mask.unsqueeze(-1).float()
    denominator = mask.sum() * student_hidden[-1].shape[-1]
    return torch.stack([(((s.float() - t.float()) ** 2) * mask).sum() / denominator for s, t in pairs]).mean()


def distill(
    student: nn.Module,
    train_split: EncodedSplit,
    teacher_logits: torch.Tensor,
    config: TrainConfig,
    temperature: float,
    alpha: float,
    *,
    pad_id: int = 0,
    progress: bool = True,
    should_stop=None,
    hidden_weight: float = 0.0,
    teacher: nn.Module | None = None,
    hidden_layers: list[int] | None = None,
    placement: Placement | None = None,
    representations: torch.Tensor | None = None,
    representation_weight: float = 0.0,
    attention_weight: float = 0.0,
) -> TrainResult:
    """Distill into ``student``.  With ``hidden_weight > 0``, ``teacher`` (in eval mode) and ``hidden_layers``
    (``hidden_targets`` of the student's kept layers, or None for the final output only) add the hidden-state
    term; the teacher then runs on the training device beside the student.  With ``representation_weight > 0``,
    the student's ``hidden_states[-1]`` (a CNN's projected features) is pulled towards ``representations`` (the
    teacher's pooled representation of each train row) by ``1 - cosine``.  With ``attention_weight > 0`` the
    self-attention relation term (``relations.py``) joins, through the same layer mapping ``hidden_layers``; the
    two terms share one teacher forward pass a step."""
    if teacher_logits.shape[0] != len(train_split):
        raise ValueError(f"teacher logits cover {teacher_logits.shape[0]} rows, the train split has {len(train_split)}")
    labels = getattr(getattr(student, "config", None), "num_labels", None)
    if isinstance(labels, int) and teacher_logits.shape[-1] != labels:
        raise ValueError(f"teacher logits have {teacher_logits.shape[-1]} labels, the student has num_labels={labels}")
    if hidden_weight < 0:
        raise ValueError(f"hidden_weight must be >= 0, but got {hidden_weight!r}")
    if attention_weight < 0:
        raise ValueError(f"attention_weight must be >= 0, but got {attention_weight!r}")
    use_hidden, use_attention = hidden_weight > 0, attention_weight > 0
    if (use_hidden or use_attention) and teacher is None:
        raise ValueError("layer-wise distillation needs the teacher model")
    use_representation = representation_weight > 0
    if use_representation and (representations is None or representations.shape[0] != len(train_split)):
        raise ValueError("the representation loss needs the teacher's representation of every train row")

    def loss_fn(outputs: Any, batch: Batch) -> torch.Tensor:
        logits = outputs.logits.float()
        targets = teacher_logits[batch.indices].to(logits.device)
        loss = distillation_loss(logits, targets, batch.labels, temperature, alpha)
        if use_hidden or use_attention:
            assert teacher is not None  # checked above
            with torch.no_grad():
                reference = teacher(**batch.inputs, output_hidden_states=use_hidden).hidden_states
            mask = batch.inputs["attention_mask"]
            if use_hidden:
                loss = loss + hidden_weight * hidden_state_loss(outputs.hidden_states, reference, hidden_layers, mask)
            if use_attention:
                loss = loss + attention_weight * relation_loss(
                    student_qkv, teacher_qkv, hidden_layers, mask, teacher_heads
                )
        if use_representation:
            assert representations is not None  # checked above
            target = representations[batch.indices].to(logits.device).float()
            similarity = F.cosine_similarity(outputs.hidden_states[-1].float(), target, dim=-1)
            loss = loss + representation_weight * (1.0 - similarity).mean()
        return loss

    placement = placement or Placement()
    teacher_heads = 0
    with ExitStack() as stack:
        if (use_hidden or use_attention) and teacher is not None:
            stack.enter_context(on_device(teacher, placement.device))
        if use_attention:
            assert teacher is not None  # checked above
            student_qkv = stack.enter_context(capture_projections(student))
            teacher_qkv = stack.enter_context(capture_projections(teacher))
            teacher_heads = int(getattr(teacher.config, "num_attention_heads", 1))
        return train(
            student,
            train_split,
            config,
            loss_fn,
            pad_id=pad_id,
            desc="distill",
            progress=progress,
            should_stop=should_stop,
            hidden_states=use_hidden or use_representation,
            placement=placement,
        )
