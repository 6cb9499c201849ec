"""Many workers on one study: Optuna's distributed mode (processes sharing one RDB storage), made safe.

Each worker runs this loop until the study has its ``n_trials`` (finished, and none still running):

    fail stale trials  (a RUNNING trial whose worker stopped sending heartbeats for ``grace_period`` seconds is
                        marked FAIL; RetryHeartbeatStaleTrialCallback enqueues a retry, same parameters)
    under the study's storage lock:
        count   finished (COMPLETE, PRUNED, and FAIL unless retried or interrupted) + RUNNING + WAITING (retries)
        stop    if that reaches n_trials and nothing waits
        ask     a trial (a waiting retry first, else a new one from the sampler)
    run it, sending heartbeats from a thread; tell the result (an exception, Ctrl-C or SIGTERM: FAIL, with the
    reason)

A Ctrl-C (or SIGTERM) that lands while the trial is being asked for is held until ask() has returned, so the new
trial is failed too instead of staying RUNNING until its heartbeat goes stale.

The lock makes the count exact: N workers never overshoot ``n_trials`` by starting a trial at the same moment.
It is held for milliseconds, not for the trial.  Nothing here schedules work: the sampler and the storage are
Optuna's; the lock only guards "is another trial needed?".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import STORAGE_ENV, StudyConfig, WorkersConfig
from latencysolver.devices import worker_gpus
from latencysolver.errors import ConfigError, OutputError, StorageError, shown
from latencysolver.locks import storage_lock
from latencysolver.results.attributes import repeat_of, retrain_of, seed_of
from latencysolver.results.records import (
    INTERRUPTED,
    study_record,
    trial_record,
    was_interrupted,
    write_fail_reason,
)
from latencysolver.results.repeats import repeat_seed
from latencysolver.results.storage import shown_url
from latencysolver.search.preparation import RunOptions

Log = Callable[[str], None]


def open_storage(url: str, workers: WorkersConfig) -> RDBStorage:
    """The study's storage with heartbeats on, and retries of trials whose worker died."""
    with warnings.catch_warnings():  # heartbeat arguments are "experimental" in Optuna's wording, stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=workers.heartbeat_interval,
            grace_period=workers.grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=workers.max_retry),
            engine_kwargs=_engine_kwargs(url),
        )


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # several local processes wait for the file lock, not fail
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2}


def sqlite_warning(url: str, processes: int) -> str | None:
    if url.startswith("sqlite") and processes > 1:
        return (
            f"warning: {processes} processes on one SQLite file: writes are serialized and may time out; "
            "for several workers use PostgreSQL (postgresql+psycopg://user:pw@host/db) or Optuna's "
            "JournalStorage"
        )
    return None


@dataclass(frozen=True)
class Counts:
    finished: int  # COMPLETE + PRUNED + FAIL that no retry replaces (a trial failed by Ctrl-C or SIGTERM is no result)
    running: int
    waiting: int

    @property
    def taken(self) -> int:
        return self.finished + self.running + self.waiting


def count_trials(study: optuna.Study) -> Counts:
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    finished = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried and not was_interrupted(t))
        for t in trials
    )
    return Counts(
        finished=finished,
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
    )


class _Heartbeat:
    """Records the trial's heartbeat every ``interval`` seconds until stopped."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: int):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval), daemon=True)
        self._thread.start()

    def _beat(self, storage: RDBStorage, trial_id: int, interval: int) -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if self._stop.wait(interval):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def _sigint_deferred() -> Iterator[list[int]]:
    """Inside the block a Ctrl-C or SIGTERM is only recorded (the yielded list holds its number afterwards); outside
    the main thread, where Python cannot install signal handlers, nothing changes."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _DEFERRED}
    try:
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


def _interrupt(pending: list[int]) -> KeyboardInterrupt:
    """What the held signal would have raised: SIGTERM is ``Terminated`` where the CLI turned it into one."""
    if signal.SIGTERM in pending and signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return Terminated()
    if signal.SIGTERM in pending:  # nobody handles SIGTERM here: it ends the process, as it would have
        os.kill(os.getpid(), signal.SIGTERM)
    return KeyboardInterrupt()


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the Ctrl-C path by ``sigterm_as_interrupt`` (no user error: the CLI exits 143)."""


def _inside(frame: FrameType | None, module: str) -> bool:
    """Whether ``frame`` or a frame that called it runs code of ``module`` (or of a module under it)."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(module):
            return True
        frame = frame.f_back
    return False


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``, a container stop) takes the Ctrl-C path: the running trial is failed.

    A SIGTERM that lands while SQLAlchemy's pool returns a connection is sent again 50 ms later instead of raising
    there: the pool would log the interrupt's traceback ("Exception during reset or similar") before passing it on,
    and the interrupt is reported once by the caller (the CLI: ``latencysolver: terminated``).  Used by the CLI's
    run, worker, confirm and remeasure, and by ``benchmarks/search_efficiency.py``."""

    def terminate(signum, frame):
        if _inside(frame, "sqlalchemy.pool"):
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signal_name(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"


def work(
    study: optuna.Study,
    storage: RDBStorage,
    objective: Callable[[optuna.Trial], tuple[float, float]],
    n_trials: int,
    *,
    max_trials: int | None = None,
    callbacks: tuple[Callable[[optuna.Study, FrozenTrial], None], ...] = (),
    only_enqueued: bool = False,
) -> int:
    """Run trials until the study has ``n_trials`` (or this worker ran ``max_trials``); returns how many ran.

    ``only_enqueued``: run the WAITING (enqueued) trials only, never ask the sampler for a new one (the seed
    repeats of ``latencysolver confirm``: each is a fixed recipe)."""
    ran = 0
    study_id = storage.get_study_id_from_name(study.study_name)
    interval = storage.heartbeat_interval
    if interval is None:  # a programming error: open_storage() always sets it
        raise ValueError("work() needs a storage with heartbeats: open it with open_storage()")
    lock_name = f"latencysolver:{study.study_name}"
    while max_trials is None or ran < max_trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        trial = None
        # Ctrl-C while asking waits until the trial is in hand, so it can be failed rather than left RUNNING
        with _sigint_deferred() as pending, storage_lock(storage.engine, lock_name):
            counts = count_trials(study)
            full = counts.waiting == 0 and (counts.taken >= n_trials or only_enqueued)
            if not full:
                with warnings.catch_warnings():  # "heartbeat is meant for optimize()": _Heartbeat does it here
                    warnings.simplefilter("ignore", UserWarning)
                    trial = study.ask()
        if trial is None:
            if pending:
                raise _interrupt(pending)
            if counts.running == 0:
                break
            # Every trial is taken, but some still run.  If a worker died, its trial goes stale after the
            # grace period and is retried: stay to run that retry rather than leave the study short.
            time.sleep(min(interval, 5))
            continue
        heartbeat = None
        try:
            if pending:
                raise _interrupt(pending)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            heartbeat = _Heartbeat(storage, trial_id, interval)
            values = objective(trial)
        except KeyboardInterrupt as exc:
            if heartbeat is not None:
                heartbeat.stop()
            write_fail_reason(trial, f"{INTERRUPTED} ({_signal_name(exc)}): the worker stopped")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except OutputError as exc:  # a folder that cannot be written stops the worker: every next trial would fail
            if heartbeat is not None:
                heartbeat.stop()
            write_fail_reason(trial, f"{INTERRUPTED} (cannot write): {exc}")  # not the recipe's fault: run it again
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception:  # noqa: BLE001 - any error in a trial fails that trial only; the objective recorded why
            if heartbeat is not None:
                heartbeat.stop()
            study.tell(trial, state=TrialState.FAIL)  # the objective set fail_reason
        else:
            heartbeat.stop()
            study.tell(trial, values)
        ran += 1
        frozen = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        for callback in callbacks:
            callback(study, frozen)
    return ran


def spawn_workers(
    n: int, study_name: str, storage_url: str, extra_args: list[str], gpus: list[str | None] | None = None
) -> list[subprocess.Popen]:
    """``n`` local ``latencysolver worker`` processes on the same study (output goes to this terminal).

    The storage URL reaches them in the environment (``STORAGE_ENV``, the default ``--storage``), not on their
    command line: any user can read a process's arguments (``ps``), and the URL may carry a password.  ``gpus[i]``,
    when set, is worker i's ``CUDA_VISIBLE_DEVICES`` (``devices.worker_gpus``).
    """
    command = [sys.executable, "-m", "latencysolver", "worker", "--study", study_name, *extra_args]
    env = os.environ.copy() | {STORAGE_ENV: storage_url}
    gpus = gpus or [None] * n
    return [
        subprocess.Popen(command, env=env if gpu is None else env | {"CUDA_VISIBLE_DEVICES": gpu}) for gpu in gpus[:n]
    ]


def summary_callback(log: Callable[[str], None], started: float) -> Callable[[optuna.Study, FrozenTrial], None]:
    """One line per finished trial (and one more when its latency is flagged unstable)."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        r = trial_record(trial)
        seconds = r.seconds or (trial.duration.total_seconds() if trial.duration else 0.0)
        what = Recipe.from_dict(r.recipe_dict).describe() if r.recipe_dict else ""
        of, retrain = repeat_of(trial), retrain_of(trial)
        repeat = f" (repeat of trial {of}, seed {r.recipe.seed if r.recipe else '?'})" if of is not None else ""
        if retrain:
            repeat += f" (trial {retrain[0]} retrained, {retrain[1]} steps)"
        if r.baseline:
            repeat += " (usual recipe: the teacher as is)"
        if trial.state == TrialState.COMPLETE:
            log(
                f"trial {trial.number:>3}{repeat}  acc {trial.values[0]:.3f}  {r.latency_p50_ms:7.2f} ms  "
                f"{r.speedup:4.1f}x ±{r.speedup_cv:.0%}  {what}  [{seconds:.0f}s]"
            )
        else:
            log(f"trial {trial.number:>3}{repeat}  {trial.state.name}  {r.fail_reason or ''}  {what}")
        check = r.stability()
        if check is not None and not check.stable:
            log(
                f"      latency {check.describe()}: off the front and out of --best until "
                f"`latencysolver remeasure --study {study.study_name} --trials {trial.number}` on a quieter machine"
            )

    return callback


def run_local_workers(study: optuna.Study, config: StudyConfig, options: RunOptions, log: Log) -> optuna.Study:
    """``run --workers N``: N ``latencysolver worker`` processes on this machine; waits for them all."""
    warning = sqlite_warning(config.storage, options.workers)
    if warning:
        log(warning)
    extra = [
        *(["--cache-dir", options.cache_dir] if options.cache_dir else []),
        *(["--teacher", options.teacher_path] if options.teacher_path else []),
        "--no-progress",
    ]
    gpus = worker_gpus(config.training.device, options.workers)
    on = f", GPUs {','.join(g for g in gpus if g)}" if any(gpus) else ""
    log(f"study {config.name!r}: starting {options.workers} local workers{on} (storage {shown_url(config.storage)})")
    processes = spawn_workers(options.workers, config.name, config.storage, extra, gpus)
    try:
        codes = [p.wait() for p in processes]
    except KeyboardInterrupt as exc:  # Ctrl-C reaches the workers too (same process group); wait for their clean exit
        if isinstance(exc, Terminated):  # SIGTERM does not: pass it on
            for p in processes:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait() for p in processes]
        raise
    if any(codes):
        raise StorageError(
            f"study {config.name!r}: {sum(c != 0 for c in codes)} of {len(codes)} workers "
            f"exited with an error (exit codes {codes})"
        )
    return optuna.load_study(study_name=config.name, storage=config.storage)


def check_repeats_to_run(study: optuna.Study) -> None:
    """A worker on a ``<name>:confirm`` or ``<name>:retrain`` study runs its enqueued trials only, never the
    sampler's.  Where none waits or runs but some are missing (interrupted: a trial stopped by Ctrl-C is no result,
    and is not re-queued by itself), it would run nothing and exit as if done: say which command queues them."""
    record = study_record(study)
    search, wanted, counts = record.sibling_of, (record.config or {}).get("n_trials"), count_trials(study)
    if not search or not isinstance(wanted, int) or counts.waiting or counts.running or counts.finished >= wanted:
        return
    trials = study.get_trials(deepcopy=False)
    if record.retrains_of:
        what, again = "retrained recipes", _retrain_again(search, [t for t in trials if was_interrupted(t)])
    else:
        what, again = "seed repeats", _confirm_again(search, trials)
    raise ConfigError(
        f"--study {shown(study.study_name)}: {wanted - counts.finished} of its {wanted} {what} were interrupted "
        f"and none is queued, so a worker has nothing to run; {again} (with this --storage) queues them again and "
        "runs them, and then workers can join",
        key="--study",
        value=study.study_name,
    )


def _confirm_again(search: str, trials: list[FrozenTrial]) -> str:
    recipes = sorted({n for t in trials if was_interrupted(t) and (n := repeat_of(t)) is not None})
    seeds = max(
        ((seed_of(t) or 0) - repeat_seed(n, 0) for t in trials if (n := repeat_of(t)) in recipes),
        default=1,
    )
    return f"`latencysolver confirm --study {shown(search)} --trials {','.join(map(str, recipes))} --seeds {seeds}`"


def _retrain_again(search: str, interrupted: list[FrozenTrial]) -> str:
    """One ``retrain`` command per budget (steps) among the interrupted trials."""
    budgets: dict[int, set[int]] = {}
    for number, steps in (pair for t in interrupted if (pair := retrain_of(t)) is not None):
        budgets.setdefault(steps, set()).add(number)
    return " and ".join(
        f"`latencysolver retrain --study {shown(search)} --trials {','.join(map(str, sorted(numbers)))} "
        f"--steps {steps}`"
        for steps, numbers in sorted(budgets.items())
    )
