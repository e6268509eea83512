"""The counts of the evaluation protocol that both the sample and the evaluate stage read: how many
images a run generates for each extractor, and the short name of a 2-D toy. (Kept apart from both stages,
so that a change to scoring does not make every sample stage stale, and the reverse.)"""
from __future__ import annotations

from genbench.config import Params


def n_generated(params: Params, extractor: str, run: str) -> int:
    cap = params.run(run).eval.n_gen
    n = params.eval.extractors[extractor].n_gen
    return n if cap is None else min(n, cap)


def toy_name(dataset: str) -> str:
    return dataset.removeprefix("toy_")
