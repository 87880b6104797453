"""Query strategies of active learning (`methods/active.py`): which unlabelled examples to
label next, from the current model's class probabilities or embeddings of the pool.

Pure functions over arrays. Every function returns positions into the pool arrays it is
given (int64 [n], distinct), in the order they were chosen, and is deterministic: ties go
to the lower pool position, and the random draws come from a seed the caller derives from
(run seed, data_seed, round).

- `random`: n positions drawn uniformly without replacement (numpy's `default_rng(seed)`).
- `least_confidence` (Lewis & Gale 1994): the lowest max_k p_k.
- `entropy` (Holub et al. 2008): the highest -sum_k p_k log p_k (nats).
- `margin`, "breaking ties" (Luo et al. 2005): the smallest p_(1) - p_(2), the gap between
  the two most probable classes.
- `coreset` (Sener & Savarese 2018, greedy k-center): repeatedly the pool example farthest
  (Euclidean, L2-normalised embeddings) from every labelled or already chosen example.
- `kmeans` (embedding k-means, BERT-KM of Yuan et al. 2020): k-means with k = n over the
  L2-normalised pool embeddings (scikit-learn, `random_state` = the seed), then for each
  centre in turn the not yet chosen example most cosine-similar to it.

Implementation: small-text 1.4.1 (Schröder et al. 2023), through a thin adapter, for the
three uncertainty scores (its `LeastConfidence`, `PredictionEntropy` and `BreakingTies`
score precomputed probabilities through a stand-in classifier) and the greedy core-set
(its `greedy_coreset` function over our embeddings). Its batch selection is not used: it
takes the batch with `np.argpartition`, which leaves the choice among tied scores at the
cut unspecified and returns the batch unordered; here a stable sort on (score, position)
decides. Random sampling and k-means are written here because small-text draws them from
NumPy's global random state (`np.random.choice`; `KMeans` without `random_state`), so a
query would depend on whatever ran before it rather than on (seed, data_seed, round).
"""

from __future__ import annotations

import numpy as np

UNCERTAINTY = ("least_confidence", "entropy", "margin")
DIVERSITY = ("coreset", "kmeans")
STRATEGIES = ("random", *UNCERTAINTY, *DIVERSITY)
_SMALL_TEXT = {
    "least_confidence": "LeastConfidence",
    "entropy": "PredictionEntropy",
    "margin": "BreakingTies",
}


def _check_n(size: int, n: int) -> None:
    if not 0 < n <= size:
        raise ValueError(f"cannot choose {n} of a pool of {size} examples")


class _Probabilities:
    """small-text's classifier interface over probabilities computed elsewhere:
    `predict_proba(dataset)` returns them (the dataset argument is ignored)."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, _dataset) -> np.ndarray:
        return self.probs


def uncertainty_scores(strategy: str, probs: np.ndarray) -> np.ndarray:
    """float [pool]: small-text's score of each pool example under `strategy` (one of
    UNCERTAINTY), oriented so that lower is queried first (least confidence: max_k p_k;
    entropy: minus the entropy in nats; margin: p_(1) - p_(2)). probs: float [pool, classes],
    rows summing to 1. Raises ValueError for an unknown strategy."""
    import small_text.query_strategies as qs

    if strategy not in _SMALL_TEXT:
        raise ValueError(f"unknown uncertainty strategy {strategy!r} (one of {UNCERTAINTY})")
    probs = np.asarray(probs, dtype=np.float64)
    pool = np.arange(len(probs))
    none = np.zeros(0, dtype=np.int64)
    scorer = getattr(qs, _SMALL_TEXT[strategy])()
    return np.asarray(scorer.score(_Probabilities(probs), None, pool, none, none), dtype=float)


def lowest(scores: np.ndarray, n: int) -> np.ndarray:
    """The positions of the n lowest scores, lowest first; equal scores by position."""
    scores = np.asarray(scores, dtype=float)
    _check_n(len(scores), n)
    return np.lexsort((np.arange(len(scores)), scores))[:n].astype(np.int64)


def random_query(pool_size: int, n: int, seed: int | list[int]) -> np.ndarray:
    """n distinct positions of range(pool_size), uniformly at random from `seed` (an int or
    a list of ints, numpy `default_rng`)."""
    _check_n(pool_size, n)
    return np.random.default_rng(seed).choice(pool_size, size=n, replace=False).astype(np.int64)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def coreset_query(pool_emb: np.ndarray, labelled_emb: np.ndarray, n: int) -> np.ndarray:
    """Greedy k-center (small-text `greedy_coreset`, Euclidean on L2-normalised rows):
    positions into `pool_emb` [pool, d], given the labelled set's `labelled_emb` [l, d]
    (l >= 1). Among equally far examples the lowest position is chosen (argmax)."""
    import warnings

    from small_text.query_strategies.coresets import greedy_coreset

    _check_n(len(pool_emb), n)
    if not len(labelled_emb):
        raise ValueError("a core-set query needs at least one labelled example")
    x = np.concatenate([_normalize(pool_emb), _normalize(labelled_emb)])
    unlabelled = np.arange(len(pool_emb))
    labelled = np.arange(len(pool_emb), len(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        picked = greedy_coreset(x, unlabelled, labelled, n, distance_metric="euclidean",
                                normalized=True)  # fmt: skip
    return np.asarray(picked, dtype=np.int64)


def kmeans_query(pool_emb: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Embedding k-means: positions into `pool_emb` [pool, d] (see the module docstring).
    KMeans(n_clusters=n, n_init=3, random_state=seed) on L2-normalised rows; centre j (in
    scikit-learn's order) takes the most cosine-similar example not taken by centres < j."""
    import warnings

    from sklearn.cluster import KMeans

    _check_n(len(pool_emb), n)
    x = _normalize(pool_emb)
    with warnings.catch_warnings():  # fewer distinct points than clusters: still n centres
        warnings.simplefilter("ignore")
        centres = KMeans(n_clusters=n, n_init=3, random_state=seed).fit(x).cluster_centers_
    sim = _normalize(centres) @ x.T
    out = np.empty(n, dtype=np.int64)
    taken = np.zeros(len(x), dtype=bool)
    for j in range(n):
        row = np.where(taken, -np.inf, sim[j])
        out[j] = int(np.argmax(row))
        taken[out[j]] = True
    return out


def query(
    strategy: str,
    n: int,
    seed: list[int],
    pool_size: int,
    probs: np.ndarray | None = None,
    pool_emb: np.ndarray | None = None,
    labelled_emb: np.ndarray | None = None,
) -> np.ndarray:
    """The next n positions into a pool of `pool_size` under `strategy` (STRATEGIES):
    random needs nothing else, uncertainty strategies `probs` [pool, classes],
    coreset `pool_emb` and `labelled_emb`, kmeans `pool_emb`. `seed`: the ints random and
    k-means draw from. Raises ValueError for an unknown strategy or a missing input."""
    if strategy == "random":
        return random_query(pool_size, n, seed)
    if strategy in UNCERTAINTY:
        return lowest(uncertainty_scores(strategy, probs), n)
    if strategy == "coreset":
        return coreset_query(pool_emb, labelled_emb, n)
    if strategy == "kmeans":
        return kmeans_query(pool_emb, n, int(np.random.SeedSequence(seed).generate_state(1)[0]))
    raise ValueError(f"unknown strategy {strategy!r} (one of {STRATEGIES})")
