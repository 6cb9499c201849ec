"""benchmarks/cnn.py end to end on a tiny study: every arm, two seeds, intervals and speed-up in the table."""

from __future__ import annotations

import json

from latencysolver.config.study import load_study_config
from tests.conftest import load_benchmark, write_study_yaml


def test_every_arm_runs_and_is_tabulated(tmp_path, tiny_model_dir, synthetic_data_dir):
    cnn = {"embed_dim": 16, "channels": 8, "kernel_sizes": [3]}
    path = write_study_yaml(
        tmp_path, tiny_model_dir, synthetic_data_dir, cnn=cnn, cnn_distillation={"steps": 3, "batch_size": 8}
    )
    out = tmp_path / "out"
    argv = ["--config", str(path), "--data", str(synthetic_data_dir), "--seeds", "0,1", "--augment", "2"]
    results = load_benchmark("cnn").main([*argv, "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert list(results) == ["base", "pair", "representation", "augment", "all"]
    for r in results.values():
        assert [run["seed"] for run in r["runs"]] == [0, 1]
        for run in r["runs"]:
            low, estimate, high = (run["validation"][k] for k in ("low", "estimate", "high"))
            assert 0 <= low <= estimate <= high <= 1 and "test" in run
        assert r["runs"][0]["speedup"] > 0
    # the base arm turns every addition off, whatever the study's defaults (augment is on by default)
    config = load_study_config(path)
    assert config.cnn.augment == 4
    bench = load_benchmark("cnn")
    assert (
        bench.arm_config(config, "base", 2, 1.0).cnn.augment,
        bench.arm_config(config, "augment", 2, 1.0).cnn.augment,
    ) == (0, 2)
    table = (out / "results.md").read_text()
    assert all(f"| {arm} |" in table for arm in results)
    assert json.loads((out / "results.json").read_text())["arms"].keys() == results.keys()
