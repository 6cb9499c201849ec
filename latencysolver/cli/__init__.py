"""``latencysolver`` command line: parse arguments, call the library, print.  No logic lives here."""

from __future__ import annotations

import os
import sys

from latencysolver.cli.parser import _BEST_RULES, STORAGE_ENV, build_parser

__all__ = ["STORAGE_ENV", "_BEST_RULES", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 1 a user error (``LatencySolverError``: one line on stderr); 2 a usage error (argparse
    exits with it before any work); 130 interrupted by Ctrl-C; 143 by SIGTERM (run, worker).  Anything else is a
    bug and keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from latencysolver.errors import LatencySolverError, clip

    _quiet_libraries()
    try:
        return args.handler(args)
    except LatencySolverError as exc:  # one line, however long a value a message let through
        print(f"latencysolver: error: {clip(str(exc))}", file=sys.stderr)
        return 1
    except _terminated():
        print("latencysolver: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("latencysolver: interrupted", file=sys.stderr)
        return 130


def _terminated() -> type[BaseException]:
    """``Terminated`` (SIGTERM in run and worker), imported only once an exception reaches ``main``: the search
    layer imports torch, which a command refused at its first check (a bad study file) never needs."""
    from latencysolver.search.workers import Terminated

    return Terminated


def _quiet_libraries() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Our own bars cover the long steps; the libraries' bars for sub-second steps are noise between them.
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    else:  # read when datasets is imported: a command that loads no data does not import it (a second)
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    # transformers' bars follow huggingface_hub's switch, read when the hub is imported: a command that loads no
    # model (pareto, report, dashboard) skips importing transformers and torch for it (seconds)
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()  # the hub's bars too
    elif "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    else:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
