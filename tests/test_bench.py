"""``latencysolver bench``: the protocol's table for a model folder, an export, and a paired reference."""

from __future__ import annotations

import re

from latencysolver.cli import main

FAST = ["--threads", "1", "--rows", "6", "--warmup", "1", "--repeats", "2", "--batch-size", "4"]


def test_bench_a_model_folder_against_itself(tiny_model_dir, synthetic_data_dir, tmp_path, capsys):
    code = main(
        [
            "bench",
            str(tiny_model_dir),
            "--data",
            str(synthetic_data_dir),
            "--reference",
            str(tiny_model_dir),
            "--cache-dir",
            str(tmp_path),
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    for label in ("p50, batch 1", "p90, batch 1", "throughput, batch 4", "paired speed-up", "parameters"):
        assert label in out
    speedup = float(re.search(r"paired speed-up\s*│\s*([0-9.]+)x", out).group(1))
    assert 0.5 < speedup < 2.0  # the same model on both sides
    assert "6 seeded validation rows" in out and "1 threads" in out
    assert re.search(r"hardware: .*\[[0-9a-f]{12}\]", out)


def test_bench_needs_data_for_a_plain_model_folder(tiny_model_dir, capsys):
    assert main(["bench", str(tiny_model_dir), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --data" in err


def test_bench_rejects_bad_settings_in_one_line(tiny_model_dir, synthetic_data_dir, tmp_path, capsys):
    assert main(["bench", str(tiny_model_dir), "--data", str(synthetic_data_dir), "--rows", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rows" in err and "0" in err
    assert main(["bench", str(tmp_path / "nothing-here"), "--data", str(synthetic_data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing-here" in err
