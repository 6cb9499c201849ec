"""Training the elastic student: the sandwich rule over sub-networks, with the project's one training loop.

Each step runs the batch through several sub-networks of the same shared weights and sums their distillation
losses (soft targets: the teacher's cached logits, as in every trial) before one backward pass:

- the largest (every head, neuron and layer) and the smallest the search space can ask for: the sandwich rule of
  slimmable networks (Yu & Huang 2019), used by DynaBERT, HAT and Klein et al. 2024, so both ends of the space are
  trained every step;
- ``random_subnetworks`` drawn between them, each width and the depth uniform.

Progressive shrinking (DynaBERT trains width, then depth): for the first ``width_first`` share of the steps every
sub-network keeps all layers, so the rewired widths settle before layers start being skipped.  The losses are
summed, not averaged, so each sub-network's gradient keeps the scale one distillation run of it would have.
"""

from __future__ import annotations

import torch
from torch import nn

from latencysolver.compression.elastic import (
    ElasticShape,
    SubNetwork,
    elastic_shape,
    full_network,
    sample_subnetwork,
    use_subnetwork,
)
from latencysolver.config.training import ElasticConfig
from latencysolver.data.batches import Batch, EncodedSplit
from latencysolver.devices import Placement
from latencysolver.training.distillation import distillation_loss
from latencysolver.training.loop import TrainResult, train


def sandwich(
    shape: ElasticShape, smallest: SubNetwork, count: int, generator: torch.Generator, depth: bool
) -> list[SubNetwork]:
    """The sub-networks of one step: the largest, the smallest, then ``count`` random ones (all at full depth while
    ``depth`` is False)."""
    low = smallest if depth else SubNetwork(smallest.heads, smallest.neurons, tuple(range(shape.layers)))
    return [full_network(shape), low, *(sample_subnetwork(shape, low, generator, depth=depth) for _ in range(count))]


def train_elastic(
    model: nn.Module,
    train_split: EncodedSplit,
    teacher_logits: torch.Tensor,
    config: ElasticConfig,
    smallest: SubNetwork,
    *,
    pad_id: int = 0,
    progress: bool = True,
    placement: Placement | None = None,
) -> TrainResult:
    """Train ``model`` (rewired, in place) so that its sub-networks down to ``smallest`` answer as the teacher."""
    if teacher_logits.shape[0] != len(train_split):
        raise ValueError(f"teacher logits cover {teacher_logits.shape[0]} rows, the train split has {len(train_split)}")
    shape = elastic_shape(model)
    generator = torch.Generator().manual_seed(config.seed)
    width_steps = round(config.width_first * config.steps)
    done = [0]  # steps run so far (the loop calls step_loss once per step)

    def step_loss(module: nn.Module, batch: Batch) -> torch.Tensor:
        subs = sandwich(shape, smallest, config.random_subnetworks, generator, depth=done[0] >= width_steps)
        done[0] += 1
        targets = teacher_logits[batch.indices].to(batch.labels.device)
        total = torch.zeros((), device=batch.labels.device)
        for sub in subs:
            with use_subnetwork(module, sub):
                logits = module(**batch.inputs).logits.float()
            total = total + distillation_loss(logits, targets, batch.labels, config.temperature, config.alpha)
        return total

    return train(
        model,
        train_split,
        config.training(),
        None,
        pad_id=pad_id,
        desc="elastic student",
        progress=progress,
        model_loss=step_loss,
        placement=placement,
    )
