"""Statistics of accuracies measured on a fixed validation split: plain numpy and scipy, no Optuna, no torch.

``intervals.py``
    ``Interval`` and the Wilson interval of one model's accuracy (``accuracy_interval``); ``correct_of`` turns
    predictions and labels into per-row correctness.
``paired.py``
    A student against the teacher on the same rows (``paired_difference`` → ``PairedComparison``): the
    difference with Newcombe's (1998) method-10 interval, the discordant counts, the exact McNemar p-value,
    the one-sided lower bound and the non-inferiority decision.
``margins.py``
    The approximate standard error of a paired difference and the margin a split of ``n`` rows can resolve.
``ranks.py``
    Whether two budgets rank recipes alike: Spearman's rho with a Fisher-z interval (``rank_agreement`` →
    ``RankAgreement``).
``seeds.py``
    Seed repeats as mean ± sample sd (``summarize`` → ``SeedSummary``), and a recipe's seed-mean paired
    difference to the teacher with an interval over rows (``seed_pooled_difference``).

All accuracies, differences and margins are shares (0.01 is one point), not percentages.
"""

from typing import TYPE_CHECKING

from latencysolver.lazy import lazy_attributes

if TYPE_CHECKING:
    from latencysolver.stats.intervals import Interval, accuracy_interval, correct_of, wilson_interval
    from latencysolver.stats.margins import resolvable_margin, standard_error_of_difference
    from latencysolver.stats.paired import (
        PairedComparison,
        mcnemar_exact_p,
        newcombe_paired_interval,
        paired_difference,
    )
    from latencysolver.stats.ranks import MIN_RECIPES, RankAgreement, rank_agreement
    from latencysolver.stats.seeds import SeedSummary, seed_pooled_difference, summarize

__all__ = [
    "MIN_RECIPES",
    "Interval",
    "PairedComparison",
    "RankAgreement",
    "SeedSummary",
    "accuracy_interval",
    "correct_of",
    "mcnemar_exact_p",
    "newcombe_paired_interval",
    "paired_difference",
    "rank_agreement",
    "resolvable_margin",
    "seed_pooled_difference",
    "standard_error_of_difference",
    "summarize",
    "wilson_interval",
]

# imported on first use: a module that needs one name does not import all the others
__getattr__ = lazy_attributes(
    __name__,
    {
        "Interval": "latencysolver.stats.intervals",
        "accuracy_interval": "latencysolver.stats.intervals",
        "correct_of": "latencysolver.stats.intervals",
        "wilson_interval": "latencysolver.stats.intervals",
        "resolvable_margin": "latencysolver.stats.margins",
        "standard_error_of_difference": "latencysolver.stats.margins",
        "PairedComparison": "latencysolver.stats.paired",
        "mcnemar_exact_p": "latencysolver.stats.paired",
        "newcombe_paired_interval": "latencysolver.stats.paired",
        "paired_difference": "latencysolver.stats.paired",
        "MIN_RECIPES": "latencysolver.stats.ranks",
        "RankAgreement": "latencysolver.stats.ranks",
        "rank_agreement": "latencysolver.stats.ranks",
        "SeedSummary": "latencysolver.stats.seeds",
        "seed_pooled_difference": "latencysolver.stats.seeds",
        "summarize": "latencysolver.stats.seeds",
    },
)
