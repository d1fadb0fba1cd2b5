"""The fit itself (app.core.ratings), on synthetic votes from known strengths."""

import numpy as np

from app.core import ratings


def simulate(rng, strengths, n):
    """Votes between random pairs, each won with the Bradley-Terry probability."""
    k = len(strengths)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    y = (rng.random(n) < p).astype(float)
    return a, b, y


def test_the_fit_recovers_the_order_and_the_intervals_hold_the_truth_in_90_percent_of_trials():
    rng = np.random.default_rng(7)
    strengths = np.array([0.0, 0.3, -0.4, 0.8, 1.2, -1.0])
    true_ratings = ratings.ANCHOR + ratings.SCALE * (strengths - strengths[0])
    inside = total = 0
    for trial in range(40):
        a, b, y = simulate(rng, strengths, 3000)
        fit = ratings.rate(a, b, y, len(strengths), reference=0, rounds=200, seed=trial)
        assert list(np.argsort(fit.ratings)) == list(np.argsort(strengths))
        others = np.arange(1, len(strengths))  # the reference's own interval is the anchor, [1000, 1000]
        inside += ((fit.lower[others] <= true_ratings[others]) & (true_ratings[others] <= fit.upper[others])).sum()
        total += len(others)
        assert fit.rounds == 200
        assert fit.ratings[0] == ratings.ANCHOR
    assert inside / total >= 0.9, f"coverage {inside / total:.2%}"


def test_a_tie_counts_as_half_a_win_each_way():
    # One win each way and two ties: even. Three wins and one loss for 0
    # equals two wins and two ties (2 + 2 * 0.5 = 3 of 4).
    even = ratings.rate([0, 1, 0, 0], [1, 0, 1, 1], [1.0, 1.0, 0.5, 0.5], 2, rounds=0)
    assert abs(even.ratings[1] - even.ratings[0]) < 1e-6
    wins = ratings.rate([0, 0, 0, 0], [1, 1, 1, 1], [1.0, 1.0, 1.0, 0.0], 2, rounds=0)
    ties = ratings.rate([0, 0, 0, 0], [1, 1, 1, 1], [1.0, 1.0, 0.5, 0.5], 2, rounds=0)
    np.testing.assert_allclose(wins.ratings, ties.ratings, atol=1e-6)
    assert wins.ratings[0] > wins.ratings[1]
    # Without the ridge the rating gap is exactly the log-odds of 3 to 1 on the 400 scale.
    assert abs((wins.ratings[0] - wins.ratings[1]) - 400 * np.log10(3)) < 5


def test_the_rating_scale_is_400_points_for_ten_to_one_odds():
    a = np.zeros(11000, dtype=int)
    b = np.ones(11000, dtype=int)
    y = np.r_[np.ones(10000), np.zeros(1000)]
    fit = ratings.rate(a, b, y, 2, reference=1, rounds=0)
    assert fit.ratings[1] == 1000
    assert abs(fit.ratings[0] - 1400) < 1


def test_versions_whose_intervals_overlap_share_a_rank():
    lower = np.array([1100, 1050, 900, 700])
    upper = np.array([1200, 1150, 1000, 800])
    # 0 and 1 overlap: both first. 2's upper bound (1000) is below the lower
    # bounds of 0 and 1: third. 3 is below all three: fourth.
    assert list(ratings.ranks(lower, upper)) == [1, 1, 3, 4]
    assert list(ratings.ranks([10, 10], [20, 20])) == [1, 1]


def test_a_version_that_won_every_vote_gets_a_finite_rating():
    fit = ratings.rate([0] * 5, [1] * 5, [1.0] * 5, 2, rounds=200)
    assert np.isfinite(fit.ratings).all() and np.isfinite(fit.upper).all()
    assert fit.ratings[0] > fit.ratings[1]


def test_style_control_finds_the_covariate_and_takes_it_out_of_the_ratings():
    rng = np.random.default_rng(3)
    k, n = 4, 6000
    strengths = np.array([0.0, 0.2, 0.4, 0.6])
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    # Version 0 makes bigger images (each image's size varies around its
    # version's); voters like bigger images (0.5 per doubling).
    log_pixels = np.array([2.0, 0.0, 0.0, 0.0])
    x = ((log_pixels[a] + rng.normal(0, 1, n)) - (log_pixels[b] + rng.normal(0, 1, n)))[:, None]
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b] + 0.5 * x[:, 0])))
    y = (rng.random(n) < p).astype(float)
    plain = ratings.rate(a, b, y, k, reference=1, rounds=0)
    styled = ratings.rate(a, b, y, k, reference=1, covariates=x, rounds=200)
    assert plain.ratings[0] == max(plain.ratings)  # size makes it look best
    assert styled.ratings[0] == min(styled.ratings)  # controlled: it is the weakest
    weight = 0.5 * ratings.SCALE
    assert styled.weights_lower[0] <= weight <= styled.weights_upper[0]
