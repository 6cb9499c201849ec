"""Training the elastic student: the sandwich rule over sub-networks, with the project's one training loop.

Each step runs the batch through several sub-networks of the same shared weights and distills each (soft
targets: the teacher's cached logits, as in every trial):

- the largest (every head, neuron and layer) and the smallest the search space can ask for (its narrowest widths
  *and* its fewest layers), explicitly, every step from the first: the sandwich rule of slimmable networks (Yu &
  Huang 2019) as BigNAS states it (Yu et al. 2020: the max, the min and N random child models each step; mmrazor's
  ``BigNAS.train_step`` does exactly that), so both ends of the space are trained every step.  DynaBERT (Hou et
  al. 2020) never trained depths below half of the layers; the smallest slice here keeps a third of them, so it
  gets its own share of every step rather than whatever the random draws leave it;
- ``random_subnetworks`` drawn between them, each width and the depth uniform.

Progressive shrinking (DynaBERT trains width, then depth; Once-for-All, Cai et al. 2020, shrinks in stages): for
the first ``width_first`` share of the steps the random sub-networks keep all layers, so the rewired widths settle
before they are also cut in depth.

Each sub-network's loss is back-propagated as soon as it is computed and the gradients accumulate (DynaBERT's
``run_glue.py``, "accumulate grads for all sub-networks"; mmrazor's BigNAS): the sum of the losses gets the same
gradient as one backward pass over their sum, but only one sub-network's graph is alive at a time, so a step's
memory is that of its largest sub-network, not of all of them.  The losses are summed, not averaged, so each
sub-network's gradient keeps the scale one distillation run of it would have.  The memory earlier steps freed is
handed back to the system every ``RELEASE_EVERY`` steps (``devices.release_freed_memory``): the sub-networks change
shape every step, and glibc would otherwise keep what they freed, fragmented, and grow with it.  Not every step:
the next step then faults all of that memory in again, which cost about a tenth of a step on a 2-core VM.
"""

from __future__ import annotations

from collections.abc import Callable

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
from latencysolver.devices import Placement, release_freed_memory
from latencysolver.training.distillation import distillation_loss
from latencysolver.training.loop import TrainResult, train

RELEASE_EVERY = 10  # steps between two hand-backs of the freed memory


def sandwich(
    shape: ElasticShape, smallest: SubNetwork, count: int, generator: torch.Generator, depth: bool
) -> list[SubNetwork]:
    """The sub-networks of one step: the largest, the smallest, then ``count`` random ones between (at full depth
    while ``depth`` is False)."""
    randoms = [sample_subnetwork(shape, smallest, generator, depth) for _ in range(count)]
    return [full_network(shape), smallest, *randoms]


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
    should_stop: Callable[[int, int], bool] | None = None,
) -> TrainResult:
    """Train ``model`` (rewired, in place) so that its sub-networks down to ``smallest`` answer as the teacher, for
    ``config.steps_for(len(train_split))`` steps.  ``should_stop(step, total)``: as ``training.loop.train``."""
    if teacher_logits.shape[0] != len(train_split):
        raise ValueError(f"teacher logits cover {teacher_logits.shape[0]} rows, the train split has {len(train_split)}")
    shape = elastic_shape(model)
    placement = placement or Placement()
    generator = torch.Generator().manual_seed(config.seed)
    training = config.training(len(train_split))
    assert training.steps is not None  # steps_for gives a number
    width_steps = round(config.width_first * training.steps)
    done = [0]  # steps run so far (the loop calls step_backward once per step)

    def step_backward(module: nn.Module, batch: Batch) -> torch.Tensor:
        if done[0] % RELEASE_EVERY == 0:
            release_freed_memory()  # the earlier steps' graphs, freed by their backward passes: back to the system
        subs = sandwich(shape, smallest, config.random_subnetworks, generator, depth=done[0] >= width_steps)
        done[0] += 1
        targets = teacher_logits[batch.indices].to(batch.labels.device)
        total = torch.zeros((), device=batch.labels.device)
        for sub in subs:
            with use_subnetwork(module, sub), placement.autocast():
                logits = module(**batch.inputs).logits.float()
                loss = distillation_loss(logits, targets, batch.labels, config.temperature, config.alpha)
            loss.backward()  # frees this sub-network's graph before the next one runs
            total += loss.detach()
        return total

    return train(
        model,
        train_split,
        training,
        None,
        pad_id=pad_id,
        desc="elastic student",
        progress=progress,
        model_backward=step_backward,
        placement=placement,
        should_stop=should_stop,
    )
