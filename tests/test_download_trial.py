"""``download_trial``: every file a trial stored in the artifact store, copied into a folder under its name."""

from __future__ import annotations

import optuna
from optuna.artifacts import upload_artifact

from latencysolver.results.storage import AtomicArtifactStore, download_trial


def test_every_artifact_of_the_trial_and_only_its_own(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    store = AtomicArtifactStore(tmp_path / "artifacts")
    (tmp_path / "artifacts").mkdir()
    files = {"student.json": b'{"layers": 2}', "model.onnx": b"\x00onnx", "predictions.pt": b"rows"}
    chosen, other = study.ask(), study.ask()
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
        upload_artifact(artifact_store=store, file_path=str(tmp_path / name), study_or_trial=chosen)
    (tmp_path / "other.txt").write_bytes(b"not this trial's")
    upload_artifact(artifact_store=store, file_path=str(tmp_path / "other.txt"), study_or_trial=other)
    study.tell(chosen, 1.0)

    folder = download_trial(store, storage, study.trials[0], tmp_path / "out" / "0")
    assert folder == tmp_path / "out" / "0"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
