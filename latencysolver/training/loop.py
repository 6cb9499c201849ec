"""One training loop for both the teacher fine-tune and a trial's distillation.

AdamW with linear warm-up and decay, gradient clipping at 1.0, length-grouped batches, a progress bar.  The
loss is a function of (model output, batch), so fine-tuning (cross-entropy) and distillation (soft + hard
targets, optionally hidden states) share everything else.  A non-finite loss stops the run with
``TrialFailure``: a diverged student is a failed trial, not a model to evaluate.  ``placement`` says where it
computes (latencysolver/devices.py): the model goes there for the run and comes back to the CPU after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from latencysolver.config.training import TrainConfig
from latencysolver.data.batches import Batch, EncodedSplit, train_batches
from latencysolver.devices import Placement, on_device
from latencysolver.errors import TrialFailure

# (the model's output: ``.logits``, and ``.hidden_states`` when ``train(hidden_states=True)``; the batch) → loss
LossFn = Callable[[Any, Batch], torch.Tensor]
# (the model, the batch) → the step's loss, detached: for a step that runs the model more than once (the elastic
# student's sandwich) and back-propagates each pass itself, so that one pass's graph is freed before the next runs
ModelBackwardFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass(frozen=True)
class TrainResult:
    steps: int  # steps actually run
    final_loss: float  # mean over the last 10% of steps
    seconds: float
    stopped_early: bool = False  # ``should_stop`` ended it before ``total_steps``


def total_steps(config: TrainConfig, num_rows: int) -> int:
    if config.steps is not None:
        return config.steps
    return max(1, math.ceil(config.epochs * num_rows / config.batch_size))


def train(
    model: nn.Module,
    split: EncodedSplit,
    config: TrainConfig,
    loss_fn: LossFn | None,
    *,
    pad_id: int = 0,
    desc: str = "train",
    progress: bool = True,
    should_stop: Callable[[int, int], bool] | None = None,
    hidden_states: bool = False,
    model_backward: ModelBackwardFn | None = None,
    placement: Placement | None = None,
) -> TrainResult:
    """``should_stop(step, total)`` is asked after each step (1-based); True ends training there.
    ``hidden_states`` asks the model for every layer's output too (Hugging Face ``output_hidden_states``).
    ``model_backward`` replaces the one forward pass, ``loss_fn`` and the backward pass when a step runs the model
    and back-propagates itself (gradients accumulate over its passes; it runs them under ``placement.autocast()``
    where it wants it)."""
    if (loss_fn is None) == (model_backward is None):
        raise ValueError("train() needs exactly one of loss_fn and model_backward")
    placement = placement or Placement()
    with on_device(model, placement.device):  # and back to the CPU, however the run ends
        from transformers import get_linear_schedule_with_warmup

        forward_kwargs = {"output_hidden_states": True} if hidden_states else {}
        steps = total_steps(config, len(split))
        torch.manual_seed(config.seed)
        decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.learning_rate,
        )
        schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
        batches = train_batches(split, config.batch_size, config.seed, pad_id)
        tail = max(1, steps // 10)
        recent: list[float] = []
        start = time.perf_counter()
        model.train()
        bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False, dynamic_ncols=True)
        for step in bar:
            batch = next(batches).to(placement.device)
            if model_backward is not None:
                loss = model_backward(model, batch)
            else:
                assert loss_fn is not None  # checked above
                with placement.autocast():
                    loss = loss_fn(model(**batch.inputs, **forward_kwargs), batch)
            if not torch.isfinite(loss):
                bar.close()
                model.eval()
                raise TrialFailure(f"{desc}: loss became {loss.item()} at step {step + 1}/{steps}")
            if model_backward is None:
                loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            recent = (recent + [loss.item()])[-tail:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", refresh=False)
            if should_stop is not None and step + 1 < steps and should_stop(step + 1, steps):
                bar.close()
                model.eval()
                return TrainResult(
                    steps=step + 1,
                    final_loss=sum(recent) / len(recent),
                    seconds=time.perf_counter() - start,
                    stopped_early=True,
                )
        bar.close()
        model.eval()
        return TrainResult(steps=steps, final_loss=sum(recent) / len(recent), seconds=time.perf_counter() - start)


def cross_entropy_loss(outputs: Any, batch: Batch) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs.logits.float(), batch.labels)
