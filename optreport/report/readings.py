"""The report's generated "Reading" sentences: functions of computed tables, one test per wording.

Notebooks print these instead of writing f-strings in cells, so a verdict reads the same in
every notebook and its wording is tested:

    from optreport.report import readings
    table = compare.compare(runs, family)
    readings.verdict_sentence(table.iloc[0])    # one pair
    readings.family_summary(table)              # the question as a whole
    readings.gravity_reduction({0.01: 0.0071, 0.1: 0.0098, 0.2: 0.011})
    readings.cosine_reduction({lr: probe["values"][1:] for lr, probe in cos_probes.items()})

Rows are those of :func:`optreport.analysis.compare.compare` (columns ``a, lr_a, b, lr_b, n_seeds,
outcome_a, outcome_b, n_out_a, n_out_b, mean_a, mean_b, diff_pp, ci_lo_pp, ci_hi_pp, interval,
ci_level, p_holm, alpha, margin_pp, mde_pp, verdict``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from optreport.analysis.compare import POWER, VERDICTS
from optreport.analysis.outcomes import CHANCE, TRAINED
from optreport.report.experiments import MOMENTUM
from optreport.report.figures import rule_label

__all__ = ["SGD_LIKE_DECAY", "fmt_p", "arm_text", "verdict_sentence", "family_summary", "gravity_reduction",
           "cosine_reduction"]

SGD_LIKE_DECAY = 0.1   # Cosine "behaves like SGD" when its mean decay factor C*cos/2 is below this


def fmt_p(p: float) -> str:
    """A p-value for prose: 'p = 0.032', 'p < 0.001', 'p n/a'."""
    if p is None or not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 1e-3 else f"p = {p:.3f}"


def arm_text(name: str, lr: float) -> str:
    """'Momentum at lr 0.1'; a tagged arm 'momentum (matched)' reads 'Momentum at lr 0.01 (matched)'."""
    base, _, tag = name.partition(" (")
    return f"{rule_label(base)} at lr {lr:g}" + (f" ({tag}" if tag else "")


def _interval(row) -> str:
    kind = "TOST interval" if row["interval"] == "TOST" else "CI"
    return (f"{row['diff_pp']:+.2f} pp [{row['ci_lo_pp']:+.2f}, {row['ci_hi_pp']:+.2f}] "
            f"({100 * row['ci_level']:.1f}% {kind}, Holm-adjusted")


def _side_outcome(row, side: str) -> str:
    """'diverged in 3 of 3 seeds' for side 'a' or 'b'."""
    return f"{row[f'outcome_{side}']} in {int(row[f'n_out_{side}'])} of {int(row['n_seeds'])} seeds"


def _outcome_sentence(row, A: str, B: str) -> str:
    bad_a, bad_b = row["outcome_a"] != TRAINED, row["outcome_b"] != TRAINED
    if bad_a and bad_b:
        if row["outcome_a"] == row["outcome_b"]:
            return (f"Both {A} and {B} {row['outcome_a']} ({int(row['n_out_a'])} and {int(row['n_out_b'])} of "
                    f"{int(row['n_seeds'])} seeds); no comparison.")
        return f"{A} {_side_outcome(row, 'a')} and {B} {_side_outcome(row, 'b')}; no comparison."
    (bad, bad_s), (good, good_s) = ((A, "a"), (B, "b")) if bad_a else ((B, "b"), (A, "a"))
    chance = f", near chance ({100 * CHANCE:.0f}%)" if row[f"outcome_{bad_s}"] == "failed to learn" else ""
    return (f"{bad} {_side_outcome(row, bad_s)}{chance}, while {good} trained in every seed "
            f"({100 * row[f'mean_{good_s}']:.1f}%); decided by outcome, no test.")


def verdict_sentence(row) -> str:
    """One sentence for one row of a comparison table, in the words of its verdict."""
    A, B, v = arm_text(row["a"], row["lr_a"]), arm_text(row["b"], row["lr_b"]), row["verdict"]
    n = int(row["n_seeds"])
    if v == "no paired runs":
        return f"{A} vs {B}: no runs share a seed yet; no comparison."
    if v not in VERDICTS:
        return _outcome_sentence(row, A, B)
    if v in ("better", "worse"):
        return (f"{A} is {v} than {B}: {_interval(row)}, {fmt_p(row['p_holm'])}; {n} seeds).")
    if v == "equivalent":
        return (f"{A} and {B} are equivalent within ±{row['margin_pp']:g} pp: {_interval(row)}; "
                f"{n} seeds).")
    if n < 2 or not np.isfinite(row["ci_lo_pp"]):
        return f"{A} vs {B} is inconclusive: {n} paired seed(s), too few to test."
    return (f"{A} vs {B} is inconclusive: {_interval(row)}, {fmt_p(row['p_holm'])}); with {n} seeds only a "
            f"difference of about {row['mde_pp']:.1f} pp or more would have been detected "
            f"({100 * POWER:.0f}% power).")


def _outcome_phrase(row) -> str:
    """'Momentum at lr 0.2 diverged (3/3)' for the side(s) that did not train."""
    parts = [f"{arm_text(row[s], row[f'lr_{s}'])} {row[f'outcome_{s}']} ({int(row[f'n_out_{s}'])}/"
             f"{int(row['n_seeds'])})" for s in ("a", "b") if row[f"outcome_{s}"] not in (TRAINED, "")]
    return " and ".join(parts)


def family_summary(table: pd.DataFrame, name: str | None = None) -> str:
    """The verdicts of one family in a sentence or two: counts per verdict word, the outcomes,
    and the range of differences the inconclusive pairs could have detected."""
    if table.empty:
        return f"{name or 'This question'}: no comparisons."
    name = name or table["family"].iloc[0]
    tested = table[table["verdict"].isin(VERDICTS)]
    counts = [f"{int((table['verdict'] == w).sum())} {w}" for w in VERDICTS]
    text = (f"{name}: {len(table)} comparisons; Holm over the {len(tested)} tested at α = "
            f"{table['alpha'].iloc[0]:g}, equivalence margin ±{table['margin_pp'].iloc[0]:g} pp: "
            + ", ".join(counts) + ".")
    out = table[~table["verdict"].isin((*VERDICTS, "no paired runs"))]
    if len(out):
        phrases = dict.fromkeys(_outcome_phrase(r) for _, r in out.iterrows())     # each side once
        text += f" Decided by outcome ({len(out)}): " + "; ".join(phrases) + "."
    missing = int((table["verdict"] == "no paired runs").sum())
    if missing:
        text += f" Not yet run: {missing}."
    mde = table.loc[table["verdict"] == "inconclusive", "mde_pp"].dropna()
    if len(mde):
        text += (f" The inconclusive ones could only have detected differences of {mde.min():.1f}–{mde.max():.1f} pp"
                 f" or more ({100 * POWER:.0f}% power); more seeds would narrow that.")
    return text


def gravity_reduction(final_multiplier: dict) -> str:
    """What Gravity reduces to, from the probe's final step multiplier 1/k at each lr
    (``{lr: 1/k at the last recorded step}``)."""
    lrs = sorted(final_multiplier)
    ends = [f"{final_multiplier[lr]:.2g} at lr {lr:g} ({100 * final_multiplier[lr] / lr:.2g}% of it)" for lr in lrs]
    text = ("Gravity starts as SGD: its step multiplier 1/k = 1/√(1/lr² + S) starts just below lr and only "
            "shrinks as the squared gradient norms S pile up; it ends at " + ", ".join(ends) + ". "
            "Only the multiplier is at most lr: the step ‖g‖/k exceeds lr whenever ‖g‖ > 1.")
    if len(lrs) > 1:
        v = [final_multiplier[lr] for lr in lrs]
        nominal, final = lrs[-1] / lrs[0], max(v) / min(v)
        if final < nominal:
            text += (f" The lrs differ by a factor {nominal:.3g}, the final multipliers by {final:.3g}: Gravity "
                     f"reduces to SGD with a decaying step that ends near {min(v):.2g}–{max(v):.2g} whatever the lr.")
    return text


def cosine_reduction(cosines: dict, C: float = 1.8) -> str:
    """What Cosine reduces to, from its recorded cosines ``{lr: array}`` (leave out step 1, whose
    cosines are 0 by definition): the share of negative cosines and the mean decay factor
    C·cos/2 of the buffer, against Momentum's constant ``MOMENTUM``."""
    parts, sgd_like = [], []
    for lr in sorted(cosines):
        c = np.asarray(cosines[lr], dtype=float).ravel()
        c = c[np.isfinite(c)]
        factor = C * float(c.mean()) / 2
        parts.append(f"at lr {lr:g} {float((c < 0).mean()):.0%} of the cosines are negative and the mean decay "
                     f"factor C·cos/2 is {factor:+.2f}")
        sgd_like.append(factor < SGD_LIKE_DECAY)
    text = f"Cosine: {'; '.join(parts)} (Momentum's buffer always decays by {MOMENTUM:+.2f})."
    if all(sgd_like):
        return text + (" With a decay factor near zero or negative the buffer is flipped or forgotten, so Cosine "
                       "flips its buffer and behaves like SGD with step lr rather than like Momentum.")
    if any(sgd_like):
        which = ", ".join(f"{lr:g}" for lr, s in zip(sorted(cosines), sgd_like) if s)
        return text + f" At lr {which} it flips its buffer and behaves like SGD; elsewhere it keeps a memory."
    return text + " It keeps a momentum-like memory at every lr."
