"""The arena: blind votes between two versions' images of one comparison, and
the leaderboards fitted from them (app.core.ratings).

Pairs come from comparisons (standalone ones, a grid's cells, a benchmark
run's prompt x seed): two succeeded predictions of the same comparison on
different versions share the input and the seed by construction. Only what
the moderation rules let everyone see is offered: public comparisons (in the
arena of one benchmark run: its comparisons that are not private), nothing
hidden, no blocked image, NSFW images only to voters who opted in.

Leaderboards are fitted by tasks.arena, debounced after votes change, and
stored as Leaderboard rows that /leaderboard and /v1/leaderboard read; no
request ever fits one.
"""

import csv
import io
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from app.core import heatmap, jobs, ratings, throttle
from app.models import (
    ArenaVote,
    BenchmarkRun,
    Comparison,
    ContentPreference,
    Leaderboard,
    ModerationAction,
    Output,
    Prediction,
    Version,
)

MATCHUP_SALT = "lightbox.arena.matchup"
MATCHUP_MAX_AGE = 24 * 3600
CHOICES = {"left": "left", "right": "right", "tie": ArenaVote.Outcome.TIE, "bad": ArenaVote.Outcome.BOTH_BAD}
# A version with no votes yet: as uncertain as can be.
UNKNOWN_INTERVAL = (ratings.ANCHOR - 1000.0, ratings.ANCHOR + 1000.0)
HEATMAP_SIZE = 20
# Pairs of versions tried, best first, before the arena says nothing is left
# for this voter; and how long the arena's pairs of versions are cached.
PAIR_ATTEMPTS = 50
PAIRS_TTL = 120
# Style control's covariates: (key, label, unit of its weight).
COVARIATES = (
    ("resolution", "Output resolution", "rating points per doubling of the pixel count"),
    ("predict_time", "Predict time", "rating points per doubling of the predict time"),
    ("rewritten", "Prompt rewritten by the mapping", "rating points when the version's prompt was rewritten"),
)
# A voter's choices look constant when one button takes this share of them,
# random when they agree with the leaderboard on clear pairs (RANDOM_GAP
# points apart or more, where it expects about 64% agreement or more) no more
# often than RANDOM_AGREEMENT.
CONSTANT_SHARE = 0.9
RANDOM_GAP = 100.0
RANDOM_AGREEMENT = 0.55


class VoteRefused(Exception):
    """A vote not counted, with the reason the voter reads; `status` for /v1."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Matchup:
    comparison: Comparison
    left: Output
    right: Output
    token: str


# --- Which arena, which images --------------------------------------------------


def arena_run(arena_id, user):
    """The benchmark run whose arena `arena_id` names, if `user` may open it; None otherwise."""
    arena_id = str(arena_id or "")
    if not arena_id or len(arena_id) > 32 or "\x00" in arena_id:  # PostgreSQL refuses NUL (a 500)
        return None
    return BenchmarkRun.objects.accessible_to(user).filter(pk=arena_id).first()


def arena_comparisons(arena):
    comparisons = Comparison.objects.not_hidden()
    if arena:
        return comparisons.filter(benchmark_id=arena).exclude(visibility="private")
    return comparisons.filter(visibility="public")


def eligible_outputs(arena, shows_nsfw):
    """The first image of each succeeded, visible prediction of the arena's comparisons."""
    outputs = (
        Output.objects.filter(
            index=0,
            prediction__comparison__in=arena_comparisons(arena),
            prediction__status=Prediction.Status.SUCCEEDED,
            prediction__hidden_at__isnull=True,
        )
        .exclude(prediction__visibility="private")
        .exclude(rating=Output.Rating.BLOCKED)
    )
    if not shows_nsfw:
        outputs = outputs.filter(rating=Output.Rating.SAFE)
    return outputs


def shows_nsfw(user):
    return ContentPreference.objects.shows_nsfw(user)


def next_matchup(arena, voter_key, user, rng=random):
    """Two images of one comparison by two versions this voter has not voted
    on as a pair, or None when none are left. The pair of versions is the one
    whose intervals overlap most, with the fewest votes between them (the
    vote that should shrink the uncertainty most); the comparison and the
    sides are picked at random. A few small queries, whatever the arena's size."""
    nsfw = shows_nsfw(user)
    eligible = eligible_outputs(arena, nsfw)
    pairs = version_pairs(arena, nsfw)
    if not pairs:
        return None
    board = Leaderboard.objects.filter(arena=arena or "", category="", voter_key="").first()
    intervals, games = _intervals_and_games(board.data if board else {})
    voted = set(ArenaVote.objects.by(voter_key).values_list("output_a_id", "output_b_id")) if voter_key else set()
    ranked = sorted(pairs, key=lambda pair: (_priority(pair, intervals, games), rng.random()), reverse=True)
    for version_i, version_j in ranked[:PAIR_ATTEMPTS]:
        found = _unvoted(eligible, version_i, version_j, voted)
        if found:
            comparison_id, output_a, output_b = rng.choice(found)
            break
    else:
        return None
    left_is_a = rng.random() < 0.5
    outputs = {o.pk: o for o in Output.objects.select_related("prediction").filter(pk__in=(output_a, output_b))}
    left, right = (outputs[output_a], outputs[output_b]) if left_is_a else (outputs[output_b], outputs[output_a])
    token = signing.dumps(
        {"a": output_a, "b": output_b, "l": "a" if left_is_a else "b", "v": voter_key, "r": arena or ""},
        salt=MATCHUP_SALT,
    )
    return Matchup(Comparison.objects.get(pk=comparison_id), left, right, token)


def version_pairs(arena, nsfw):
    """The pairs of versions (i < j) that have images of one comparison in the
    arena, kept PAIRS_TTL seconds in the cache. Comparisons of a grid or a
    benchmark run share their set of versions, so each distinct set is
    expanded into pairs once."""
    key = f"arena:pairs:{arena or '-'}:{int(bool(nsfw))}"
    found = cache.get(key)
    if found is None:
        by_comparison = defaultdict(set)
        rows = (
            eligible_outputs(arena, nsfw).order_by().values_list("prediction__comparison_id", "prediction__version_id")
        )
        for comparison_id, version_id in rows.iterator(chunk_size=10_000):
            by_comparison[comparison_id].add(version_id)
        pairs = set()
        for versions in {frozenset(v) for v in by_comparison.values() if len(v) > 1}:
            ordered = sorted(versions)
            pairs.update((ordered[i], other) for i in range(len(ordered)) for other in ordered[i + 1 :])
        found = sorted(pairs)
        if found:  # an empty arena is asked again: the first comparison may come any moment
            cache.set(key, found, PAIRS_TTL)
    return found


def _unvoted(eligible, version_i, version_j, voted):
    """[(comparison, output a, output b)] of the two versions' images of one
    comparison, output a's id the lower, that the voter has not voted on."""
    shared = eligible.filter(prediction__version_id=version_j).values("prediction__comparison_id")
    of_i = dict(
        eligible.filter(prediction__version_id=version_i, prediction__comparison_id__in=shared).values_list(
            "prediction__comparison_id", "pk"
        )
    )
    found = []
    for comparison_id, output_j in eligible.filter(
        prediction__version_id=version_j, prediction__comparison_id__in=list(of_i)
    ).values_list("prediction__comparison_id", "pk"):
        pair = (min(of_i[comparison_id], output_j), max(of_i[comparison_id], output_j))
        if pair not in voted:
            found.append((comparison_id, *pair))
    return found


def _intervals_and_games(data):
    intervals = {row["id"]: (row["lower"], row["upper"]) for row in data.get("versions", [])}
    games = {}
    pairs = data.get("pairs") or {}
    ids = pairs.get("all_ids", [])
    for i, row in enumerate(pairs.get("all_battles", [])):
        for j, count in enumerate(row):
            games[(ids[i], ids[j])] = count
    return intervals, games


def _priority(pair, intervals, games):
    """How much a vote between the two versions should teach: the share of
    the narrower interval the two intervals overlap on (both padded a point,
    so the reference's zero-width interval counts), over 1 + their votes."""
    (low_i, high_i), (low_j, high_j) = (intervals.get(v, UNKNOWN_INTERVAL) for v in pair)
    low_i, low_j, high_i, high_j = low_i - 1, low_j - 1, high_i + 1, high_j + 1
    overlap = max(0.0, min(high_i, high_j) - max(low_i, low_j)) / min(high_i - low_i, high_j - low_j)
    return min(overlap, 1.0) / (1 + games.get(pair, 0) + games.get(pair[::-1], 0))


# --- Voting ---------------------------------------------------------------------


def anonymous_vote_allowed(address):
    """Count one vote without an account from `address` (throttle.client_ip)."""
    return throttle.arena_anonymous_votes().hit(address) is None


def record_vote(voter_key, user, token, choice):
    """Record the vote the matchup `token` was shown for; raises VoteRefused."""
    if choice not in CHOICES:
        raise VoteRefused("Choose left, right, tie or both bad.")
    try:
        offered = signing.loads(str(token), salt=MATCHUP_SALT, max_age=MATCHUP_MAX_AGE)
    except signing.BadSignature:
        raise VoteRefused("This pair of images is out of date; vote on the next one.") from None
    if offered.get("v") != voter_key:
        raise VoteRefused("This pair of images was shown to someone else.", status=403)
    if user is not None and user.is_authenticated and settings.ARENA_VOTES_PER_DAY is not None:
        if ArenaVote.objects.by(voter_key).since(timezone.now() - timedelta(days=1)).count() >= (
            settings.ARENA_VOTES_PER_DAY
        ):
            raise VoteRefused(
                f"You have cast {settings.ARENA_VOTES_PER_DAY} votes in the last 24 hours, the most a day; "
                "thank you, and come back tomorrow.",
                status=429,
            )
    outputs = {
        o.pk: o
        for o in eligible_outputs(offered["r"], shows_nsfw(user))
        .select_related("prediction")
        .filter(pk__in=(offered["a"], offered["b"]))
    }
    if len(outputs) != 2:
        raise VoteRefused("One of these images is no longer shown in the arena.", status=410)
    output_a, output_b = outputs[offered["a"]], outputs[offered["b"]]
    outcome = CHOICES[choice]
    if outcome == "left":
        outcome = offered["l"]
    elif outcome == "right":
        outcome = "b" if offered["l"] == "a" else "a"
    try:
        with transaction.atomic():
            vote = ArenaVote.objects.create(
                voter_key=voter_key,
                user=user if user is not None and user.is_authenticated else None,
                comparison_id=output_a.prediction.comparison_id,
                output_a=output_a,
                output_b=output_b,
                version_a_id=output_a.prediction.version_id,
                version_b_id=output_b.prediction.version_id,
                left=offered["l"],
                outcome=outcome,
            )
            votes_changed([vote.comparison.benchmark_id or ""], voter_key)
    except IntegrityError:
        raise VoteRefused("You have already voted on this pair of images.", status=409) from None
    return vote


# --- Recomputing, debounced ------------------------------------------------------


def votes_changed(arenas, voter_key=""):
    """Mark the leaderboards these votes count in as out of date and queue
    their refit, once per ARENA_RECOMPUTE_DELAY however many votes come."""
    scopes = {"", *arenas}
    now = timezone.now()
    Leaderboard.objects.filter(arena__in=scopes, voter_key="").update(changed_at=now)
    for arena in scopes:
        _schedule("tasks.arena.recompute", arena)
    if voter_key:
        Leaderboard.objects.filter(voter_key=voter_key).update(changed_at=now)
        _schedule("tasks.arena.recompute_personal", voter_key)


def _schedule(task_name, argument):
    delay = settings.ARENA_RECOMPUTE_DELAY
    if cache.add(f"arena:queued:{task_name}:{argument}", 1, max(1, delay)):
        transaction.on_commit(lambda: jobs.task(task_name).apply_async((argument,), countdown=delay), robust=True)


def ensure_scheduled(arena, voter_key=""):
    """Queue the fit of a leaderboard nobody has computed yet (first visit)."""
    if voter_key:
        _schedule("tasks.arena.recompute_personal", voter_key)
    else:
        _schedule("tasks.arena.recompute", arena)


def recompute(arena):
    """Fit the leaderboard of `arena` ("" all) and of each prompt category in it."""
    started = timezone.now()
    votes = list(_vote_rows(ArenaVote.objects.counted().in_arena(arena)))
    categories = sorted({row["category"] for row in votes if row["category"]})
    scopes = {"": votes, **{c: [row for row in votes if row["category"] == c] for c in categories}}
    costs = _costs(votes)
    for category, rows in scopes.items():
        # Style control for the whole arena only: each category's would cost a second fit of every vote.
        data = leaderboard_data(rows, costs, style=not category)
        data["categories"] = categories
        _store(arena, category, "", data, started)
    # Categories that no longer have votes.
    Leaderboard.objects.filter(arena=arena, voter_key="").exclude(category__in=list(scopes)).delete()


def recompute_personal(voter_key):
    started = timezone.now()
    votes = list(_vote_rows(ArenaVote.objects.visible_pairs().by(voter_key)))
    _store("", "", voter_key, leaderboard_data(votes, _costs(votes)), started)


def _store(arena, category, voter_key, data, started):
    row, _ = Leaderboard.objects.get_or_create(
        arena=arena, category=category, voter_key=voter_key, defaults={"changed_at": started}
    )
    # changed_at stays: votes that came while this fit ran make it stale again.
    Leaderboard.objects.filter(pk=row.pk).update(data=data, computed_at=started)


def _vote_rows(votes):
    fields = {
        "a": "version_a_id",
        "b": "version_b_id",
        "outcome": "outcome",
        "category": "comparison__benchmark_prompt__category",
        "comparison": "comparison_id",
        "width_a": "output_a__width",
        "height_a": "output_a__height",
        "width_b": "output_b__width",
        "height_b": "output_b__height",
        "time_a": "output_a__prediction__predict_time",
        "time_b": "output_b__prediction__predict_time",
        "prediction_a": "output_a__prediction_id",
        "prediction_b": "output_b__prediction_id",
    }
    names = list(fields)
    for values in votes.order_by().values_list(*fields.values()).iterator(chunk_size=5000):
        row = dict(zip(names, values))
        row["category"] = row["category"] or ""
        yield row


def _costs(votes):
    """{prediction id: (predict time, cost per image)} of the predictions voted on."""
    ids = {row["prediction_a"] for row in votes} | {row["prediction_b"] for row in votes}
    found = {}
    ids = list(ids)
    for start in range(0, len(ids), 5000):
        for pk, predict_time, cost, images in (
            Prediction.objects.filter(pk__in=ids[start : start + 5000])
            .annotate(images=Count("outputs"))
            .values_list("pk", "predict_time", "cost", "images")
        ):
            found[pk] = (predict_time, float(cost) / max(images, 1) if cost is not None else None)
    return found


def rewritten_versions(comparison_ids):
    """{comparison id: set of version ids whose prompt the mapping rewrote}."""
    found = {}
    ids = list(comparison_ids)
    for start in range(0, len(ids), 5000):
        for pk, changes in Comparison.objects.filter(pk__in=ids[start : start + 5000]).values_list("pk", "changes"):
            found[pk] = {
                version
                for version, entries in (changes or {}).items()
                if any("prompt" in str(entry.get("field", "")) for entry in entries or [] if isinstance(entry, dict))
            }
    return found


def leaderboard_data(votes, costs, rounds=None, seed=0, style=True):
    """The leaderboard of these vote rows (_vote_rows) as JSON-ready data."""
    rounds = rounds or settings.ARENA_BOOTSTRAP_ROUNDS
    ids = sorted({row["a"] for row in votes} | {row["b"] for row in votes})
    index = {version: i for i, version in enumerate(ids)}
    k = len(ids)
    tally = {v: {"votes": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for v in ids}
    for row in votes:
        for side, other in (("a", "b"), ("b", "a")):
            entry = tally[row[side]]
            entry["votes"] += 1
            if row["outcome"] == side:
                entry["wins"] += 1
            elif row["outcome"] == other:
                entry["losses"] += 1
            elif row["outcome"] == "tie":
                entry["ties"] += 1
            else:
                entry["both_bad"] += 1
    fitted = [row for row in votes if row["outcome"] != ArenaVote.Outcome.BOTH_BAD]
    a = np.array([index[row["a"]] for row in fitted], dtype=np.intp)
    b = np.array([index[row["b"]] for row in fitted], dtype=np.intp)
    y = np.array([{"a": 1.0, "b": 0.0, "tie": 0.5}[row["outcome"]] for row in fitted])
    reference = max(ids, key=lambda v: (tally[v]["votes"], v)) if ids else None
    data = {
        "reference": reference,
        "votes": len(votes),
        "fitted_votes": len(fitted),
        "both_bad": len(votes) - len(fitted),
        "bootstrap_rounds": 0,
        "versions": [],
        "style": None,
        "pairs": None,
    }
    if not k:
        return data
    fit = ratings.rate(a, b, y, k, reference=index[reference], rounds=rounds, seed=seed)
    data["bootstrap_rounds"] = fit.rounds
    times, prices = defaultdict(list), defaultdict(list)
    seen = set()
    for row in votes:
        for side in ("a", "b"):
            prediction = row[f"prediction_{side}"]
            if prediction in seen or prediction not in costs:
                continue
            seen.add(prediction)
            predict_time, cost = costs[prediction]
            if predict_time is not None:
                times[row[side]].append(predict_time)
            if cost is not None:
                prices[row[side]].append(cost)
    models = {
        v.pk: f"{v.model.owner}/{v.model.name}" for v in Version.objects.select_related("model").filter(pk__in=ids)
    }
    for version in ids:
        i, entry = index[version], tally[version]
        decided = entry["wins"] + entry["losses"] + entry["ties"]
        data["versions"].append(
            {
                "id": version,
                "model": models.get(version, version),
                "rating": round(float(fit.ratings[i]), 1),
                "lower": round(float(fit.lower[i]), 1),
                "upper": round(float(fit.upper[i]), 1),
                "rank": int(fit.ranks[i]),
                **entry,
                "win_rate": round((entry["wins"] + 0.5 * entry["ties"]) / decided, 4) if decided else None,
                "both_bad_rate": round(entry["both_bad"] / entry["votes"], 4) if entry["votes"] else None,
                "median_predict_time": round(statistics.median(times[version]), 3) if times[version] else None,
                "cost_per_image": round(statistics.mean(prices[version]), 6) if prices[version] else None,
            }
        )
    data["versions"].sort(key=lambda row: (-row["rating"], row["model"]))
    if style:
        data["style"] = _style(fitted, a, b, y, k, ids, index[reference], rounds, seed)
    data["pairs"] = _pairs(data["versions"], fitted, index)
    data["heatmaps"] = _heatmaps(data)
    return data


def _heatmaps(data):
    """The win-rate and battle-count heatmaps of the top HEATMAP_SIZE, drawn now (SVG text)."""
    pairs = data["pairs"]
    names = {row["id"]: row["model"] for row in data["versions"]}
    labels = [names[version] for version in pairs["ids"]]
    return [
        {
            "kind": kind,
            "title": title,
            "svg": heatmap.svg(labels, pairs[key], kind, title),
        }
        for kind, key, title in (
            ("win-rate", "win_rate", "Win rate of the row's model against the column's"),
            ("battles", "battles", "Votes between each pair"),
        )
    ]


def _style(fitted, a, b, y, k, ids, reference, rounds, seed):
    """The fit again with style covariates: differences (a - b) in log2
    pixel count, log2 predict time, and whether the prompt was rewritten."""
    if not len(fitted):
        return None
    rewritten = rewritten_versions({row["comparison"] for row in fitted})
    x = np.zeros((len(fitted), len(COVARIATES)))
    for n, row in enumerate(fitted):
        pixels_a = (row["width_a"] or 0) * (row["height_a"] or 0)
        pixels_b = (row["width_b"] or 0) * (row["height_b"] or 0)
        if pixels_a and pixels_b:
            x[n, 0] = np.log2(pixels_a) - np.log2(pixels_b)
        if row["time_a"] and row["time_b"] and row["time_a"] > 0 and row["time_b"] > 0:
            x[n, 1] = np.log2(row["time_a"]) - np.log2(row["time_b"])
        changed = rewritten.get(row["comparison"], set())
        x[n, 2] = float(row["a"] in changed) - float(row["b"] in changed)
    used = np.flatnonzero(np.abs(x).sum(axis=0) > 0)
    fit = ratings.rate(a, b, y, k, reference=reference, covariates=x[:, used], rounds=rounds, seed=seed)
    weights = []
    for position, column in enumerate(used):
        key, label, unit = COVARIATES[column]
        weights.append(
            {
                "name": key,
                "label": label,
                "unit": unit,
                "weight": round(float(fit.weights[position]), 1),
                "lower": round(float(fit.weights_lower[position]), 1),
                "upper": round(float(fit.weights_upper[position]), 1),
            }
        )
    versions = [
        {
            "id": version,
            "rating": round(float(fit.ratings[i]), 1),
            "lower": round(float(fit.lower[i]), 1),
            "upper": round(float(fit.upper[i]), 1),
            "rank": int(fit.ranks[i]),
        }
        for i, version in enumerate(ids)
    ]
    versions.sort(key=lambda row: -row["rating"])
    return {"weights": weights, "versions": versions, "covariates_used": len(used)}


def _pairs(versions, fitted, index):
    """Pairwise win rates and battle counts, in leaderboard order: `ids` for
    the heatmaps (the top HEATMAP_SIZE), `all_ids` for pair choice."""
    order = [row["id"] for row in versions]
    k = len(order)
    position = {version: n for n, version in enumerate(order)}
    wins = np.zeros((k, k))
    battles = np.zeros((k, k), dtype=int)
    for row in fitted:
        i, j = position[row["a"]], position[row["b"]]
        score = {"a": 1.0, "b": 0.0, "tie": 0.5}[row["outcome"]]
        wins[i, j] += score
        wins[j, i] += 1 - score
        battles[i, j] += 1
        battles[j, i] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(battles > 0, wins / np.maximum(battles, 1), np.nan)
    shown = min(k, HEATMAP_SIZE)
    return {
        "ids": order[:shown],
        "win_rate": [[None if np.isnan(v) else round(float(v), 3) for v in row[:shown]] for row in rate[:shown]],
        "battles": [[int(v) for v in row[:shown]] for row in battles[:shown]],
        "all_ids": order,
        "all_battles": battles.tolist(),
    }


# --- Reading ----------------------------------------------------------------------


def board(arena="", category="", voter_key=""):
    """The stored leaderboard of this scope, or None before its first fit."""
    return Leaderboard.objects.filter(arena=arena, category=category, voter_key=voter_key).first()


def votes_csv(votes):
    """The votes as CSV text, voters as pseudonyms (never a username)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["vote", "created_at", "voter", "comparison", "category", "version_a", "version_b", "left", "outcome"]
    )
    rows = votes.order_by("created_at", "id").values_list(
        "id",
        "created_at",
        "voter_key",
        "comparison_id",
        "comparison__benchmark_prompt__category",
        "version_a_id",
        "version_b_id",
        "left",
        "outcome",
    )
    for vote_id, created, voter, comparison, category, version_a, version_b, left, outcome in rows.iterator(
        chunk_size=5000
    ):
        writer.writerow(
            [
                vote_id,
                created.isoformat(),
                signing.Signer(salt="lightbox.arena.voter").sign(voter).rsplit(":", 1)[1][:12],
                comparison,
                _csv_safe(category or ""),
                version_a,
                version_b,
                left,
                outcome,
            ]
        )
    return out.getvalue()


def _csv_safe(text):
    # A cell starting with = + - @ runs as a formula in spreadsheets.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def exported_votes(arena, user, mine=False):
    """The votes a user may download: counted votes on the arena's
    comparisons, or all of their own."""
    if mine:
        return ArenaVote.objects.visible_pairs().by(voter_key_of(user))
    return ArenaVote.objects.counted().in_arena(arena).filter(comparison__in=arena_comparisons(arena))


def voter_key_of(user):
    return f"u{user.pk}"


# --- Honesty: voters who look random or constant; moderators' actions -------------------


def flagged_voters(limit=100):
    """Voters with at least ARENA_FLAG_MIN_VOTES counted votes whose choices
    look constant (one button CONSTANT_SHARE of the time) or random (they
    agree with the leaderboard on clear pairs no more than RANDOM_AGREEMENT
    of the time), most votes first; each with `reason`."""
    decisive = Q(outcome__in=["a", "b"])
    voters = list(
        ArenaVote.objects.filter(excluded=False)
        .values("voter_key")
        .annotate(
            n=Count("id"),
            lefts=Count("id", filter=Q(outcome=F("left"))),
            rights=Count("id", filter=decisive & ~Q(outcome=F("left"))),
            ties=Count("id", filter=Q(outcome="tie")),
            bads=Count("id", filter=Q(outcome="bad")),
        )
        .filter(n__gte=settings.ARENA_FLAG_MIN_VOTES)
        .order_by("-n")[: limit * 5]
    )
    stored = board()
    strengths = {row["id"]: row["rating"] for row in (stored.data.get("versions", []) if stored else [])}
    flagged = []
    for voter in voters:
        counts = {"left": voter["lefts"], "right": voter["rights"], "tie": voter["ties"], "both bad": voter["bads"]}
        button, most = max(counts.items(), key=lambda item: item[1])
        if most >= CONSTANT_SHARE * voter["n"]:
            voter["reason"] = f"Constant: “{button}” in {most} of {voter['n']} votes."
        else:
            agreement = _agreement(voter["voter_key"], strengths)
            if agreement is None:
                continue
            agreed, clear = agreement
            if agreed > RANDOM_AGREEMENT * clear:
                continue
            voter["reason"] = (
                f"Random: agrees with the leaderboard on {agreed} of {clear} clear pairs "
                f"(at least {RANDOM_GAP:.0f} points apart)."
            )
        voter["name"] = describe_voter(voter["voter_key"])
        flagged.append(voter)
        if len(flagged) >= limit:
            break
    return flagged


def _agreement(voter_key, strengths):
    """(agreeing votes, clear votes) of a voter's decisive votes on pairs at
    least RANDOM_GAP apart; None with fewer than half ARENA_FLAG_MIN_VOTES."""
    agreed = clear = 0
    for a, b, outcome in ArenaVote.objects.filter(
        voter_key=voter_key, excluded=False, outcome__in=["a", "b"]
    ).values_list("version_a_id", "version_b_id", "outcome"):
        if a not in strengths or b not in strengths or abs(strengths[a] - strengths[b]) < RANDOM_GAP:
            continue
        clear += 1
        agreed += (strengths[a] > strengths[b]) == (outcome == "a")
    if clear < settings.ARENA_FLAG_MIN_VOTES / 2:
        return None
    return agreed, clear


def describe_voter(voter_key):
    if voter_key.startswith("u"):
        from_user = ArenaVote.objects.filter(voter_key=voter_key).select_related("user").first()
        if from_user is not None and from_user.user is not None:
            return from_user.user.get_username()
    return f"visitor {voter_key[1:9]}"


def excluded_voters():
    voters = list(
        ArenaVote.objects.filter(excluded=True).values("voter_key").annotate(n=Count("id")).order_by("-n")[:100]
    )
    for voter in voters:
        voter["name"] = describe_voter(voter["voter_key"])
    return voters


def leaderboard_json(stored, arena, category, voter_key):
    """What /v1/leaderboard answers: the stored fit, without pair choice's internals."""
    data = dict(stored.data) if stored is not None and stored.computed_at else {}
    pairs = data.pop("pairs", None) or {}
    data.pop("heatmaps", None)
    return {
        "arena": arena or None,
        "category": category or None,
        "personal": bool(voter_key),
        "computed_at": stored.computed_at.isoformat() if stored is not None and stored.computed_at else None,
        "stale": stored.is_stale if stored is not None else True,
        "scale": 400,
        "anchor": ratings.ANCHOR,
        "reference": data.get("reference"),
        "votes": data.get("votes", 0),
        "both_bad": data.get("both_bad", 0),
        "bootstrap_rounds": data.get("bootstrap_rounds", 0),
        "categories": data.get("categories", []),
        "versions": data.get("versions", []),
        "style": data.get("style"),
        "pairs": {key: pairs[key] for key in ("ids", "win_rate", "battles") if key in pairs},
    }


def set_excluded(voter_key, excluded, moderator, reason):
    """Leave a voter's votes out of every leaderboard (or count them again),
    with an audit entry; the leaderboards they count in are refitted."""
    votes = ArenaVote.objects.filter(voter_key=voter_key)
    with transaction.atomic():
        arenas = set(votes.values_list("comparison__benchmark_id", flat=True).distinct())
        changed = votes.exclude(excluded=excluded).update(excluded=excluded)
        kind = ModerationAction.Kind.ARENA_EXCLUDE if excluded else ModerationAction.Kind.ARENA_INCLUDE
        _audit(kind, voter_key, moderator, f"{reason} ({changed} votes)")
        votes_changed([arena or "" for arena in arenas], voter_key)
    return changed


def remove_votes(votes, moderator, reason):
    """Delete votes (a queryset), one audit entry per voter; refit."""
    with transaction.atomic():
        rows = list(votes.values_list("pk", "voter_key", "comparison__benchmark_id"))
        by_voter = defaultdict(int)
        for _, voter_key, _ in rows:
            by_voter[voter_key] += 1
        ArenaVote.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
        for voter_key, count in by_voter.items():
            _audit(ModerationAction.Kind.ARENA_REMOVE, voter_key, moderator, f"{reason} ({count} votes)")
        votes_changed({arena or "" for _, _, arena in rows})
        for voter_key in by_voter:
            votes_changed([], voter_key)
    return len(rows)


def _audit(kind, voter_key, moderator, reason):
    user = ArenaVote.objects.filter(voter_key=voter_key, user__isnull=False).values_list("user", flat=True).first()
    ModerationAction.objects.create(
        kind=kind,
        moderator=moderator,
        reason=reason[:2000],
        user_id=user,
        target=f"arena votes of {describe_voter(voter_key)}"[:200],
    )
