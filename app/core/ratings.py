"""Bradley-Terry ratings from pairwise votes, fitted by maximum likelihood
with numpy (Newton's method), and their bootstrap intervals.

A vote is (a, b, y): versions a and b (indices 0..k-1) and y = 1 when a won,
0 when b won, 0.5 for a tie (half a win each way). Both-bad votes say nothing
about which is better and are left out by the caller. The model is
P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)); ratings are anchored at
1000 for a reference version.

Without covariates the likelihood depends on the votes only through the
counts per (pair, outcome), so the fit and each bootstrap resample cost
O(k^2), whatever the number of votes, and the resamples are fitted together
(one batched Newton solve). With covariates (style control: differences in
resolution, predict time, a rewritten prompt) each vote has its own term;
the Hessian is still assembled with bincounts in O(votes * covariates).

A small ridge (RIDGE, in natural-log units) keeps the fit finite when a
version won or lost every vote (else its rating runs off to infinity) and
when the comparison graph is not connected; it is negligible next to the
information of a few votes.
"""

import math
from dataclasses import dataclass

import numpy as np

SCALE = 400 / math.log(10)  # natural-log strengths to rating points
ANCHOR = 1000.0
RIDGE = 0.01
BOOTSTRAP_ROUNDS = 200
MAX_ITERATIONS = 100
TOLERANCE = 1e-9


@dataclass
class Fit:
    """Ratings (k,), their 95% bounds (k,), covariate weights in rating
    points per unit (c,) with their bounds, and each version's rank."""

    ratings: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    weights: np.ndarray
    weights_lower: np.ndarray
    weights_upper: np.ndarray
    ranks: np.ndarray
    rounds: int


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def pair_counts(a, b, y, k, counts=None):
    """(wins, games): wins[..., i, j] the score of i against j (ties count a
    half each way), games[..., i, j] the votes between them, summed over the
    votes, or over the batch of per-vote `counts` (rounds, votes)."""
    a, b, y = np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp), np.asarray(y, dtype=float)
    if counts is None:
        counts = np.ones((1, len(a)))
        single = True
    else:
        counts = np.atleast_2d(np.asarray(counts, dtype=float))
        single = False
    rounds = counts.shape[0]
    forward, backward = a * k + b, b * k + a
    wins = np.zeros((rounds, k * k))
    games = np.zeros((rounds, k * k))
    for r in range(rounds):
        c = counts[r]
        wins[r] += np.bincount(forward, c * y, k * k) + np.bincount(backward, c * (1 - y), k * k)
        pair = np.bincount(forward, c, k * k)
        games[r] += pair + pair.reshape(k, k).T.ravel()
    wins, games = wins.reshape(rounds, k, k), games.reshape(rounds, k, k)
    return (wins[0], games[0]) if single else (wins, games)


def fit_counts(wins, games, ridge=RIDGE):
    """Strengths (natural log units, mean-free up to the ridge) maximising the
    likelihood of the pair counts; batched over a leading axis."""
    wins, games = np.asarray(wins, dtype=float), np.asarray(games, dtype=float)
    single = wins.ndim == 2
    if single:
        wins, games = wins[None], games[None]
    rounds, k, _ = wins.shape
    theta = np.zeros((rounds, k))
    eye = np.eye(k)
    score = wins.sum(axis=2)
    for _ in range(MAX_ITERATIONS):
        p = _sigmoid(theta[:, :, None] - theta[:, None, :])
        gradient = score - (games * p).sum(axis=2) - ridge * theta
        s = games * p * (1 - p)
        # Negative Hessian: a graph Laplacian weighted by s, plus the ridge.
        hessian = eye * (s.sum(axis=2)[:, :, None] + ridge) - s
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        # Damped: far from the optimum (one-sided pairs) a full step can overshoot.
        largest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 4.0 / np.maximum(largest, 1e-300))
        theta += step
        if largest.max() < TOLERANCE:
            break
    return theta[0] if single else theta


def fit_votes(a, b, y, k, covariates=None, weights=None, ridge=RIDGE, start=None, tolerance=TOLERANCE):
    """(strengths (k,), covariate weights (c,)) in natural-log units, from
    individual votes with per-vote covariate differences (votes, c) and
    optional per-vote weights (bootstrap counts). `start`: (strengths,
    weights) to start from (a bootstrap resample starts at the full fit's,
    a few Newton steps away)."""
    a, b, y = np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp), np.asarray(y, dtype=float)
    x = np.zeros((len(a), 0)) if covariates is None else np.asarray(covariates, dtype=float)
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=float)
    c = x.shape[1]
    theta, beta = (np.zeros(k), np.zeros(c)) if start is None else (start[0].copy(), start[1].copy())
    # Where each vote's covariate terms land in the (k, c) cross block: two
    # bincounts per step instead of two per covariate.
    a_cells = (a[:, None] * c + np.arange(c)).ravel()
    b_cells = (b[:, None] * c + np.arange(c)).ravel()
    pairs = a * k + b
    for _ in range(MAX_ITERATIONS):
        p = _sigmoid(theta[a] - theta[b] + x @ beta)
        r, s = w * (y - p), w * p * (1 - p)
        g_theta = np.bincount(a, r, k) - np.bincount(b, r, k) - ridge * theta
        g_beta = x.T @ r - ridge * beta
        pair = np.bincount(pairs, s, k * k).reshape(k, k)
        pair = pair + pair.T
        h = np.zeros((k + c, k + c))
        h[:k, :k] = np.diag(pair.sum(axis=1) + ridge) - pair
        sx = s[:, None] * x
        flat = sx.ravel()
        cross = (np.bincount(a_cells, flat, k * c) - np.bincount(b_cells, flat, k * c)).reshape(k, c)
        h[:k, k:], h[k:, :k] = cross, cross.T
        h[k:, k:] = x.T @ sx + ridge * np.eye(c)
        step = np.linalg.solve(h, np.concatenate([g_theta, g_beta]))
        largest = np.abs(step).max() if len(step) else 0.0
        step *= min(1.0, 4.0 / max(largest, 1e-300))
        theta += step[:k]
        beta += step[k:]
        if largest < tolerance:
            break
    return theta, beta


def ranks(lower, upper):
    """1 + the number of versions whose lower bound is above this one's upper
    bound: versions that cannot be told apart share a rank."""
    lower, upper = np.asarray(lower), np.asarray(upper)
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)


def _to_ratings(theta, reference):
    theta = np.asarray(theta)
    return ANCHOR + SCALE * (theta - theta[..., reference : reference + 1])


def rate(a, b, y, k, reference=0, covariates=None, rounds=BOOTSTRAP_ROUNDS, seed=0):
    """The fit and its 95% percentile-bootstrap intervals from `rounds`
    resamples of the votes (with replacement, as many as there are)."""
    a, b, y = np.asarray(a, dtype=np.intp), np.asarray(b, dtype=float), np.asarray(y, dtype=float)
    b = b.astype(np.intp)
    n = len(a)
    rng = np.random.default_rng(seed)
    c = 0 if covariates is None else np.asarray(covariates).shape[1]
    if c == 0:
        wins, games = pair_counts(a, b, y, k)
        theta = fit_counts(wins, games)
        beta = np.zeros(0)
        samples, beta_samples = np.empty((0, k)), np.empty((0, 0))
        if n and rounds:
            # Resample the (pair, outcome) cells: the same as resampling votes.
            cells, inverse, cell_counts = _cells(a, b, y)
            drawn = rng.multinomial(n, cell_counts / n, size=rounds)
            wins_b, games_b = pair_counts(cells[0], cells[1], cells[2], k, counts=drawn)
            samples = fit_counts(wins_b, games_b)
    else:
        theta, beta = fit_votes(a, b, y, k, covariates)
        samples, beta_samples = np.empty((rounds, k)), np.empty((rounds, c))
        for r in range(rounds if n else 0):
            weights = np.bincount(rng.integers(0, n, n), minlength=n)
            # From the full fit, to 1e-4 natural-log units (a hundredth of a rating point).
            samples[r], beta_samples[r] = fit_votes(
                a, b, y, k, covariates, weights, start=(theta, beta), tolerance=1e-4
            )
        if not n:
            samples, beta_samples = np.empty((0, k)), np.empty((0, c))
    ratings = _to_ratings(theta, reference)
    if len(samples):
        sampled = _to_ratings(samples, reference)
        lower, upper = np.percentile(sampled, [2.5, 97.5], axis=0)
        wl, wu = np.percentile(SCALE * beta_samples, [2.5, 97.5], axis=0) if c else (np.zeros(0), np.zeros(0))
    else:
        lower = upper = ratings
        wl = wu = SCALE * beta
    return Fit(ratings, lower, upper, SCALE * beta, wl, wu, ranks(lower, upper), len(samples))


def _cells(a, b, y):
    """The distinct (a, b, y) of the votes, which vote is which, and how many of each."""
    key = np.stack([a, b, np.round(y * 2).astype(np.intp)])
    cells, inverse, counts = np.unique(key, axis=1, return_inverse=True, return_counts=True)
    return (cells[0], cells[1], cells[2] / 2.0), inverse, counts
