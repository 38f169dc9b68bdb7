"""What the scheduler has learned per (model, device kind): seconds per trial and peak memory.

Learned from finished trials (and raised by out-of-memory failures), stored in the results file so a
resumed run, or the next run of the same grid, starts informed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

KINDS = ("cpu", "gpu")


@dataclass
class Estimate:
    seconds: float = math.nan  # mean duration of finished trials
    n: int = 0
    peak_mem: float = math.nan  # bytes: the largest peak seen (RAM on CPU slots, VRAM on GPU slots)

    def learn(self, seconds: float | None, peak: float | None) -> None:
        if seconds is not None and seconds == seconds and seconds >= 0:
            self.seconds = seconds if self.n == 0 else (self.seconds * self.n + seconds) / (self.n + 1)
            self.n += 1
        if peak is not None and peak == peak and peak > 0:
            self.peak_mem = peak if self.peak_mem != self.peak_mem else max(self.peak_mem, peak)


class Estimates:
    def __init__(self) -> None:
        self.table: dict[tuple[str, str], Estimate] = {}
        self.configs: dict[tuple[str, str], float] = {}  # (config key, kind) -> seconds of its last fold
        self.provisional: dict[tuple[str, str], float] = {}  # (model, kind) -> peak seen early in a first trial

    def get(self, model: str, kind: str) -> Estimate:
        return self.table.setdefault((model, kind), Estimate())

    def learn(self, model: str, kind: str, seconds: float | None, peak: float | None) -> None:
        self.get(model, kind).learn(seconds, peak)

    def raise_peak(self, model: str, kind: str, at_least: float) -> None:
        """After an out-of-memory failure: the footprint is bigger than we thought."""
        e = self.get(model, kind)
        e.peak_mem = max(e.peak_mem, at_least) if e.peak_mem == e.peak_mem else at_least

    def learn_config(self, config_key: str, kind: str, seconds: float) -> None:
        """Folds of one config take about as long as each other: a sharper figure than the model's mean."""
        self.configs[(config_key, kind)] = seconds

    def config_seconds(self, model: str, config_key: str, kind: str) -> float | None:
        own = self.configs.get((config_key, kind))
        return own if own is not None else self.seconds(model, kind)

    def seconds(self, model: str, kind: str) -> float | None:
        """This kind's figure; else the other kind's (same work, unknown speed); else the mean of all."""
        own = self.table.get((model, kind))
        if own is not None and own.n:
            return own.seconds
        other = [e.seconds for (m, _k), e in self.table.items() if m == model and e.n]
        if other:
            return sum(other) / len(other)
        return None

    def fastest(self, model: str, kinds: set[str]) -> float | None:
        """The model's seconds on the fastest of these kinds of slot it has a figure for."""
        known = [s for k in kinds if (s := self.seconds(model, k)) is not None]
        return min(known) if known else None

    def peak(self, model: str, kind: str) -> float | None:
        """The measured peak; while a first trial runs, twice what it used in its first second."""
        e = self.table.get((model, kind))
        if e is not None and e.peak_mem == e.peak_mem:
            return e.peak_mem
        early = self.provisional.get((model, kind))
        return 2 * early if early is not None else None

    def rows(self) -> list[tuple[str, str, float, int, float]]:
        return [(m, k, e.seconds, e.n, e.peak_mem) for (m, k), e in self.table.items()]

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, float, int, float]]) -> Estimates:
        est = cls()
        for m, k, seconds, n, peak in rows:
            est.table[(m, k)] = Estimate(_nan(seconds), int(n), _nan(peak))
        return est


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


# Grid parameters whose cost is known in advance: a trial's steps grow with its epochs (x1) and, per epoch, its
# steps shrink with the batch size (x-1). On a small model each step costs about the same, so the seconds
# follow; where they do not, a few finished configs that differ in that parameter correct it.
STEPS_LIKE = {"epochs", "epoch", "n_epochs", "num_epochs", "max_epochs", "steps", "max_steps", "num_steps",
              "iterations", "max_iter", "n_iter", "n_estimators", "num_boost_round"}
BATCH_LIKE = {"batch_size", "batch", "bs", "train_batch_size", "per_device_train_batch_size"}
PRIOR_WEIGHT = 0.25  # a prior slope weighs as much as two finished configs 2x apart in that value
FIT_ROWS = 200  # configs of a model fitted at most
FIT_FEATURES = 24  # grid values (numbers, flags) fitted at most


class DurationModel:
    """Seconds a trial will take, from the ended trials of this run: its own config's folds on that kind of
    slot when one has ended, else a per-model fit of log(seconds) on the grid values (log of a positive number,
    one flag per other value) and the slot's kind, pulled toward the known cost of epochs and batch sizes.
    Configs of one model often differ in cost several times over (a batch size of 32 takes about 4x as long as
    128): a model's mean of the few configs seen first says little about the rest."""

    def __init__(self, ended: list[tuple[str, str, dict[str, object], str | None, float]]) -> None:
        """ended: (model, config key, grid values, slot kind, seconds) of each ended trial."""
        runs: dict[tuple[str, str | None], list[float]] = {}
        params: dict[str, tuple[str, dict[str, object]]] = {}
        for model, key, values, kind, seconds in ended:
            if seconds == seconds and seconds >= 0:
                runs.setdefault((key, kind), []).append(seconds)
                params[key] = (model, values)
        self.configs = {k: sum(v) / len(v) for k, v in runs.items()}  # (config key, kind) -> mean seconds
        per_model: dict[str, list[tuple[dict[str, object], float]]] = {}
        for (key, kind), seconds in self.configs.items():
            model, values = params[key]
            per_model.setdefault(model, []).append((_with_kind(values, kind), seconds))
        self.fits = {model: _LogFit(rows) for model, rows in per_model.items()}

    @classmethod
    def of(cls, ended: list[tuple[str, str, dict[str, object], str | None, float]]) -> DurationModel:
        """The same, kept while no trial ends (a config key stands for its grid values): progress is read a
        few times a second, trials end far less often."""
        last = _last_model.get("last")
        if last is None or last[0] != ended:
            _last_model["last"] = last = (ended, cls(ended))
        return last[1]

    def seconds(self, model: str, config_key: str, params: dict[str, object], kind: str | None = None
                ) -> float | None:
        """On a slot of `kind`; None: whichever kind (the mean of the kinds its config ran on)."""
        own = self.configs.get((config_key, kind))
        if own is None and kind is None:
            seen = [s for (key, _k), s in self.configs.items() if key == config_key]
            own = sum(seen) / len(seen) if seen else None
        elif own is None:
            own = self.configs.get((config_key, None))  # ran on a slot of unknown kind
        if own is not None:
            return own
        fit = self.fits.get(model)
        return fit.predict(_with_kind(params, kind)) if fit is not None else None


_last_model: dict[str, tuple[list[tuple[str, str, dict[str, object], str | None, float]], DurationModel]] = {}


def _with_kind(params: dict[str, object], kind: str | None) -> dict[str, object]:
    return params if kind is None else {**params, "\0slot": kind}  # a name no grid axis has


class _LogFit:
    """Ridge regression of log(seconds) on a model's grid values, each slope pulled toward its prior."""

    def __init__(self, rows: list[tuple[dict[str, object], float]]) -> None:
        rows = rows[:: max(1, -(-len(rows) // FIT_ROWS))]  # an even sample of a big grid's configs: the fit stays quick
        seen = Counter(f for values, _s in rows for f in _features(values))
        self.names = sorted(f for f, _n in seen.most_common(FIT_FEATURES))  # flags of the rarest values left out
        xs = [[_features(values).get(f, 0.0) for f in self.names] for values, _s in rows]
        ys = [math.log(max(s, 1e-3)) for _v, s in rows]
        n, k = len(rows), len(self.names)
        self.mean = [sum(x[j] for x in xs) / n for j in range(k)]
        y_mean = sum(ys) / n
        prior = [_prior(f) for f in self.names]
        # centred normal equations: (X'X + w I) b = X'y + w prior; the intercept is the mean
        a = [[sum((x[i] - self.mean[i]) * (x[j] - self.mean[j]) for x in xs) + (PRIOR_WEIGHT if i == j else 0.0)
              for j in range(k)] for i in range(k)]
        b = [sum((x[i] - self.mean[i]) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) + PRIOR_WEIGHT * prior[i]
             for i in range(k)]
        self.slopes = _solve(a, b)
        self.intercept = y_mean

    def predict(self, params: dict[str, object]) -> float:
        x = _features(params)
        terms = zip(self.names, self.slopes, self.mean, strict=True)
        return math.exp(self.intercept + sum(s * (x.get(f, 0.0) - m) for f, s, m in terms))


def _features(params: dict[str, object]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, v in params.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf:
            out[name] = math.log(v)
        else:
            out[f"{name}={v!r}"] = 1.0
    return out


def _prior(feature: str) -> float:
    if feature.lower() in STEPS_LIKE:
        return 1.0
    if feature.lower() in BATCH_LIKE:
        return -1.0
    return 0.0


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting; a is symmetric positive definite here (ridge)."""
    k = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(k):
        p = max(range(c, k), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, k):
            f = m[r][c] / m[c][c]
            for j in range(c, k + 1):
                m[r][j] -= f * m[c][j]
    x = [0.0] * k
    for c in reversed(range(k)):
        x[c] = (m[c][k] - sum(m[c][j] * x[j] for j in range(c + 1, k))) / m[c][c]
    return x
