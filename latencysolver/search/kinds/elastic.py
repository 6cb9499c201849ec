"""The elastic student (``trial_mode: elastic``): one student trained once per study (``models/elastic.py``), of
which each trial slices a sub-network (prune ratio → width prefix, skip → depth), factorizes it at the recipe's
rank, then lets it recover for ``recovery_steps`` (0 allowed: the slice as the elastic student trained it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from latencysolver.cache import cache_root, content_hash
from latencysolver.compression import encoder_layers, factorize_
from latencysolver.compression.elastic import slice_model, subnetwork
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig
from latencysolver.data.batches import concat
from latencysolver.models.elastic import prepare_elastic
from latencysolver.results.storage import AtomicArtifactStore
from latencysolver.search.context import Prepared, RunOptions, TrainedStudent, TrialContext
from latencysolver.search.kinds.base import Log, StudentKind
from latencysolver.search.rungs import Rungs
from latencysolver.search.sharing import fetch_elastic, share_elastic
from latencysolver.search.students import distill_into, layer_wise
from latencysolver.training.distillation import hidden_targets


class ElasticKind(StudentKind):
    """slice(elastic student) → low rank → recover (``recovery_steps``)."""

    name = "elastic"
    ranked = False  # an elastic study has no rungs (config/study.py refuses them)

    def claims(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """Every transformer recipe of a study with an elastic student."""
        return ctx.elastic is not None and recipe.architecture != "cnn"

    def prepare(self, config: StudyConfig, prepared: Prepared, options: RunOptions, log: Log) -> Prepared:
        """Train (or load the cached, or the worker's fetched) elastic student, on the augmented rows too when
        every student learns from them."""
        if config.trial_mode != "elastic":
            return prepared
        train, fingerprint, logits = prepared.train, prepared.data.train.fingerprint(), None
        augmented, teacher = prepared.augmented, prepared.teacher
        if augmented is not None and augmented.every_student:  # the elastic student trains on the pairs too
            train = concat(train, augmented.split)
            fingerprint = content_hash(fingerprint, augmented.key)
            logits = torch.cat([teacher.train_logits, augmented.logits])
        prepared.elastic = prepare_elastic(
            config,
            teacher,
            train,
            fingerprint,
            prepared.cache_root,
            pad_id=prepared.pad_id,
            progress=options.progress,
            log=log,
            path=Path(options.elastic_path) if options.elastic_path else None,
            train_logits=logits,
        )
        return prepared

    def share(self, study: optuna.Study, prepared: Prepared, store: AtomicArtifactStore) -> None:
        """The elastic student, into the study's artifact store."""
        if prepared.elastic is not None:
            share_elastic(study, prepared.elastic, store)

    def fetch(self, study: optuna.Study, config: StudyConfig, options: RunOptions, log: Log) -> RunOptions:
        """The study's elastic student, copied into this cache once: a worker never retrains it."""
        if config.trial_mode != "elastic" or options.elastic_path is not None:
            return options
        fetched = fetch_elastic(study, cache_root(options.cache_dir), log)
        return dataclasses.replace(options, elastic_path=str(fetched) if fetched else None)

    def untrained(self, ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
        """The recipe's slice of the elastic student, factorized at its rank: also where the trial starts from."""
        assert ctx.elastic is not None  # claimed only in an elastic study
        sub = subnetwork(ctx.elastic.shape, recipe.prune_ratio, recipe.skip_prob)
        model = slice_model(ctx.elastic.model, sub)
        if recipe.rank is not None:
            factorize_(model, recipe.rank)  # the truncated SVD of the sliced Linears
        return model.eval(), sub.layers

    def train(
        self, ctx: TrialContext, recipe: Recipe, *, start: nn.Module | None = None, rungs: Rungs | None = None
    ) -> TrainedStudent:
        """The slice (``start``, recovered in place) after ``recovery_steps`` of distillation with the recipe's
        temperature, alpha and layer-wise weights (the study's ``distillation`` optimizer settings)."""
        assert ctx.elastic is not None  # claimed only in an elastic study
        if start is None:
            model, kept = self.untrained(ctx, recipe)
        else:
            model, kept = start, subnetwork(ctx.elastic.shape, recipe.prune_ratio, recipe.skip_prob).layers
        if recipe.recovery_steps == 0:
            return TrainedStudent(model.eval(), kept, 0, None)
        hidden_layers = hidden_targets(kept, len(encoder_layers(ctx.teacher_model))) if layer_wise(recipe) else None
        trained = distill_into(
            ctx,
            recipe,
            model,
            dataclasses.replace(ctx.config.distillation, steps=recipe.recovery_steps),
            hidden_weight=recipe.hidden_weight,
            attention_weight=recipe.attention_weight,
            teacher=ctx.teacher_model,
            hidden_layers=hidden_layers,
        )
        return TrainedStudent(model.eval(), kept, trained.steps, trained.final_loss)

    def trains_from_a_start(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """A slice that recovers starts from what the elastic student learned; one without recovery is not
        trained at all."""
        return recipe.recovery_steps > 0

    def record(self, ctx: TrialContext, recipe: Recipe) -> dict[str, Any]:
        """What the trial sliced: the elastic student's key, the sub-network, and its recovery steps."""
        assert ctx.elastic is not None  # claimed only in an elastic study
        sub = subnetwork(ctx.elastic.shape, recipe.prune_ratio, recipe.skip_prob)
        return {"elastic": {"key": ctx.elastic.key, **dataclasses.asdict(sub), "recovery_steps": recipe.recovery_steps}}
