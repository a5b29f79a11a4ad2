"""Two-dimensional test surfaces and optimizer trajectories on them.

    from optreport.analysis.surfaces import SURFACES, trajectory, best_lr, plot_trajectories
    s = SURFACES["rosenbrock"]
    traj = trajectory("adam", {"lr": 0.1}, s, s.start, steps=200)   # (201, 2) array

Each surface is a torch function of a 2-element tensor ``p = (x, y)``; it also works
element-wise on a stacked grid ``torch.stack([X, Y])``, which is how contour plots are drawn.
Trajectories use the project's real optimizer classes (``optimizers.OPTIMIZERS``) on one
2-element parameter with autograd gradients. Nothing is done to the gradients: no clipping,
no rescaling. A run that produces a non-finite value or leaves the box ``|x|, |y| <= bound``
(``DIVERGENCE_BOUND`` unless given) is stopped and recorded as diverged: the remaining rows of
its trajectory are NaN, and :func:`diverged` / :func:`divergence_step` tell so.

The surfaces
------------
* ``seed003``: the blog post's polynomial (seed 003),
  ``f = 0.4x²y² + 0.3x²y + 0.3x² + 0.3y² − 0.25xy² + 0.31xy − 0.2x + 2.1y``, start (0.5, 5.8).
  Bounded below: for fixed y, f is a parabola in x with leading coefficient
  ``a(y) = 0.4y² + 0.3y + 0.3 > 0`` (discriminant 0.09 − 0.48 < 0), so ``min_x f`` exists and
  equals ``0.3y² + 2.1y − b(y)²/(4a(y))`` with ``b(y) = −0.25y² + 0.31y − 0.2``; for large |y|
  that grows like ``(0.3 − 0.0625/1.6) y² ≈ 0.26 y²``. The global minimum is found numerically
  by :func:`seed003_minimum` (about (0.482, −4.256), f ≈ −4.962) — not at the small circle the
  blog's (also broken) contour plot suggested.
* ``rosenbrock``: ``(1 − x)² + 100 (y − x²)²``, start (−1.5, 2), minimum (1, 1), f = 0.
* ``beale``: ``(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²``, start (1, 1.5),
  minimum (3, 0.5), f = 0.
* ``saddle``: ``x² + y⁴/4 − y²/2``, start (1, 1e-3). A strict saddle at the origin (Hessian
  diag(2, −1)) between two minima (0, ±1) with f = −0.25. We chose it over the plain
  ``x² − y²`` because that one is unbounded below (every escaping run "diverges" and final f
  means nothing), and over the monkey saddle ``x³ − 3xy²`` for the same reason. Starting
  1e-3 off the ridge, a rule must first descend in x and then escape along y, where the
  gradient starts tiny: rules that rescale small gradients (Adam, RMSProp, ...) escape fast,
  plain SGD lingers.

Seed 003's buggy Adam
---------------------
:func:`seed003_adam` re-implements (fresh, in numpy) the blog's Adam with its three bugs, each a
switch: the step counter reset on every call (bias correction stuck at t = 1), epsilon
subtracted from ``sqrt(v̂)`` instead of added, and a hand-written gradient that does not match f.
With the three switches off it is plain Adam (Kingma & Ba, as in ``torch.optim.Adam``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib import patheffects
from scipy.optimize import fsolve, minimize

from optimizers import OPTIMIZERS

__all__ = ["Surface", "SURFACES", "DIVERGENCE_BOUND", "trajectory", "diverged",
           "divergence_step", "final_value", "best_lr", "seed003_f", "seed003_grad",
           "seed003_wrong_grad", "seed003_minimum", "seed003_wrong_grad_zero", "seed003_adam",
           "plot_limits", "plot_trajectories", "numerical_minimum", "sweep_trajectories",
           "best_of", "lr_edge_check", "first_step_length", "contour_levels"]

# A trajectory leaving |x|, |y| <= DIVERGENCE_BOUND is stopped and counted as diverged.
DIVERGENCE_BOUND = 1e3


@dataclasses.dataclass(frozen=True)
class Surface:
    """A 2-D test function: ``f(p)`` for a tensor whose first axis has length 2."""
    name: str                       # key in SURFACES
    title: str                      # for plots
    f: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]      # where every trajectory starts
    minimum: tuple[float, float]    # the (global) minimiser, known or numerically found
    f_min: float                    # f at the minimiser
    formula: str                    # LaTeX

    def __call__(self, p):
        return self.f(p)

    def value(self, xy) -> float:
        """f at one point, as a Python float (NaN for NaN input)."""
        return float(self.f(torch.as_tensor(np.asarray(xy, dtype=float))))

    def grad(self, xy) -> np.ndarray:
        """Autograd gradient at one point (float64)."""
        p = torch.tensor(np.asarray(xy, dtype=float), requires_grad=True)
        self.f(p).backward()
        return p.grad.numpy().copy()

    def grid(self, xlim, ylim, n: int = 300):
        """``X, Y, Z`` arrays for contour plots."""
        xs = np.linspace(*xlim, n)
        ys = np.linspace(*ylim, n)
        X, Y = np.meshgrid(xs, ys)
        with torch.no_grad():
            Z = self.f(torch.stack([torch.from_numpy(X), torch.from_numpy(Y)])).numpy()
        return X, Y, Z


# --------------------------------------------------------------------------- the functions
def seed003_f(p):
    """Seed 003's polynomial."""
    x, y = p[0], p[1]
    return (0.4 * x**2 * y**2 + 0.3 * x**2 * y + 0.3 * x**2 + 0.3 * y**2
            - 0.25 * x * y**2 + 0.31 * x * y - 0.2 * x + 2.1 * y)


def seed003_grad(x, y):
    """The true gradient of :func:`seed003_f`, written by hand (checked against autograd)."""
    dx = 0.8 * x * y**2 + 0.6 * x * y + 0.6 * x - 0.25 * y**2 + 0.31 * y - 0.2
    dy = 0.8 * x**2 * y + 0.3 * x**2 + 0.6 * y - 0.5 * x * y + 0.31 * x + 2.1
    return dx, dy


def seed003_wrong_grad(x, y):
    """The blog's hand-written "gradient": two slips in dx (``0.6y`` for ``0.6xy`` and
    ``−0.5y`` for ``−0.25y²``) and one in dy (``0.6x²`` for ``0.3x²``)."""
    dx = 0.8 * x * y**2 + 0.6 * y + 0.6 * x - 0.5 * y + 0.31 * y - 0.2
    dy = 0.8 * x**2 * y + 0.6 * x**2 + 0.6 * y - 0.5 * x * y + 0.31 * x + 2.1
    return dx, dy


def rosenbrock(p):
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(p):
    x, y = p[0], p[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def saddle(p):
    x, y = p[0], p[1]
    return x**2 + y**4 / 4 - y**2 / 2


def numerical_minimum(f, starts, *, box: float = 50.0) -> tuple[np.ndarray, float]:
    """Lowest point found by BFGS (scipy, autograd gradients) from each start; points outside
    ``|x|, |y| <= box`` are discarded."""

    def fun(xy):
        p = torch.tensor(xy, dtype=torch.float64, requires_grad=True)
        v = f(p)
        v.backward()
        return float(v.detach()), p.grad.numpy().copy()

    best = (None, math.inf)
    for s in starts:
        r = minimize(fun, np.asarray(s, float), jac=True, method="BFGS",
                     options={"gtol": 1e-12, "maxiter": 10_000})
        if np.all(np.abs(r.x) <= box) and r.fun < best[1]:
            best = (r.x, float(r.fun))
    return best


def seed003_minimum(*, box: float = 20.0, n: int = 801) -> tuple[np.ndarray, float]:
    """Global minimum of seed 003's f over ``[-box, box]²``: grid search, then BFGS from the
    best few grid points. (f is bounded below, see the module docstring.)"""
    xs = np.linspace(-box, box, n)
    X, Y = np.meshgrid(xs, xs)
    Z = seed003_f((X, Y))
    idx = np.argsort(Z, axis=None)[:5]
    starts = [(X.flat[i], Y.flat[i]) for i in idx]
    return numerical_minimum(seed003_f, starts, box=box)


def seed003_wrong_grad_zero() -> np.ndarray:
    """The point where the blog's wrong gradient field vanishes (where its Adam heads)."""
    sol = fsolve(lambda p: seed003_wrong_grad(*p), x0=[0.0, -3.0], xtol=1e-13)
    return np.asarray(sol)


_S003_MIN, _S003_FMIN = (0.48238424, -4.25596828), -4.962203155151475   # seed003_minimum()

SURFACES: dict[str, Surface] = {
    "seed003": Surface("seed003", "Seed 003's polynomial", seed003_f, (0.5, 5.8), _S003_MIN,
                       _S003_FMIN,
                       r"0.4x^2y^2 + 0.3x^2y + 0.3x^2 + 0.3y^2 - 0.25xy^2 + 0.31xy - 0.2x + 2.1y"),
    "rosenbrock": Surface("rosenbrock", "Rosenbrock", rosenbrock, (-1.5, 2.0), (1.0, 1.0), 0.0,
                          r"(1-x)^2 + 100\,(y-x^2)^2"),
    "beale": Surface("beale", "Beale", beale, (1.0, 1.5), (3.0, 0.5), 0.0,
                     r"(1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2"),
    "saddle": Surface("saddle", "Saddle between two wells", saddle, (1.0, 1e-3), (0.0, 1.0), -0.25,
                      r"x^2 + y^4/4 - y^2/2"),
}


# --------------------------------------------------------------------------- trajectories
def _surface(surface) -> Surface:
    return SURFACES[surface] if isinstance(surface, str) else surface


def trajectory(rule: str, hparams: dict | None, surface, start=None, steps: int = 100, *,
               bound: float = DIVERGENCE_BOUND, optimizers=None) -> np.ndarray:
    """Positions ``(steps + 1, 2)`` of ``rule`` (a name in ``optimizers.OPTIMIZERS``, or an
    optimizer class) started at ``start`` (default: the surface's start).

    Each step: ``zero_grad``, ``f(p).backward()``, ``opt.step()`` — exactly as in training, on
    one float64 parameter of shape (2,). No clipping. If the new position is non-finite or
    outside ``|x|, |y| <= bound`` the run stops; the rows after the last position inside the
    bound are NaN (see :func:`diverged`).
    """
    s = _surface(surface)
    if optimizers is None:
        optimizers = OPTIMIZERS
    cls = optimizers[rule] if isinstance(rule, str) else rule
    start = s.start if start is None else start
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = cls([p], **(hparams or {}))
    out = np.full((steps + 1, 2), np.nan)
    out[0] = start
    for i in range(1, steps + 1):
        opt.zero_grad()
        loss = s.f(p)
        loss.backward()
        opt.step()
        xy = p.detach().numpy()
        if not np.all(np.isfinite(xy)) or np.any(np.abs(xy) > bound):
            break
        out[i] = xy
    return out


def divergence_step(traj: np.ndarray) -> int | None:
    """First step whose position is missing (the run diverged there), or None."""
    bad = np.flatnonzero(~np.all(np.isfinite(traj), axis=1))
    return int(bad[0]) if bad.size else None


def diverged(traj: np.ndarray) -> bool:
    """True when the trajectory was stopped (non-finite or out of bounds)."""
    return divergence_step(traj) is not None


def final_value(surface, traj: np.ndarray) -> float:
    """f at the last position, or ``inf`` for a diverged trajectory."""
    if diverged(traj):
        return math.inf
    return _surface(surface).value(traj[-1])


def best_lr(rule: str, surface, lrs, steps: int = 200, *, hparams: dict | None = None,
            start=None) -> tuple[float, np.ndarray]:
    """The lr in ``lrs`` whose run ends lowest (final f; diverged runs count as +inf; ties go to
    the smaller lr). Returns ``(lr, trajectory)``. ``hparams`` are the other hyper-parameters."""
    best = None
    for lr in sorted(lrs):
        traj = trajectory(rule, {**(hparams or {}), "lr": lr}, surface, start, steps)
        v = final_value(surface, traj)
        if best is None or v < best[0]:
            best = (v, lr, traj)
    return best[1], best[2]


def sweep_trajectories(rules, lrs, surface, steps: int = 200, *, start=None):
    """Every rule at every lr: ``(trajs, table)`` with ``trajs[(rule, lr)]`` the trajectory
    and ``table`` one row per run: surface, rule, lr, final_f, gap (final f − f_min; inf when
    diverged), diverged, diverged_step, dist_to_min (distance of the last point to the
    minimiser)."""
    s = _surface(surface)
    trajs, rows = {}, []
    for rule in rules:
        for lr in lrs:
            t = trajectory(rule, {"lr": lr}, s, start, steps)
            trajs[(rule, lr)] = t
            v = final_value(s, t)
            k = divergence_step(t)
            rows.append({"surface": s.name, "rule": rule, "lr": lr, "steps": steps,
                         "final_f": v, "gap": v - s.f_min, "diverged": k is not None,
                         "diverged_step": k,
                         "dist_to_min": float(np.hypot(*(t[-1] - np.asarray(s.minimum))))
                         if k is None else math.inf})
    return trajs, pd.DataFrame(rows)


def best_of(table):
    """Per rule, the row of ``sweep_trajectories``' table with the lowest final f — the same
    criterion as :func:`best_lr` (diverged = +inf; ties go to the smaller lr)."""
    t = table.sort_values(["rule", "final_f", "lr"], kind="stable")
    return t.groupby("rule", sort=False).head(1).reset_index(drop=True)


def lr_edge_check(table, grid, *, flat_rtol: float = 1e-6) -> pd.DataFrame:
    """Does each rule's best lr (:func:`best_of` over the lrs of ``grid``) sit on an edge of the
    grid, and if so, is f flat there (the rule is insensitive to lr) or still improving?

    ``table``: rows of :func:`sweep_trajectories` (one or several surfaces; lrs outside ``grid``
    are ignored). Returns one row per surface and rule: ``best_lr``, ``best_f``, ``edge``
    ("low", "high" or ""), ``plateau_lo`` / ``plateau_hi`` (the run of neighbouring grid lrs
    around the best whose final f is within ``flat_rtol · max(1, |best f|)`` of the best), and
    ``status``:

    * "interior": the best lr has a grid lr on either side;
    * "edge, flat": on an edge, and f stays within the tolerance over at least a decade of lr
      inward from the edge: widening the grid would not find a better lr, only the same f;
    * "edge, still improving": on an edge and not flat: the grid should be widened;
    * "all diverged": every lr diverged.
    """
    grid = sorted(float(x) for x in grid)
    t = table[table.lr.isin(grid)]
    rows = []
    for (surface, rule), g in t.groupby(["surface", "rule"], sort=False):
        b = best_of(g).iloc[0]
        f = g.drop_duplicates("lr").set_index("lr").final_f.reindex(grid).to_numpy(dtype=float)
        i = grid.index(float(b.lr))
        edge = "low" if i == 0 else "high" if i == len(grid) - 1 else ""
        best_f = float(b.final_f)
        if not np.isfinite(best_f):
            rows.append({"surface": surface, "rule": rule, "best_lr": b.lr, "best_f": best_f, "edge": edge,
                         "plateau_lo": math.nan, "plateau_hi": math.nan, "status": "all diverged"})
            continue
        tol = flat_rtol * max(1.0, abs(best_f))
        near = np.isfinite(f) & (np.abs(f - best_f) <= tol)
        lo = hi = i
        while lo > 0 and near[lo - 1]:
            lo -= 1
        while hi < len(grid) - 1 and near[hi + 1]:
            hi += 1
        if not edge:
            status = "interior"
        else:
            inner = grid[lo] if edge == "high" else grid[hi]
            decade = grid[hi] / inner if edge == "high" else inner / grid[lo]
            status = "edge, flat" if decade >= 10 * (1 - 1e-9) else "edge, still improving"
        rows.append({"surface": surface, "rule": rule, "best_lr": b.lr, "best_f": best_f, "edge": edge,
                     "plateau_lo": grid[lo], "plateau_hi": grid[hi], "status": status})
    return pd.DataFrame(rows)


def first_step_length(rule: str, surface, lr: float, *, start=None) -> float:
    """Length of a rule's first step from the surface's start (torch defaults except ``lr``)."""
    t = trajectory(rule, {"lr": lr}, surface, start, steps=1)
    return float(np.hypot(*(t[1] - t[0]))) if not diverged(t) else math.inf


# --------------------------------------------------------------------------- seed 003's Adam
def seed003_adam(steps: int = 92, lr: float = 5e-2, *, reset_step_counter: bool = True,
                 eps_sign: int = -1, wrong_gradient: bool = True, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, start=(0.5, 5.8)) -> np.ndarray:
    """Seed 003's Adam on its polynomial, positions ``(steps + 1, 2)``; each bug is a switch.

    * ``reset_step_counter``: the blog sets ``t = 0`` inside the step function and increments
      it once, so the bias corrections are always ``1 − β1`` and ``1 − β2`` (t = 1): the
      moments are scaled up by 10 and 1000 on every step, not only on the first.
    * ``eps_sign = -1``: ``sqrt(v̂) − eps`` instead of ``sqrt(v̂) + eps`` (``+1`` is correct).
    * ``wrong_gradient``: use :func:`seed003_wrong_grad` instead of :func:`seed003_grad`.

    Note: the blog calls its step function once before its loop of 92, i.e. 93 steps in all.
    """
    x, y = float(start[0]), float(start[1])
    g_fn = seed003_wrong_grad if wrong_gradient else seed003_grad
    m = np.zeros(2)
    v = np.zeros(2)
    out = np.empty((steps + 1, 2))
    out[0] = x, y
    for n in range(1, steps + 1):
        g = np.array(g_fn(x, y))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        t = 1 if reset_step_counter else n
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        step = lr * m_hat / (np.sqrt(v_hat) + eps_sign * eps)
        x, y = x - step[0], y - step[1]
        out[n] = x, y
    return out


# --------------------------------------------------------------------------- plotting
def plot_limits(surface, trajs=(), *, pad: float = 0.12, bound: float | None = None,
                include_diverged: bool = False, quantile: float = 0.0):
    """``(xlim, ylim)`` covering the start, the minimum and every finite point of the
    trajectories that did not diverge (``include_diverged=True``: of all); points beyond
    ``bound`` are ignored, so one runaway does not squash the plot. A diverged run is drawn
    until it leaves the window and marked as diverged. ``quantile = q > 0`` fits the window to the
    q and 1 − q quantiles of the points (plus the start and the minimum), so a few far excursions
    leave the window instead of shrinking every path."""
    s = _surface(surface)
    pts = [np.asarray([s.start]), np.asarray([s.minimum])]
    for t in trajs:
        t = np.asarray(t, dtype=float)
        if diverged(t) and not include_diverged:
            continue
        t = t[np.all(np.isfinite(t), axis=1)]
        if bound is not None:
            t = t[np.all(np.abs(t) <= bound, axis=1)]
        pts.append(t)
    fixed, pts = np.concatenate(pts[:2]), np.concatenate(pts[2:] or [np.empty((0, 2))])
    if quantile > 0 and len(pts):
        pts = np.concatenate([fixed, np.quantile(pts, [quantile, 1 - quantile], axis=0)])
    else:
        pts = np.concatenate([fixed, pts])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, 1e-2)
    lo, hi = lo - pad * span, hi + pad * span
    return (lo[0], hi[0]), (lo[1], hi[1])


def contour_levels(surface, X, Y, Z, levels: int = 25, log_levels: bool | None = None) -> np.ndarray:
    """Contour levels for ``Z`` (from :meth:`Surface.grid`): log-spaced above the minimum when f
    spans more than two decades in the window (``log_levels=None`` decides), else linear."""
    s = _surface(surface)
    zmin = min(float(np.nanmin(Z)), s.f_min)
    shifted = Z - zmin
    span = float(np.nanmax(shifted))
    positive = shifted[shifted > 0]
    small = float(np.quantile(positive, 0.002)) if positive.size else 1.0
    if log_levels is None:
        log_levels = span / max(small, 1e-12) > 100
    if log_levels:
        lv = zmin + np.geomspace(max(small, span * 1e-6), span, levels)
    else:
        lv = np.linspace(zmin, zmin + span, levels + 1)[1:]
    return np.unique(lv)


def _level_text(v: float) -> str:
    """A contour label: f with two significant digits, positional between 1e-3 and 1e5 ("970",
    "0.012", "-4.9"), scientific outside ("2e+06"); never "-0"."""
    r = float(f"{v:.2g}")
    if r == 0:
        return "0"
    if 1e-3 <= abs(r) < 1e5:
        return np.format_float_positional(r, trim="-")
    return f"{r:.2g}"


def plot_trajectories(ax, surface, trajs: dict, *, colors: dict | None = None, xlim=None,
                      ylim=None, levels: int = 25, log_levels: bool | None = None,
                      bound: float | None = 50.0, title: str | None = None, legend: bool = True,
                      marker_every: int | None = None, styles: dict | None = None,
                      label_contours: int = 0, background: dict | None = None,
                      background_style: dict | None = None, marker_size: float = 1.0,
                      window=None, window_quantile: float = 0.0):
    """Contours of ``surface`` and one line per trajectory (``label -> (n, 2) array``).

    Contour levels are log-spaced above the minimum when f spans more than two decades in the
    window (``log_levels=None`` decides). The start is a black circle, the minimum a star, the
    end of each run a dot in its colour, and a diverged run ends in an ``x`` with "(diverged)"
    added to its label (with ``legend=False`` the diverged labels are listed in the panel's
    corner instead). Limits come from the surface and the trajectories (``plot_limits``),
    ignoring points beyond ``bound``. ``styles`` maps a label to extra ``ax.plot`` keywords
    (e.g. ``{"correct": {"ls": "--", "lw": 2.5}}``). ``label_contours=n`` writes f on every
    n-th contour line (0: none). ``background`` (label -> trajectory) is drawn first, faint and
    grey (``background_style`` overrides), without end markers or legend entries: context for
    the highlighted ``trajs`` (which then get a thin white halo). ``marker_size`` scales the
    start, minimum and end markers.
    ``window``: trajectories the limits are fitted to instead of ``trajs`` (e.g. every run of a
    small-multiples figure, so its panels share one window); ``window_quantile``: see
    :func:`plot_limits`.
    """
    s = _surface(surface)
    if xlim is None or ylim is None:
        xl, yl = plot_limits(s, trajs.values() if window is None else window, bound=bound,
                             quantile=window_quantile)
        xlim, ylim = xlim or xl, ylim or yl
    X, Y, Z = s.grid(xlim, ylim)
    lv = contour_levels(s, X, Y, Z, levels, log_levels)
    cs = ax.contour(X, Y, Z, levels=lv, colors="0.6", linewidths=0.6, linestyles="solid")
    if label_contours:
        ax.clabel(cs, levels=cs.levels[::label_contours], fmt=_level_text, fontsize=6, inline=True,
                  inline_spacing=2)
    bg = {"color": "0.78", "lw": 0.8, "alpha": 0.6, **(background_style or {})}
    for t in (background or {}).values():
        t = np.asarray(t, dtype=float)
        t = t[np.all(np.isfinite(t), axis=1)]
        ax.plot(t[:, 0], t[:, 1], zorder=2, **bg)
    ax.plot(*s.start, "o", color="black", ms=6 * marker_size, zorder=7, label="start")
    ax.plot(*s.minimum, "*", color="gold", mec="black", ms=13 * marker_size, zorder=7, label="minimum")
    for label, t in trajs.items():
        t = np.asarray(t, dtype=float)
        ok = np.all(np.isfinite(t), axis=1)
        dv = not ok.all()
        t = t[ok]
        c = (colors or {}).get(label)
        kw = {"lw": 1.4, "alpha": 0.9, "zorder": 3, **(styles or {}).get(label, {})}
        if background:                  # a thin white halo lifts the highlighted runs off the grey ones
            kw["path_effects"] = [patheffects.Stroke(linewidth=kw["lw"] + 1.6, foreground="white", alpha=0.8),
                                  patheffects.Normal()]
        line, = ax.plot(t[:, 0], t[:, 1], color=c, label=f"{label} (diverged)" if dv else label,
                        marker="." if marker_every else None, markevery=marker_every, ms=3, **kw)
        ax.plot(t[-1, 0], t[-1, 1], "x" if dv else "o", color=line.get_color(),
                ms=(7 if dv else 4) * marker_size, mew=2, zorder=6)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    gone = [label for label, t in trajs.items() if diverged(np.asarray(t, dtype=float))]
    if gone and not legend:
        ax.text(0.02, 0.02, "diverged: " + ", ".join(map(str, gone)), transform=ax.transAxes,
                fontsize=7, va="bottom", color="#b00000", wrap=True,
                bbox=dict(facecolor="white", alpha=0.8, lw=0))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(False)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(loc="best", fontsize=7)
    return ax
