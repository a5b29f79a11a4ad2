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
from optreport.analysis.studies import GAINS, LOSES
from optreport.report.experiments import MOMENTUM
from optreport.report.figures import rule_label

__all__ = ["SGD_LIKE_DECAY", "fmt_p", "arm_text", "verdict_sentence", "family_summary", "gravity_reduction",
           "lr_reading", "grid_reading", "almost_no_change", "BASELINE_WORDS", "novel_answer", "gap_change",
           "verdict_changes", "long_answer", "length_change_sentence", "size_answer", "size_trend_sentence",
           "baseline_summary", "cosine_reduction"]

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
        text = (f"{A} and {B} are equivalent within ±{row['margin_pp']:g} pp: {_interval(row)}; "
                f"{n} seeds).")
        p_holm, alpha = row.get("p_holm", np.nan), row.get("alpha", np.nan)
        if np.isfinite(p_holm) and np.isfinite(alpha) and p_holm < alpha and row["diff_pp"] != 0:
            text += (f" The difference is also significant ({fmt_p(p_holm)}): {A} is "
                     f"{'higher' if row['diff_pp'] > 0 else 'lower'}, by less than the margin.")
        return text
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


# ----------------------------------------------------------------------------- notebook 02

def lr_reading(table: pd.DataFrame, lr: float, col: str, metric_label: str) -> str:
    """At one lr of a sweep table (:func:`optreport.report.tables.sweep_table`): the range of mean
    ``col`` over the rules whose runs all trained, and the rules that did not, by outcome."""
    t = table[np.isclose(table["lr"], lr)]
    ok = t[(t["outcome"] == TRAINED) & t[col].notna()].sort_values(col, ascending=False)
    bad = t[t["outcome"] != TRAINED]
    text = f"**Reading (lr {lr:g}).** "
    if ok.empty:
        text += "No rule trained in every seed."
    else:
        top, low = ok.iloc[0], ok.iloc[-1]
        text += (f"Among the {len(ok)} rules whose runs all trained, mean {metric_label} ranges from "
                 f"{100 * low[col]:.1f}% ({rule_label(low['rule'])}) to {100 * top[col]:.1f}% "
                 f"({rule_label(top['rule'])}).")
    if len(bad):
        text += " Did not train in every seed: " + "; ".join(
            f"{rule_label(r['rule'])} ({r['outcome']})" for _, r in bad.iterrows()) + "."
    else:
        text += " Every run trained."
    return text


def grid_reading(acc: pd.DataFrame, notes: pd.DataFrame) -> str:
    """The heat map in words: the best working cell, how much the lr moves a rule and how much the
    rule moves the accuracy at a fixed lr, over cells whose runs all trained (``acc`` in %, ``notes``
    from :func:`optreport.report.tables.accuracy_grid`), and how many cells did not train."""
    work = acc.where(notes == "")
    if work.stack().empty:
        return "**Reading.** No cell trained in every seed."
    best = work.stack().idxmax()
    by_rule = (work.max(axis=1) - work.min(axis=1)).dropna()
    by_lr = (work.max(axis=0) - work.min(axis=0)).dropna()
    n_bad = int((notes != "").to_numpy().sum())
    text = (f"**Reading.** Best cell: {rule_label(best[0])} at lr {best[1]:g} ({work.loc[best]:.1f}%). Among cells "
            f"where every run trained, changing the lr moves a rule's accuracy by a median {by_rule.median():.1f} pp "
            f"(up to {by_rule.max():.1f}, {rule_label(by_rule.idxmax())}); changing the rule at a fixed lr moves it "
            f"by " + ", ".join(f"{v:.1f} pp at lr {k:g}" for k, v in by_lr.items()) + ".")
    if n_bad:
        text += f" {n_bad} of {notes.size} cells did not train in every seed (hatched; outcome named in the cell)."
    return text


def almost_no_change(table: pd.DataFrame, reference: str = "momentum") -> str:
    """Seed 000's "almost no change" between Momentum and its two rules, answered from the report's
    verdicts of each novel rule vs ``reference`` at the same lr (rows of a comparison table whose
    ``b`` is ``reference``)."""
    t = table[table["b"] == reference]
    if t.empty:
        return "No comparison with Momentum is available yet."
    counts = {w: int((t["verdict"] == w).sum()) for w in VERDICTS}
    n_out = int((~t["verdict"].isin((*VERDICTS, "no paired runs"))).sum())
    differ = t[t["verdict"].isin(("better", "worse"))]
    if len(differ) or n_out:
        parts = [f"{arm_text(r['a'], r['lr_a'])} is {r['verdict']} ({r['diff_pp']:+.2f} pp)"
                 for _, r in differ.iterrows()]
        parts += list(dict.fromkeys(_outcome_phrase(r) for _, r in t.iterrows()
                                    if r["verdict"] not in (*VERDICTS, "no paired runs")))     # each side once
        return (f"Seed 000's \"almost no change\" does not hold: of {len(t)} comparisons with "
                f"{rule_label(reference)} at the same lr, " + "; ".join(parts) + ". "
                f"The rest: {counts['equivalent']} equivalent, {counts['inconclusive']} inconclusive.")
    if counts["equivalent"] == len(t):
        return (f"Seed 000's \"almost no change\" holds: every one of the {len(t)} comparisons with "
                f"{rule_label(reference)} is equivalent within ±{t['margin_pp'].iloc[0]:g} pp.")
    return (f"Seed 000's \"almost no change\" is not shown: no comparison with {rule_label(reference)} found a "
            f"difference, but {counts['inconclusive']} of {len(t)} are inconclusive (only differences of "
            f"{t['mde_pp'].min():.1f}–{t['mde_pp'].max():.1f} pp or more were detectable) and "
            f"{counts['equivalent']} equivalent.")


# ----------------------------------------------------------------------------- notebooks 04 and 05

def _lrs_text(lrs) -> str:
    return ", ".join(f"{lr:g}" for lr in sorted(lrs))


def _never_text(rules, lrs_run: dict, best_lr: dict | None) -> str:
    """'Adam, NAdam (each run at lr 0.01, 0.1, 0.2 and shown at 0.01, the smallest of them)' for rules
    that share the same lrs and shown lr."""
    groups: dict[tuple, list] = {}
    for r in rules:
        lrs = tuple(sorted(lrs_run.get(r, ())))
        shown = (best_lr or {}).get(r)
        groups.setdefault((lrs, shown), []).append(r)
    parts = []
    for (lrs, shown), rs in groups.items():
        names = ", ".join(rule_label(r) for r in rs)
        each = "each " if len(rs) > 1 else ""
        if not lrs:
            parts.append(names)
            continue
        if shown is None or len(lrs) < 2:
            parts.append(f"{names} ({each}run at lr {_lrs_text(lrs)} only)")
            continue
        edge = (", the smallest of them" if np.isclose(shown, lrs[0]) else
                ", the largest of them" if np.isclose(shown, lrs[-1]) else "")
        parts.append(f"{names} ({each}run at lr {_lrs_text(lrs)} only, shown at its best, {shown:g}{edge})")
    return "; ".join(parts)


def time_to_target_reading(ttt: pd.DataFrame, target: float, lrs_run: dict, best_lr: dict | None = None) -> str:
    """Notebook 04's time-to-target reading for one ``target`` (rows of ``tables.time_to_target``):
    the fastest rule with its median time and bootstrap interval (or, with too few runs for one, the
    range of its runs), how many runs got there, and the rules that never did, each with the lrs it
    was run at (``lrs_run``: {rule: lrs}) and the one shown (``best_lr``: {rule: lr}). "Never" is a
    statement about those lrs: a rule shown at the edge of its lrs may reach the target beyond it."""
    t = ttt[ttt["target"] == target].set_index("rule")
    ok = t[np.isfinite(t["median_s"])]
    txt = f"**{target:.0%}:** "
    if len(ok):
        f = ok["median_s"].idxmin()
        r = ok.loc[f]
        if np.isnan(r["ci_lo_s"]):
            spread = (f"no bootstrap interval from {int(r['n_runs'])} runs; runs took "
                      f"{r['min_s']:.0f}–{r['max_s']:.0f} s" if "min_s" in r and np.isfinite(r["max_s"])
                      else f"no bootstrap interval from {int(r['n_runs'])} runs")
        else:
            hi = f"{r['ci_hi_s']:.0f} s" if np.isfinite(r["ci_hi_s"]) else "not reached"
            spread = f"95% bootstrap CI {r['ci_lo_s']:.0f} s to {hi}"
        txt += f"fastest {rule_label(f)} (median {r['median_s']:.0f} s, {spread}); "
    txt += f"{int(t['n_reached'].sum())} of {int(t['n_runs'].sum())} runs reached it"
    partly = t[(t["n_reached"] > 0) & ~np.isfinite(t["median_s"])]
    if len(partly):
        txt += ("; reached by fewer than half of the runs of " +
                ", ".join(f"{rule_label(r)} ({int(x['n_reached'])}/{int(x['n_runs'])})" for r, x in partly.iterrows()))
    never = t[t["n_reached"] == 0].index.tolist()
    if not never:
        return txt + "."
    txt += "; never reached by " + _never_text(never, lrs_run, best_lr) + "."
    edges = [r for r in never if len(lrs_run.get(r, ())) > 1 and (best_lr or {}).get(r) is not None
             and (np.isclose(best_lr[r], min(lrs_run[r])) or np.isclose(best_lr[r], max(lrs_run[r])))]
    if edges:
        txt += (" For " + ", ".join(rule_label(r) for r in edges) + " the best lr is at the edge of the lrs "
                "run, so \"never\" describes these lrs, not the rule: an lr beyond the edge was not tried.")
    return txt


def outcome_counts_sentence(table: pd.DataFrame, what: str = "run") -> str:
    """What became of the runs of a table with ``rule``, ``n_runs``, ``n_diverged``, ``n_blew_up``,
    ``n_failed`` (``costs.final_accuracy``, ``tables.epoch_cost``): the runs that did not train are
    outcomes, counted here and left out of the mean accuracies."""
    cols = {"n_diverged": "diverged", "n_blew_up": "blew up", "n_failed": "failed to learn"}
    bad = []
    for _, r in table.iterrows():
        words = [f"{int(r[c])} {w}" for c, w in cols.items() if c in r and r[c] > 0]
        if words:
            bad.append(f"{rule_label(r['rule'])} ({', '.join(words)} of {int(r['n_runs'])})")
    total = int(table["n_runs"].sum())
    if not bad:
        return (f"Outcomes: every one of the {total} {what}s trained (none diverged, blew up or failed to "
                f"learn).")
    return (f"Outcomes: not every {what} trained — " + "; ".join(bad) + ". Such runs are counted as outcomes "
            "and left out of the mean accuracies, not averaged in as NaN.")


def trial_outcomes_sentence(trials: pd.DataFrame, protocols=None, bootstrap: bool = True) -> str:
    """Per protocol, how many tuning trials did not train (``outcome`` of ``tuning.budget_trial_table``:
    diverged, blew up, failed to learn); with ``bootstrap`` they stay in the bootstrap with their
    (near-chance) scores, without it selection by validation passes them over."""
    parts = []
    for p in protocols or list(dict.fromkeys(trials["protocol"])):
        t = trials[trials["protocol"] == p]
        words = [f"{int((t['outcome'] == o).sum())} {o}" for o in ("diverged", "blew up", "failed to learn")
                 if (t["outcome"] == o).any()]
        parts.append(f"{p}: " + (", ".join(words) if words else "none") + f" of {len(t)}")
    head = "Trials that did not train (outcomes, not missing values) — " + "; ".join(parts) + ". "
    if not bootstrap:
        return head + "Selection by validation passes them over (a rule none of whose trials trained has no pick)."
    return head + ("They stay in the bootstrap: selection by validation passes them over unless a resample holds "
                   "nothing better.")


def seed004_reading(gain_row, verdict_row, much_slower: float) -> str:
    """One lr of seed 004's table: the accuracy verdict (``verdict_sentence`` of the row of
    ``costs.gain_family``'s comparison) and the time paid against the ``much_slower`` threshold:
    "much slower" when the epoch-time ratio's interval lies above it, "not much slower" when below,
    "inconclusive against the threshold" otherwise."""
    r = gain_row
    if r["epoch_ratio_lo"] > much_slower:
        t = "much slower"
    elif r["epoch_ratio_hi"] < much_slower:
        t = "not much slower"
    else:
        t = "inconclusive against the threshold"
    return (f"**lr {r['lr']:g}:** {verdict_sentence(verdict_row)} Time: {r['epoch_time_ratio']:.2f}× SGD's seconds "
            f"per epoch (95% CI {r['epoch_ratio_lo']:.2f}–{r['epoch_ratio_hi']:.2f}) and "
            f"{r['extra_seconds']:+.1f} s in total over {int(r['n_seeds'])} seeds: {t} (more than {much_slower:g}× "
            f"counts as much slower).")


__all__ += ["time_to_target_reading", "outcome_counts_sentence", "trial_outcomes_sentence", "seed004_reading"]


# ----------------------------------------------------------------------------- notebook 03

BASELINE_WORDS = {"sgd": "SGD at the same lr (its special case)",
                  "momentum": "Momentum at the same lr (seed 000's baseline)",
                  "momentum (matched)": "Momentum at the matched effective step lr·(1 − μ)"}


def _verdict_list(rows: pd.DataFrame) -> str:
    parts = []
    for _, r in rows.iterrows():
        v = r["verdict"]
        if v in VERDICTS and np.isfinite(r["diff_pp"]):
            parts.append(f"{v} at lr {r['lr_a']:g} ({r['diff_pp']:+.2f} pp "
                         f"[{r['ci_lo_pp']:+.2f}, {r['ci_hi_pp']:+.2f}])")
        elif v in VERDICTS:
            parts.append(f"{v} at lr {r['lr_a']:g}")
        else:
            parts.append(f"at lr {r['lr_a']:g}: {_outcome_phrase(r) or v}")
    return "; ".join(parts)


def novel_answer(table: pd.DataFrame) -> str:
    """Notebook 03's answer, per novel rule and baseline (rows of the family "novel vs baselines":
    ``a`` the novel rule, ``b`` one of :data:`BASELINE_WORDS`), in the verdicts' own words."""
    lines = []
    for rule, g in table.groupby("a", sort=False):
        lines.append(f"**{rule_label(rule)}**")
        for base, words in BASELINE_WORDS.items():
            rows = g[g["b"] == base]
            if len(rows):
                lines.append(f"- vs {words}: {_verdict_list(rows)}.")
    n = int(table["n_seeds"].max()) if len(table) else 0
    better = table[table["verdict"] == "better"]
    lines.append("")
    lines.append(f"Over {len(table)} comparisons at up to {n} seeds: "
                 + ", ".join(f"{int((table['verdict'] == w).sum())} {w}" for w in VERDICTS)
                 + f", {int((~table['verdict'].isin(VERDICTS)).sum())} decided by an outcome. "
                 + ("No novel rule is better than any of its baselines."
                    if better.empty else
                    "Better than a baseline: " + ", ".join(
                        f"{arm_text(r['a'], r['lr_a'])} vs {arm_text(r['b'], r['lr_b'])}" for _, r in better.iterrows())
                    + "."))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- notebooks 06 and 07

def _short(r) -> str:
    v = r["verdict"]
    if v in VERDICTS and np.isfinite(r["diff_pp"]):
        return f"{r['diff_pp']:+.2f} pp, {v}"
    return v if v in VERDICTS else (_outcome_phrase(r) or v)


def gap_change(table: pd.DataFrame, by: str = "cut", per: str | None = None) -> str:
    """Per pair (a vs b), its difference and verdict at each value of ``by`` (e.g. the cut-off epoch),
    one line each: "- Gravity at lr 0.2 (constant) vs SGD at lr 0.1 (constant): −1.20 pp, worse at
    epoch 15 → −0.30 pp, inconclusive at epoch 100". With ``per`` (a column, e.g. the base rule when
    the arms' labels carry the value of ``by``), one line per value of ``per`` instead."""
    lines = []
    if by == "cut":
        place = lambda v: f"epoch {v:g}"          # noqa: E731
    elif by in ("images", "n_train_value"):
        place = lambda v: f"{v:,.0f} images"       # noqa: E731
    else:
        place = lambda v: f"{by} {v:,.0f}"         # noqa: E731
    for key, g in table.groupby(list(per and [per] or ["a", "b"]), sort=False):
        g = g.sort_values(by)
        first = g.iloc[0]
        steps = " → ".join(f"{_short(r)} at {place(r[by])}" for _, r in g.iterrows())
        head = (f"{rule_label(key[0] if isinstance(key, tuple) else key)} vs {rule_label(first['b'].split(' (')[0])}"
                if per else f"{arm_text(first['a'], first['lr_a'])} vs {arm_text(first['b'], first['lr_b'])}")
        lines.append(f"- {head}: {steps}")
    return "\n".join(lines)


def verdict_changes(table: pd.DataFrame, by: str = "cut") -> pd.DataFrame:
    """The pairs whose verdict differs between the smallest and the largest value of ``by``."""
    rows = []
    for (a, b), g in table.groupby(["a", "b"], sort=False):
        g = g.sort_values(by)
        if g["verdict"].iloc[0] != g["verdict"].iloc[-1]:
            rows.append({"a": a, "b": b, "from": g["verdict"].iloc[0], "to": g["verdict"].iloc[-1],
                         "diff_from": g["diff_pp"].iloc[0], "diff_to": g["diff_pp"].iloc[-1]})
    return pd.DataFrame(rows, columns=["a", "b", "from", "to", "diff_from", "diff_to"])


def _span_text(values, digits: int) -> str:
    """'0.4–0.9' (or '0.4' when both ends print the same) for the range of ``values``."""
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def _change_arm(r) -> str:
    """'Gravity (cosine)' for a row of ``studies.length_change`` (with its ``schedule`` when present)."""
    return rule_label(r["rule"]) + (f" ({r['schedule']})" if "schedule" in r and pd.notna(r["schedule"]) else "")


def length_change_sentence(change: pd.DataFrame) -> str:
    """Each rule's gap to the base rule between the short and the long cut-off, tested
    (:func:`optreport.analysis.studies.length_change`): the pairs whose gap changes, with the change
    and its Holm-level interval, then how many show no change and the smallest change detectable."""
    if change.empty:
        return ""
    short, long_ = change["short"].iloc[0], change["long"].iloc[0]
    base = rule_label(change["base"].iloc[0])
    m = int(change["p_holm"].notna().sum())
    moved = change[change["verdict"].isin((GAINS, LOSES))]
    text = (f"Change of each rule's gap to {base} from epoch {short:g} to epoch {long_:g}, paired by seed (t-test over "
            f"the seeds' changes, Holm over {m}): ")
    parts = [f"{_change_arm(r)} {'gains on' if r['verdict'] == GAINS else 'loses ground to'} {base}, "
             f"{r['diff_short_pp']:+.2f} → {r['diff_long_pp']:+.2f} pp, change {r['change_pp']:+.2f} pp "
             f"[{r['ci_lo_pp']:+.2f}, {r['ci_hi_pp']:+.2f}] ({100 * r['ci_level']:.1f}% CI, {fmt_p(r['p_holm'])})"
             for _, r in moved.iterrows()]
    flat = change[change["verdict"] == "no change shown"]
    if len(flat):
        mde = flat["mde_pp"]
        rng = _span_text(mde, 1)
        parts.append(f"{len(flat)} of {len(change)} show no change (only changes of {rng} pp or more were "
                     f"detectable with {int(flat['n_seeds'].min())} seeds)")
    few = change[change["verdict"] == "too few seeds"]
    if len(few):
        parts.append(f"{len(few)} had too few seeds trained at both lengths to test")
    return text + "; ".join(parts) + "."


def long_answer(table: pd.DataFrame, change: pd.DataFrame | None = None) -> str:
    """Seed 000's "100 epochs might be needed", from each rule vs SGD at the short and the long cut
    (rows with a ``cut`` column) and, when given, the test of each gap's change between them
    (:func:`optreport.analysis.studies.length_change`): **yes, for** the rules whose gap changes,
    **no change shown** otherwise; the verdicts that differ between the two cut-offs are listed as
    such (a verdict that changes is not by itself evidence of a change)."""
    cuts = sorted(table["cut"].unique())
    short, long_ = cuts[0], cuts[-1]
    ch = verdict_changes(table)
    n_pairs = table.groupby(["a", "b"]).ngroups
    head = (f"Between epoch {short:g} and epoch {long_:g}, {len(ch)} of {n_pairs} comparisons with SGD change "
            f"verdict")
    if ch.empty:
        verdicts = head + f": training {long_:g} epochs instead of {short:g} does not change the answer."
    else:
        verdicts = head + ": " + "; ".join(
            f"{arm_text(r['a'], table.loc[table['a'] == r['a'], 'lr_a'].iloc[0])} {r['from']} → {r['to']} "
            f"({r['diff_from']:+.2f} → {r['diff_to']:+.2f} pp)" for _, r in ch.iterrows()) + "."
    if change is None:
        return verdicts
    moved = change[change["verdict"].isin((GAINS, LOSES))]
    if len(moved):
        lead = (f"**Yes, for {', '.join(_change_arm(r) for _, r in moved.iterrows())}.** Their gap to SGD "
                f"changes between epoch {short:g} and epoch {long_:g}.")
    else:
        lead = f"**No change shown.** No rule's gap to SGD is shown to change between epoch {short:g} and {long_:g}."
    if ch.empty:
        return f"{lead} {length_change_sentence(change)} {verdicts}"
    return (f"{lead} {length_change_sentence(change)} {verdicts.rstrip('.')} (a verdict that changes is not by "
            "itself evidence that the gap changed).")


def _rules_text(names) -> str:
    names = [rule_label(n) for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def size_trend_sentence(trend: pd.DataFrame) -> str:
    """Each rule's gap to the base rule against the training-set size, from
    :func:`optreport.analysis.studies.size_trend`: the rules whose gap changes (slope per
    ``factor``-fold more data with its Holm-level interval, and the gap at the smallest and the
    largest size), then the rules with no trend shown and the smallest slope their seeds could
    detect."""
    if trend.empty:
        return ""
    f = trend["factor"].iloc[0]
    per = "tripling" if f == 3 else f"{f:g}-fold increase"
    base = rule_label(trend["base"].iloc[0])
    parts = []
    changed = trend[trend["verdict"].isin((GAINS, LOSES))]
    m = int(trend["p_holm"].notna().sum())
    for _, r in changed.iterrows():
        parts.append(f"{rule_label(r['rule'])} {r['slope_pp']:+.2f} pp per {per} of the training set "
                     f"[{r['ci_lo_pp']:+.2f}, {r['ci_hi_pp']:+.2f}] ({100 * r['ci_level']:.1f}% CI, Holm over "
                     f"{m} rules, {fmt_p(r['p_holm'])}; {r['diff_smallest_pp']:+.2f} pp "
                     f"at the smallest size, {r['diff_largest_pp']:+.2f} pp with all of it)")
    text = ""
    if parts:
        text = f"The gap to {base} changes with the training-set size for " + "; ".join(parts) + "."
    flat = trend[trend["verdict"] == "no trend shown"]
    if len(flat):
        mde = flat["mde_pp"]
        rng = _span_text(mde, 2)
        slopes = ", ".join(f"{x:+.2f}" for x in flat["slope_pp"])
        text += (f" {_rules_text(flat['rule'])}: no trend shown (slopes {slopes}"
                 f" pp per {per}; only slopes of {rng} pp or more were detectable with "
                 f"{int(flat['n_seeds'].min())} seeds).")
    few = trend[trend["verdict"] == "too few seeds"]
    if len(few):
        text += f" {_rules_text(few['rule'])}: too few seeds trained at every size to test."
    return text.strip()


def size_answer(table: pd.DataFrame, full: str = "all data", trend: pd.DataFrame | None = None) -> str:
    """Seed 000's "the data set may be too small to show a difference", answered from each rule vs
    SGD at every training-set size (rows with ``size`` (n or ``full``) and ``n_train_value``
    (number of images) columns) and, when given, each rule's trend with the size
    (:func:`optreport.analysis.studies.size_trend`): **no** when some rule differs from SGD (better /
    worse) on the full training set -- differences are visible at this size; otherwise **yes, for**
    the rules whose gap to SGD changes significantly with the size (the trend test), or, without a
    trend table, **yes, possibly** when the mean |difference| grows at every size; otherwise **not
    shown either way**."""
    t = table.sort_values("n_train_value")
    sizes = t["n_train_value"].drop_duplicates().tolist()
    at_full = t[t["n_train_value"] == sizes[-1]]
    at_small = t[t["n_train_value"] == sizes[0]]
    diff_full = at_full[at_full["verdict"].isin(("better", "worse"))]
    mean_abs = {n: float(np.nanmean(np.abs(g["diff_pp"]))) if g["diff_pp"].notna().any() else np.nan
                for n, g in t.groupby("n_train_value")}
    trend_text = size_trend_sentence(trend) if trend is not None else ""
    counts = ", ".join(f"{int(((t['n_train_value'] == n) & t['verdict'].isin(('better', 'worse'))).sum())} of "
                       f"{int((t['n_train_value'] == n).sum())} at {int(n):,}" for n in sizes)
    evidence = ((trend_text + " ") if trend_text else "") + (
        "Mean |difference to SGD| over the rules: "
        + ", ".join(f"{mean_abs[n]:.2f} pp at {int(n):,} images" for n in sizes)
        + f". Rules that differ from SGD (better or worse): {counts}.")
    if len(diff_full):
        who = "; ".join(f"{arm_text(r['a'], r['lr_a'])} {r['verdict']} ({r['diff_pp']:+.2f} pp)"
                        for _, r in diff_full.iterrows())
        return (f"**No.** With all {int(sizes[-1]):,} training images the rules already differ from SGD: {who}. "
                + evidence)
    none_shown = f"No rule is shown to differ from SGD on the full training set ({_full_status(at_full)})"
    if trend is not None:
        moved = trend[trend["verdict"].isin((GAINS, LOSES))]
        if len(moved):
            ways = []
            for word, how in ((GAINS, "gain{s} on SGD"), (LOSES, "lose{s} ground to SGD")):
                who = moved[moved["verdict"] == word]["rule"]
                if len(who):
                    ways.append(f"{_rules_text(who)} {how.format(s='s' if len(who) == 1 else '')}")
            return (f"**Yes, for {_rules_text(moved['rule'])}.** {none_shown}, but the training-set size changes "
                    f"the comparison: as the set grows, {'; '.join(ways)}. " + evidence)
        return (f"**Not shown either way.** {none_shown}, and no rule's gap to SGD is shown to change with the "
                "training-set size. " + evidence)
    steps = [mean_abs[n] for n in sizes]
    grows = len(at_small) > 0 and len(sizes) > 1 and all(np.isfinite(steps)) and \
        all(b > a for a, b in zip(steps, steps[1:]))
    if grows:
        return (f"**Yes, possibly.** {none_shown}, but the differences grow with the training-set size at every "
                "step. " + evidence)
    return (f"**Not shown either way.** {none_shown}, and the differences do not grow steadily with the "
            "training-set size. " + evidence)


def _full_status(rows: pd.DataFrame) -> str:
    """'1 equivalent within ±0.5 pp, 3 inconclusive: only differences of 2.0–2.2 pp or more were
    detectable' for comparisons none of which is better or worse."""
    parts = []
    eq = rows[rows["verdict"] == "equivalent"]
    if len(eq):
        margin = f" within ±{eq['margin_pp'].iloc[0]:g} pp" if "margin_pp" in eq else ""
        parts.append(f"{len(eq)} equivalent{margin}")
    inc = rows[rows["verdict"] == "inconclusive"]
    if len(inc):
        mde = inc["mde_pp"].dropna() if "mde_pp" in inc else pd.Series(dtype=float)
        mde = mde[np.isfinite(mde)]
        rng = _span_text(mde, 1) if len(mde) else ""
        parts.append(f"{len(inc)} inconclusive" + (f": only differences of {rng} pp or more were detectable"
                                                     if rng else ""))
    other = len(rows) - len(eq) - len(inc)
    if other:
        parts.append(f"{other} not compared (a side did not train)")
    return ", ".join(parts)


def gravity_schedule_answer(table: pd.DataFrame) -> str:
    """Notebook 06's "does Gravity's built-in decay match an explicit schedule?", from the rows of
    its schedule comparisons (arms labelled "rule (schedule)"): Gravity with a constant lr against
    SGD with cosine decay, and what adding cosine decay does to Gravity and to SGD."""
    def row(a, b):
        r = table[(table["a"] == a) & (table["b"] == b)]
        return r.iloc[0] if len(r) else None

    cross = row("gravity (constant)", "sgd (cosine)")
    if cross is None:
        return "Gravity with a constant lr was not compared with SGD under cosine decay."
    v = cross["verdict"]
    what = f"Gravity with a constant lr vs SGD with cosine decay: {_short(cross)}"
    if v == "equivalent":
        head = f"**Yes.** {what} (within ±{cross['margin_pp']:g} pp): the built-in decay does what the schedule does."
    elif v == "better":
        head = f"**More than matches.** {what}: the built-in decay beats the explicit schedule."
    elif v == "worse":
        head = f"**No.** {what}: the built-in decay does not replace an explicit schedule."
    elif v == "inconclusive":
        mde = cross["mde_pp"]
        head = (f"**Not decided.** {what}" + (f" (only differences of ≥ {mde:.1f} pp were detectable)"
                                              if np.isfinite(mde) else "") + ".")
    else:
        head = f"**Not compared.** {what}."
    parts = []
    for rule in ("gravity", "sgd"):
        r = row(f"{rule} (cosine)", f"{rule} (constant)")
        if r is not None:
            parts.append(f"{rule_label(rule)} {_short(r)}")
    if parts:
        head += " Adding cosine decay changes " + " and ".join(parts) + "."
    return head


__all__ += ["gravity_schedule_answer"]


def overfitting_reading(over: pd.DataFrame) -> str:
    """Notebook 06's training-vs-test sentence from :func:`optreport.report.tables.overfitting`:
    the range of the training − test gap over rules and schedules (with the extremes named),
    whether every interval lies above 0, and the validation-selected epochs against the run length."""
    ok = over[np.isfinite(over["gap_pp"].astype(float))]
    bad = over[over["outcome"] != TRAINED]
    out = [f"{rule_label(r['rule'])} ({r['schedule']}): {r['outcome']}" for _, r in bad.iterrows()]
    if ok.empty:
        return "No run trained, so no training–test gap. " + "; ".join(out)
    def name(r) -> str:
        return (f"{rule_label(r['rule'])} ({r['schedule']}, {100 * r['train_acc']:.1f}% training vs "
                f"{100 * r['test_acc']:.1f}% test)")

    lo, hi = ok.loc[ok["gap_pp"].idxmin()], ok.loc[ok["gap_pp"].idxmax()]
    last = int(over["final_epoch"].max())
    above = int((ok["gap_lo_pp"] > 0).sum())
    text = (f"After {last} epochs, training minus test accuracy ranges from {lo['gap_pp']:+.1f} pp "
            f"({name(lo)}) to {hi['gap_pp']:+.1f} pp ({name(hi)}); the gap's 95% interval lies above 0 for "
            f"{above} of {len(ok)} rule–schedule pairs. The epoch of best validation accuracy averages "
            f"{ok['val_epoch'].min():.0f}–{ok['val_epoch'].max():.0f} of {last}")
    late = ok["val_epoch"] >= 0.9 * last
    text += (": validation accuracy still peaks near the end, so longer training has not yet stopped helping."
             if late.all() else
             f"; {int((~late).sum())} of {len(ok)} peak before epoch {0.9 * last:.0f}, after which their "
             "validation accuracy no longer improved (early stopping would have stopped there).")
    if out:
        text += " Did not train: " + "; ".join(out) + "."
    return text


__all__ += ["overfitting_reading"]


# ----------------------------------------------------------------------------- notebook 01
ROUNDING_RTOL = 1e-12   # |f − f_min| below ROUNDING_RTOL · max(1, |f_min|) is floating-point rounding: a tie


def rounding_tol(f_min: float) -> float:
    """The gap to the minimum value below which two final values are tied (rounding level)."""
    return ROUNDING_RTOL * max(1.0, abs(float(f_min)))


def gap_text(gap: float, f_min: float) -> str:
    """``f − f_min`` for prose: "f − f_min = 0.031", "f − f_min = 0 within rounding (|…| < 1e-12)"
    (never a negative number that is only rounding), "diverged" for +inf."""
    if not np.isfinite(gap):
        return "diverged"
    tol = rounding_tol(f_min)
    if abs(gap) < tol:
        return f"f − f_min = 0 within rounding (|f − f_min| < {tol:.0e})"
    if gap < 0:
        return f"f − f_min = {gap:.2g}, below the tabulated f_min"
    return f"f − f_min = {gap:.2g}"


def surface_reading(title: str, table: pd.DataFrame, f_min: float, *, close: float = 1e-3) -> str:
    """Notebook 01's reading of one 2-D surface. ``table``: that surface's rows of
    ``01_trajectories`` (columns setting, rule, lr, gap, diverged; setting "best lr" = each rule at
    its own best lr). Per setting: how many rules end within ``close`` of the minimum value and
    which diverge. Then the lowest and highest final values at the rules' own lrs, where gaps
    within rounding of each other (:func:`rounding_tol`) are ties: all tied rules are named
    ("tied at the minimum within rounding: A, B"), no winner is crowned among them."""
    parts = []
    for setting, g in table.groupby("setting", sort=False):
        near = g[g.gap < close]
        div = g[g.diverged.astype(bool)]
        parts.append(f"at {setting}: {len(near)} of {len(g)} rules end within {close:g} of the minimum value"
                     + (f" ({', '.join(rule_label(r) for r in near.rule)})" if 0 < len(near) <= 5 else "")
                     + f", {len(div)} diverge"
                     + (f" ({', '.join(rule_label(r) for r in div.rule)})" if len(div) else ""))
    b = table[table.setting == "best lr"].sort_values(["gap", "lr"], kind="stable")
    text = f"**Reading ({title}).** " + "; ".join(parts) + "."
    if b.empty:
        return text
    tol = rounding_tol(f_min)
    low = float(b.gap.iloc[0])
    if not np.isfinite(low):
        return text + " Every rule diverged at every lr."
    tied = b[b.gap - low < tol]
    names = ", ".join(f"{rule_label(r.rule)} (lr {r.lr:g})" for r in tied.itertuples())
    if abs(low) < tol:
        head = (f" Tied at the minimum within rounding (|f − f_min| < {tol:.0e}) at their own lr: {names}."
                if len(tied) > 1 else
                f" Lowest final value at its own lr: {names}, {gap_text(low, f_min)}.")
    elif len(tied) > 1:
        head = f" Lowest final value at their own lr, tied within rounding: {names}, {gap_text(low, f_min)}."
    else:
        head = f" Lowest final value at its own lr: {names}, {gap_text(low, f_min)}."
    rest = b[~b.index.isin(tied.index)]
    if rest.empty:
        return text + head
    worst = rest.iloc[-1]
    return (text + head + f" Highest: {rule_label(worst.rule)} (lr {worst.lr:g}, "
            f"{gap_text(float(worst.gap), f_min)}).")


def lr_edge_reading(check: pd.DataFrame, grid, titles: dict | None = None) -> str:
    """Does any rule's best lr sit on an edge of the searched grid? ``check``: rows of
    :func:`optreport.analysis.surfaces.lr_edge_check` (surface, rule, best_lr, edge, plateau_lo,
    plateau_hi, status). An edge best is explained when f is flat there (the rule is insensitive
    to lr beyond the plateau's inner end) and flagged when f was still improving."""
    titles = titles or {}
    lo, hi = min(grid), max(grid)
    head = f"**Best-lr check.** The grid searched runs from lr {lo:g} to {hi:g} ({len(grid)} values). "
    on_edge = check[check.edge != ""]
    if on_edge.empty:
        return head + "No rule's best lr sits on an edge of the grid on any surface: every best is interior."

    def where(rows):
        return "; ".join(f"{rule_label(r.rule)} on {titles.get(r.surface, r.surface)} ({r.edge} edge, lr {r.best_lr:g})"
                         for r in rows.itertuples())
    out = [head + f"Best lr on an edge of the grid: {len(on_edge)} of {len(check)} rule × surface pairs."]
    flat = on_edge[on_edge.status == "edge, flat"]
    if len(flat):
        spans = "; ".join(f"{rule_label(r.rule)} on {titles.get(r.surface, r.surface)}: final f the same to 1e-6 "
                          f"for every lr from {r.plateau_lo:g} to {r.plateau_hi:g}" for r in flat.itertuples())
        note = (" Gravity's k = √(1/lr² + S) tends to √S as lr grows, so lr drops out of the rule"
                if (flat.rule == "gravity").any() and (flat.edge == "high").any() else "")
        out.append(f"Flat there, i.e. insensitive to lr, not a missed optimum: {spans}.{note}.")
    diverged = on_edge[on_edge.status == "all diverged"]
    if len(diverged):
        out.append(f"Diverged at every lr: {where(diverged)}.")
    still = on_edge[on_edge.status == "edge, still improving"]
    if len(still):
        out.append(f"**Still improving at the edge — the grid should be widened: {where(still)}.**")
    return " ".join(out)


def divergence_reading(table: pd.DataFrame, step_ratio: dict, lr: float) -> str:
    """Notebook 01's divergence reading over the grid runs (``table``: rows of ``01_trajectories``
    at the grid's lrs: surface, rule, diverged) and what one lr means per rule: ``step_ratio``
    maps a rule to its first step's length divided by ``lr`` at each surface's start. The Gravity
    sentence is exact: the multiplier 1/k is at most lr (k = √(1/lr² + S) ≥ 1/lr), the step ‖g‖/k
    is at most lr·‖g‖ — longer than lr wherever ‖g‖ > 1 — and shorter than 1 (S includes ‖g‖²)."""
    div_by_rule = table.groupby("rule", sort=False).diverged.sum().sort_values(ascending=False, kind="stable")
    n_cells = int(table.groupby("rule").size().iloc[0])
    n_surfaces = table.surface.nunique()
    n_lrs = table.lr.nunique()
    never = [rule_label(r) for r, v in div_by_rule.items() if v == 0]
    def num(x):
        r = float(f"{x:.2g}")
        return np.format_float_positional(r, trim="-") if 1e-4 <= abs(r) < 1e5 else f"{r:.2g}"

    def span(v):
        lo_, hi_ = num(min(v)), num(max(v))
        return lo_ if lo_ == hi_ else f"{lo_}–{hi_}"
    ratios = "; ".join(f"{rule_label(r)} {span(v)}" for r, v in step_ratio.items())
    text = (f"**Reading.** Over the {n_surfaces} surfaces × {n_lrs} grid lrs ({n_cells} runs per rule), divergences: "
            + ", ".join(f"{rule_label(r)} {int(v)}" for r, v in div_by_rule.items())
            + f". Never diverged on the grid: {', '.join(never) if never else 'none'}. The same lr means very "
            f"different steps for different rules. First step from each surface's start, in units of lr "
            f"(lr = {lr:g}, range over the surfaces): {ratios}. The SGD family multiplies the raw gradient by lr "
            "(SGD's step is lr·‖g‖; momentum adds past gradients to it); Adagrad and Adam's family move about lr "
            "per coordinate at first; ")
    if "gravity" in step_ratio:
        g = step_ratio["gravity"]
        text += ("Gravity multiplies the gradient by 1/k ≤ lr (k = √(1/lr² + S) ≥ 1/lr), so its step ‖g‖/k is at "
                 "most lr·‖g‖ — longer than lr wherever ‖g‖ > 1"
                 + (f" (here up to {num(max(g))}·lr)" if max(g) > 1 else "")
                 + " — and always shorter than 1, since S already contains ‖g‖².")
    return text


def seed003_reading(t003: pd.DataFrame, steps: int, long_steps: int | None = None, *,
                    buggy: str = "seed 003 as written (3 bugs)", correct: str = "correct Adam",
                    rtol: float = 1e-3) -> str:
    """Which of seed 003's buggy Adam and the correct one ends nearer the minimum, and why.

    ``t003``: the ``01_seed003_adam`` table (variant, final_x, final_y, final_f, dist_to_min, and
    for ``long_steps``: dist_to_min_long, gap_long, dist_to_wrong_zero_long); the single-bug rows
    are the variants named "only bug N: what". Distances within ``rtol`` (relative) count as
    equal. The buggy run's lead is called an accident only when the numbers show it: a single
    bug alone gives the lead, and run for ``long_steps`` the correct Adam ends nearer while the
    buggy one ends nearer the zero of its wrong gradient than the minimum."""
    r = t003.set_index("variant")
    bug, cor = r.loc[buggy], r.loc[correct]

    def where(x):
        return f"({x.final_x:.3f}, {x.final_y:.3f}), f = {x.final_f:.3f}, {x.dist_to_min:.2f} from the minimum"

    def cmp(a, b):
        if abs(a - b) <= rtol * max(abs(a), abs(b)):
            return 0
        return -1 if a < b else 1
    out = [f"**Reading.** After {steps} steps the blog's Adam ends at {where(bug)}; correct Adam ends at {where(cor)}."]
    c = cmp(bug.dist_to_min, cor.dist_to_min)
    if c == 0:
        out.append("Both end as near the minimum.")
        return " ".join(out)
    lower = "lower" if bug.final_f < cor.final_f else "higher"
    if c < 0:
        out.append(f"**The buggy Adam ends nearer the minimum** ({bug.dist_to_min:.2f} against {cor.dist_to_min:.2f}), "
                   f"at a {lower} f.")
    else:
        out.append(f"Correct Adam ends nearer the minimum ({cor.dist_to_min:.2f} against {bug.dist_to_min:.2f}).")
        return " ".join(out)
    singles = [k for k in r.index if str(k).startswith("only bug")]
    helps = [k for k in singles if cmp(r.loc[k].dist_to_min, cor.dist_to_min) < 0]
    others = [k for k in singles if k not in helps]

    def names(ks):
        return ", ".join(f"{str(k).split(': ', 1)[-1]} ({r.loc[k].dist_to_min:.2f})" for k in ks)
    if singles:
        verb = "ends" if len(helps) == 1 else "end"
        rest = f"; {names(others)} do{'es' if len(others) == 1 else ''} not" if others else ""
        out.append(f"Of the bugs alone, {names(helps) if helps else 'none'} {verb} nearer than correct Adam{rest}.")
    if long_steps and {"dist_to_min_long", "gap_long", "dist_to_wrong_zero_long"} <= set(r.columns):
        reverses = cmp(cor.dist_to_min_long, bug.dist_to_min_long) < 0
        elsewhere = bug.dist_to_wrong_zero_long < bug.dist_to_min_long
        out.append(f"Run for {long_steps} steps, correct Adam ends {cor.dist_to_min_long:.2g} from the minimum "
                   f"(f − f_min = {cor.gap_long:.2g}) and the blog's Adam {bug.dist_to_min_long:.2g} "
                   f"(f − f_min = {bug.gap_long:.2g}), {bug.dist_to_wrong_zero_long:.2g} from the zero of its wrong "
                   "gradient.")
        if reverses and elsewhere:
            why = (f"the larger steps of the {' and the '.join(str(k).split(': ', 1)[-1] for k in helps)}"
                   if helps else "its larger steps")
            out.append(f"So ending nearer after {steps} steps is an accident of {why}: the buggy Adam follows a "
                       "wrong vector field, which leads to its own zero, not to the minimum.")
        elif reverses:
            out.append(f"So its lead after {steps} steps does not last.")
        else:
            out.append(f"It still ends nearer after {long_steps} steps.")
    return " ".join(out)


__all__ += ["ROUNDING_RTOL", "rounding_tol", "gap_text", "surface_reading", "lr_edge_reading", "divergence_reading",
            "seed003_reading"]


def baseline_summary(table: pd.DataFrame) -> str:
    """One sentence per baseline over the novel rules and lrs (rows of "novel vs baselines"): how
    many comparisons are better / worse / equivalent / inconclusive / decided by an outcome."""
    parts = []
    for base, words in BASELINE_WORDS.items():
        g = table[table["b"] == base]
        if g.empty:
            continue
        counts = [f"{int((g['verdict'] == w).sum())} {w}" for w in VERDICTS if (g["verdict"] == w).any()]
        n_out = int((~g["verdict"].isin(VERDICTS)).sum())
        if n_out:
            counts.append(f"{n_out} decided by an outcome")
        parts.append(f"vs {words}: " + ", ".join(counts))
    return "Gravity and Cosine over seed 000's three lrs — " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- notebook 05 on reruns

def _pct_ci(mean: float, lo: float, hi: float) -> str:
    """'88.12% [87.80, 88.44]' (the interval omitted when it is not finite)."""
    if not np.isfinite(mean):
        return "no trained rerun"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{100 * mean:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]"
    return f"{100 * mean:.2f}%"


def _vs_top_word(row) -> str:
    """The verdict of 'rule vs the top' as a phrase about the rule."""
    v = row["verdict"]
    if v in ("better", "worse"):
        return f"{v} ({row['diff_pp']:+.2f} pp [{row['ci_lo_pp']:+.2f}, {row['ci_hi_pp']:+.2f}])"
    if v == "equivalent":
        return f"equivalent within ±{row['margin_pp']:g} pp ({row['diff_pp']:+.2f} pp)"
    if v == "inconclusive":
        mde = row["mde_pp"]
        return (f"inconclusive ({row['diff_pp']:+.2f} pp; only ≥ {mde:.1f} pp detectable)" if np.isfinite(mde)
                else "inconclusive")
    if v == "no paired runs":
        return "not run yet"
    return v.replace("A ", "it ").replace("B ", "the top ")


def rerun_ranking_reading(ranking: pd.DataFrame, vs_top: pd.DataFrame, protocol: str, what: str = "") -> str:
    """The ranking of one protocol on the reruns, in words: the rules in order of their mean rerun
    accuracy with 95% CIs (``tuning.rerun_ranking``), then each rule against the top in its verdict's
    word (``tuning.rerun_comparisons``' "vs the top" table; the top is chosen on the same reruns)."""
    r = ranking[ranking["protocol"] == protocol].sort_values("rank")
    if r.empty:
        return f"**{protocol}**: no reruns yet."
    head = f"**{protocol}**" + (f" ({what})" if what else "") + ": "
    order = " > ".join(f"{rule_label(x.rule)} {_pct_ci(x.mean, x.ci_lo, x.ci_hi)}"
                       if x.outcome == TRAINED else f"{rule_label(x.rule)} ({x.outcome})" for x in r.itertuples())
    n = int(r["n_seeds"].max())
    top = r["rule"].iloc[0]
    text = head + order + f" ({n} seeds each)."
    if len(vs_top):
        words = "; ".join(f"{rule_label(str(x['a']))} {_vs_top_word(x)}" for _, x in vs_top.iterrows())
        counts = ", ".join(f"{int((vs_top['verdict'] == w).sum())} {w}" for w in VERDICTS
                           if (vs_top["verdict"] == w).any())
        text += (f" Against the top, {rule_label(top)} (Holm over {len(vs_top)} pairs; the top is picked on these "
                 f"reruns, so its lead is biased upwards): {words}" + (f" — {counts}." if counts else "."))
    return text


def inclusion_reruns_reading(incl: pd.DataFrame, protocol: str) -> str:
    """Whether Choi et al.'s inclusions hold on the reruns of ``protocol`` (rows of
    ``tuning.inclusion_verdicts``: the verdict of general vs special): "holds" when the general rule
    is better or equivalent, "violated" when it is worse, "undecided" when inconclusive, and the
    outcome otherwise."""
    c = incl[incl["protocol"] == protocol]
    if c.empty:
        return f"Protocol {protocol}: no inclusion pair among these rules."
    parts = []
    for _, r in c.iterrows():
        S, G = rule_label(r["special"]), rule_label(r["general"])
        v = r["verdict"]
        if v in VERDICTS:
            d = f"{r['diff_pp']:+.2f} pp"
            if np.isfinite(r["ci_lo_pp"]):
                d += f" [{r['ci_lo_pp']:+.2f}, {r['ci_hi_pp']:+.2f}]"
            how = {"better": f"{G} better than {S}", "worse": f"{G} worse than {S}",
                   "equivalent": f"{G} equivalent to {S}", "inconclusive": f"{G} vs {S} inconclusive"}[v]
            parts.append(f"{S} ⊆ {G} {r['inclusion']} ({how}, {d})")
        else:
            parts.append(f"{S} ⊆ {G}: {v.replace('A ', G + ' ').replace('B ', S + ' ')}")
    counts = ", ".join(f"{int((c['inclusion'] == w).sum())} {w}" for w in ("holds", "violated", "undecided")
                       if (c["inclusion"] == w).any())
    n = int(c["n_seeds"].max()) if c["n_seeds"].notna().any() else 0
    return (f"Protocol {protocol}, on the reruns ({n} seeds, paired): " + "; ".join(parts)
            + (f". In all: {counts}." if counts else "."))


def novel_rerun_reading(ranking: pd.DataFrame, tables: dict, rules=("gravity", "cosine")) -> str:
    """Where the novel rules land on the reruns, per protocol: rank among the rules, mean with CI,
    and the verdict against the protocol's top (``tables``: ``{protocol: (inclusions, vs_top)}`` of
    ``tuning.rerun_comparisons``)."""
    lines = []
    for rule in rules:
        parts = []
        for p in dict.fromkeys(ranking["protocol"]):
            r = ranking[ranking["protocol"] == p].set_index("rule")
            if rule not in r.index:
                continue
            x = r.loc[rule]
            acc = _pct_ci(x["mean"], x["ci_lo"], x["ci_hi"]) if x["outcome"] == TRAINED else x["outcome"]
            txt = f"{p}: rank {int(x['rank'])} of {len(r)} ({acc})"
            vs = tables.get(p, (None, pd.DataFrame()))[1]
            row = vs[vs["a"] == rule] if len(vs) else vs
            if len(row):
                txt += f", vs the top ({rule_label(str(row['b'].iloc[0]))}) {_vs_top_word(row.iloc[0])}"
            elif int(x["rank"]) == 1:
                txt += ", the top"
            parts.append(txt)
        if parts:
            lines.append(f"**{rule_label(rule)}** — " + "; ".join(parts) + ".")
    return "  \n".join(lines)


__all__ += ["rerun_ranking_reading", "inclusion_reruns_reading", "novel_rerun_reading"]


# ----------------------------------------------------------------------------- notebook 08
PUBLISHED_TOL = 0.005      # 0.5 pp: "within tolerance" of the published min–max range

#: The known differences between our fmnist_2c2d runs and the published (DeepOBS, TensorFlow) ones,
#: from build/deepobs_2c2d_findings.md (section 2, "#" = its row): ``rules`` None = every rule;
#: ``removed_by`` the data protocol that removes it (None: not removed by any).
DEEPOBS_DIFFERENCES = [
    dict(n=1, aspect="input scaling", rules=None, removed_by="deepobs",
         text="our standardised inputs (mean/std) vs DeepOBS's /255 only"),
    dict(n=2, aspect="validation split", rules=None, removed_by="deepobs",
         text="our random 5,000-image validation split (55,000 training images) vs DeepOBS's first 10,000 (50,000)"),
    dict(n=3, aspect="last batch", rules=None, removed_by="deepobs",
         text="our partial last batch vs DeepOBS's 390 full batches per epoch"),
    dict(n=4, aspect="shuffling", rules=None, removed_by=None,
         text="a full permutation per epoch (ours) vs tf.data's buffered shuffle (buffer 20,000)"),
    dict(n=5, aspect="test images", rules=None, removed_by="deepobs",
         text="all 10,000 test images (ours) vs the first 9,984"),
    dict(n=8, aspect="Adam's epsilon", rules=["adam"], removed_by=None,
         text="TF's epsilon added to the uncorrected sqrt(v) (smaller early on) vs torch's after bias correction"),
    dict(n=11, aspect="random streams", rules=None, removed_by=None,
         text="other initial weights and batch orders (torch RNG, our seeds vs TF RNG, seeds 42–51)"),
    dict(n=12, aspect="framework numerics", rules=None, removed_by=None,
         text="PyTorch 2 CPU vs TensorFlow 1 kernels (rounding-level)"),
]


def _epochs_text(epochs) -> str:
    """'1–3, 7' from a sorted list of epochs."""
    e = sorted(int(x) for x in epochs)
    runs, start = [], None
    for i, x in enumerate(e):
        if start is None:
            start = x
        if i == len(e) - 1 or e[i + 1] != x + 1:
            runs.append(f"{start}" if start == x else f"{start}–{x}")
            start = None
    return ", ".join(runs)


def _epoch_word(text: str) -> str:
    return "epochs" if ("," in text or "–" in text) else "epoch"


def published_position(table: pd.DataFrame, tol: float = PUBLISHED_TOL) -> pd.Series:
    """Per row of :func:`optreport.report.tables.published_comparison`: where our mean lies relative to
    the published min–max: "inside", "near" (outside by at most ``tol``), "below", "above", or
    "no published" (no published number at that epoch)."""
    m, lo, hi = (table[c].astype(float) for c in ("test_acc", "published_min", "published_max"))
    out = pd.Series("no published", index=table.index, dtype=object)
    has = lo.notna() & hi.notna() & m.notna()
    out[has & (m >= lo) & (m <= hi)] = "inside"
    out[has & (m < lo)] = "below"
    out[has & (m > hi)] = "above"
    out[has & (((m < lo) & (lo - m <= tol)) | ((m > hi) & (m - hi <= tol)))] = "near"
    return out


def candidate_reasons(rule: str, protocol: str = "deepobs") -> list[str]:
    """The known differences (:data:`DEEPOBS_DIFFERENCES`) that still apply to ``rule``'s runs under
    data protocol ``protocol``."""
    return [f"{d['aspect']} ({d['text']})" for d in DEEPOBS_DIFFERENCES
            if (d["rules"] is None or rule in d["rules"]) and d["removed_by"] != protocol]


def published_reading(table: pd.DataFrame, *, tol: float = PUBLISHED_TOL, protocol: str = "deepobs") -> str:
    """Markdown: per rule, at how many of our epochs our mean test accuracy lies inside the published
    min–max range, within ``tol`` of it, or outside (below/above, which epochs, by how much), the
    mean gap ours − published, and, where we disagree, the known differences that remain under
    ``protocol`` as candidate reasons, plus what the published range's seed count implies (the
    chance that one more run lands inside the min–max of n runs is (n−1)/(n+1))."""
    if table.empty:
        return "No runs to compare yet."
    pos = published_position(table, tol)
    lines = []
    for rule, g in table.groupby("rule", sort=False):
        p = pos.loc[g.index]
        name = rule_label(rule)
        n_ours = int(g["n_seeds"].min())
        if (p == "no published").all():
            last = g.sort_values("epoch").iloc[-1]
            lines.append(f"- **{name}**: no published result to compare with; ours reaches {last.test_acc:.1%} "
                         f"at epoch {int(last.epoch)} (mean of {n_ours} seeds).")
            continue
        c = g[p != "no published"]
        pc = p[p != "no published"]
        n = len(c)
        gap = 100 * (c["test_acc"] - c["published_test_acc"])
        counts = {k: int((pc == k).sum()) for k in ("inside", "near", "below", "above")}
        n_pub = int(c["published_n_seeds"].min())
        text = (f"- **{name}** (ours {n_ours} seeds, published {n_pub}): our mean is inside the published "
                f"min–max at {counts['inside']} of {n} epoch{'s' if n != 1 else ''}")
        if counts["near"]:
            near = _epochs_text(c.epoch[pc == "near"])
            text += f", within {100 * tol:.1f} pp of it at {counts['near']} more ({_epoch_word(near)} {near})"
        for side in ("below", "above"):
            if counts[side]:
                rows = c[pc == side]
                dist = 100 * ((rows["published_min"] - rows["test_acc"]) if side == "below"
                              else (rows["test_acc"] - rows["published_max"]))
                text += (f"; {side} it by more than {100 * tol:.1f} pp at {counts[side]} "
                         f"({_epoch_word(_epochs_text(rows.epoch))} {_epochs_text(rows.epoch)}, "
                         f"by up to {dist.max():.1f} pp)")
        text += f". Mean gap ours − published over these epochs: {gap.mean():+.2f} pp"
        text += f" (last common epoch {int(c.epoch.max())}: {gap.iloc[int(np.argmax(c.epoch.to_numpy()))]:+.2f} pp)."
        agree = counts["below"] + counts["above"] == 0
        if agree:
            text += f" **Agrees** (inside or within {100 * tol:.1f} pp at every epoch)."
        else:
            reasons = candidate_reasons(rule, protocol)
            cover = (n_pub - 1) / (n_pub + 1)
            text += (f" **Disagrees** at {counts['below'] + counts['above']} epoch(s). Candidate reasons (known "
                     f"differences that remain): {'; '.join(reasons)}. Also, the published range is the min–max of "
                     f"only {n_pub} runs, which a further run falls inside with probability only "
                     f"{n_pub - 1}/{n_pub + 1} = {cover:.0%}.")
        lines.append(text)
    return "\n".join(lines)


__all__ += ["PUBLISHED_TOL", "DEEPOBS_DIFFERENCES", "published_position", "candidate_reasons", "published_reading"]


# ----------------------------------------------------------------------------- notebook 04: epochs

SPREAD_DISTURBED = 1.5   # a rule's slowest run mean over its fastest: above this its runs shared the machine


def epoch_cost_reading(e: pd.DataFrame, bench: pd.DataFrame) -> str:
    """Notebook 04's epoch times in words (``e``: tables.epoch_cost indexed by rule; ``bench``: the
    step microbenchmark indexed by rule): the fastest observed epoch per rule (the least disturbed),
    Adam against SGD there and in the microbenchmark, and which rules' runs were disturbed by other
    work on the machine (``run_spread`` above :data:`SPREAD_DISTURBED`)."""
    fast = e["fastest_s"]
    text = (f"Fastest observed epoch: {fast.min():.2f} s ({rule_label(fast.idxmin())}) to {fast.max():.2f} s "
            f"({rule_label(fast.idxmax())}); the optimizer step is {e['step_share'].min():.0%}–"
            f"{e['step_share'].max():.0%} of an epoch. ")
    slow = e.iloc[0:0]
    if "disturbance" in e.columns:
        med = float(e["disturbance"].median())
        slow = e[e["disturbance"] > SPREAD_DISTURBED * med]
        if len(slow):
            text += ("Even the fastest epochs of " + ", ".join(
                f"{rule_label(r)} ({v:.1f}× what the microbenchmark predicts, against a median {med:.1f}×)"
                for r, v in slow["disturbance"].items())
                + " were slowed: all of their runs trained beside other work, so their times (and ratios to "
                "them) say nothing about the rule. ")
    if "adam" in e.index and "sgd" in e.index:
        micro = bench.loc["adam", "total_us"] / bench.loc["sgd", "total_us"]
        if {"adam", "sgd"} & set(slow.index):
            text += ("Adam against SGD per epoch cannot be read from these runs; the microbenchmark gives "
                     f"{micro:.2f}×. ")
        else:
            text += (f"Adam's fastest epoch takes {e.loc['adam', 'epoch_vs_sgd']:.2f}× SGD's "
                     f"({fast['adam']:.2f} s vs {fast['sgd']:.2f} s), against {micro:.2f}× in the microbenchmark. ")
    disturbed = e[e["run_spread"] > SPREAD_DISTURBED]
    if len(disturbed):
        text += ("The mean epoch times of " + ", ".join(
            f"{rule_label(r)} (slowest run {v:.1f}× its fastest)" for r, v in disturbed["run_spread"].items())
            + " are inflated: those runs trained beside other work on this machine, so only the fastest epochs "
            "compare rules; `make bench` measures them on a quiet machine.")
    else:
        text += "Every rule's runs took about the same time, so the mean times compare rules too."
    return text


def cost_verdict(e: pd.DataFrame, gain: pd.DataFrame) -> str:
    """Notebook 04's verdict: the spread of the fastest epochs, the step's largest share, the state
    memory range, and seed 004's Adam against SGD (``gain``: costs.gain_vs_cost)."""
    fast = e["fastest_s"]
    if "disturbance" in e.columns:       # rules whose every run shared the machine say nothing about speed
        fast = fast[e["disturbance"] <= SPREAD_DISTURBED * float(e["disturbance"].median())]
    return (f"Per epoch (fastest observed, rules timed undisturbed), the rules differ by at most "
            f"{fast.max() / fast.min():.2f}× (cheapest "
            f"{rule_label(fast.idxmin())}, dearest {rule_label(fast.idxmax())}); the optimizer step is at most "
            f"{e['step_share'].max():.0%} of training time, and memory ranges from "
            f"{e['state_bytes_per_param'].min():.0f} to {e['state_bytes_per_param'].max():.1f} bytes per parameter. "
            f"With seed 004's network, Adam costs {gain['epoch_time_ratio'].min():.2f}–"
            f"{gain['epoch_time_ratio'].max():.2f}× SGD's epoch and changes final test accuracy by "
            f"{gain['acc_gain_pp'].min():+.2f} to {gain['acc_gain_pp'].max():+.2f} pp across its two learning rates "
            "(verdict against SGD: " + ", ".join(f"{v} at lr {lr:g}" for lr, v in zip(gain["lr"], gain["acc_verdict"],
                                                                                    strict=True)) + ").")


# ----------------------------------------------------------------------------- notebook 05 (current budget)

def rerun_kendall_sentence(row, alpha: float = 0.05) -> str:
    """One protocol pair's Kendall τ on the reruns (a row of ``tuning.rerun_kendall``), claiming
    agreement (or reversal) only when its p-value is below ``alpha``."""
    n = int(row["n_rules"])
    if not np.isfinite(row["tau"]):
        return f"{row['protocol_1']} vs {row['protocol_2']}: fewer than 2 rules ranked under both; no τ."
    head = f"{row['protocol_1']} vs {row['protocol_2']}: τ = {row['tau']:.2f} over {n} rules ({fmt_p(row['p'])}); "
    if row["p"] < alpha:
        return head + ("the rankings agree more than chance would." if row["tau"] > 0
                       else "the rankings are reversed more than chance would make them.")
    return head + f"not significant at α = {alpha:g}: these {n} rules cannot show whether the two rankings agree."


__all__ += ["rerun_kendall_sentence"]


def step_modes_reading(modes: pd.DataFrame) -> str:
    """What notebook 04's algorithm-vs-implementation table says (``modes`` from
    :func:`optreport.analysis.costs.step_modes_table`): the bytes each algorithm must move, the
    time that takes at the measured bandwidth, how far the eager and compiled steps are above it,
    and which rules compiling helps or slows."""
    m = modes.set_index("rule")
    lo, hi = m["mb_per_step"].idxmin(), m["mb_per_step"].idxmax()
    heavy = [rule_label(r) for r in m.index if m.loc[r, "mb_per_step"] == m.loc[hi, "mb_per_step"]]
    comp, eag = m["compiled_vs_floor"], m["eager_vs_floor"]
    faster = m[m["compiled_vs_eager"] < 1]
    slower = m[m["compiled_vs_eager"] >= 1]
    out = (f"The algorithms must move {m.loc[lo, 'mb_per_step']:.1f} MB per step ({rule_label(lo)}: parameters "
           f"read and written, gradients read) to {m.loc[hi, 'mb_per_step']:.1f} MB ({', '.join(heavy)}: two "
           f"state buffers more); at the {m['bandwidth_gb_s'].iloc[0]:.1f} GB/s measured in the same run that is "
           f"{m['floor_us'].min():.0f}–{m['floor_us'].max():.0f} µs. The compiled steps take "
           f"{comp.min():.1f}× ({rule_label(comp.idxmin())}) to {comp.max():.1f}× ({rule_label(comp.idxmax())}) "
           f"that time and the eager ones {eag.min():.1f}× to {eag.max():.1f}×: the rest is the implementation "
           "(Python and dispatch per step, extra passes over memory), not the algorithm.")
    if len(faster):
        best = faster["compiled_vs_eager"].idxmin()
        out += (f" Compiling makes {len(faster)} of {len(m)} steps faster (most {rule_label(best)}: "
                f"{1 / faster.loc[best, 'compiled_vs_eager']:.1f}× faster)")
        if len(slower):
            out += (", and " + ", ".join(f"{rule_label(r)} ({slower.loc[r, 'compiled_vs_eager']:.2f}× the eager time)"
                                         for r in slower.index) + " slower")
        out += "."
    else:
        out += " Compiling makes no step faster here."
    return out


# ----------------------------------------------------------------------------- README: notebooks 05 and 08

def _vs_top_of(vs_top: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The rows of ``05_vs_top`` that judge ``protocol``'s rules against its top."""
    if not len(vs_top):
        return vs_top
    return vs_top[vs_top["family"].astype(str).str.endswith(f"({protocol})")]


def tuning_lead(ranking: pd.DataFrame, vs_top: pd.DataFrame, protocols: dict | None = None) -> str:
    """The bold first sentence of :func:`tuning_answer`: between the first and the last protocol of
    ``ranking`` (fixed grid and full tuning in notebook 05), how many rules are shown worse than the
    protocol's top and the largest gap to it (mean over paired seeds, rules that trained), then the
    rules shown worse under the first protocol and not under the last. Verdicts only: a rule not
    shown worse is not claimed equal to the top."""
    protocols = protocols or {}
    ps = list(dict.fromkeys(ranking["protocol"]))
    first, last = ps[0], ps[-1]
    stats = {}
    for p in (first, last):
        r, v = ranking[ranking["protocol"] == p], _vs_top_of(vs_top, p)
        worse = list(v.loc[v["verdict"] == "worse", "a"]) if len(v) else []
        gaps = (pd.to_numeric(v["diff_pp"], errors="coerce").dropna() if len(v) and "diff_pp" in v
                else pd.Series(dtype=float))
        stats[p] = dict(worse=worse, n=len(r) - 1, gap=-float(gaps.min()) if len(gaps) else None,
                        rules=set(r["rule"]))
    if first == last:
        s = stats[first]
        return f"**Under {first}, {len(s['worse'])} of {s['n']} rules are shown worse than the top.**"
    k0, kl = len(stats[first]["worse"]), len(stats[last]["worse"])
    head = ("Tuning closes gaps" if kl < k0 else "Tuning opens gaps" if kl > k0
            else "Tuning does not change how many rules trail the top")

    def where(p):
        return f"under {p}" + (f" ({protocols[p]})" if p in protocols else "")

    text = (f"**{head}: {k0} of {stats[first]['n']} rules are shown worse than the top {where(first)}, "
            f"{kl} of {stats[last]['n']} {where(last)}")
    if stats[first]["gap"] is not None and stats[last]["gap"] is not None:
        text += (f"; the largest gap to the top is {stats[first]['gap']:.2f} pp under {first} and "
                 f"{stats[last]['gap']:.2f} pp under {last}")
    text += ".**"
    moved = [r for r in stats[first]["worse"] if r in stats[last]["rules"] and r not in stats[last]["worse"]]
    if moved:
        text += (f" {_rules_text(moved)} {'is' if len(moved) == 1 else 'are'} worse than the top under {first} "
                 f"but not shown worse under {last}.")
    return text


def tuning_answer(ranking: pd.DataFrame, vs_top: pd.DataFrame, kendall: pd.DataFrame,
                  inclusion: pd.DataFrame | None = None, protocols: dict | None = None) -> str:
    """The README's answer to "how does the tuning protocol change the ranking?" from notebook 05's
    rerun tables (``05_ranking``, ``05_vs_top``, ``05_kendall``, ``05_inclusion_pairs``): the lead of
    :func:`tuning_lead` (first vs last protocol), then per protocol
    the top rule with its interval and how the other rules stand against it (counts of verdicts), the
    Kendall τ of every two protocols' rankings (agreement claimed only at p < 0.05), and Choi et al.'s
    inclusions per protocol (holds / violated / undecided)."""
    protocols = protocols or {}
    parts = [tuning_lead(ranking, vs_top, protocols)]
    for p in dict.fromkeys(ranking["protocol"]):
        r = ranking[ranking["protocol"] == p].sort_values("rank")
        top = r.iloc[0]
        n = int(r["n_seeds"].max())
        v = _vs_top_of(vs_top, p)
        counts = ", ".join(f"{int((v['verdict'] == w).sum())} {w}" for w in VERDICTS if (v["verdict"] == w).any())
        other = v[~v["verdict"].isin(VERDICTS)] if len(v) else v
        if len(other):
            counts += (", " if counts else "") + f"{len(other)} decided by an outcome"
        what = f" ({protocols[p]})" if p in protocols else ""
        parts.append(f"{'Under' if len(parts) == 1 else 'under'} {p}{what} the top is {rule_label(top['rule'])} "
                     f"{_pct_ci(top['mean'], top['ci_lo'], top['ci_hi'])} ({n} seeds), the other {len(r) - 1} "
                     f"rules against it: {counts or 'not compared'}")
    text = parts[0] + " " + "; ".join(parts[1:]) + "."
    if len(kendall):
        taus = []
        for _, k in kendall.iterrows():
            if not np.isfinite(k["tau"]):
                continue
            word = ("agree" if k["tau"] > 0 else "reversed") if k["p"] < 0.05 else "not shown to agree"
            taus.append(f"{k['protocol_1']}–{k['protocol_2']} τ = {k['tau']:.2f} ({fmt_p(k['p'])}, {word})")
        if taus:
            text += " Rankings between protocols (Kendall τ over the rules): " + "; ".join(taus) + "."
    if inclusion is not None and len(inclusion):
        inc = []
        for p, c in inclusion.groupby("protocol", sort=False):
            w = ", ".join(f"{int((c['inclusion'] == x).sum())} {x}" for x in
                          ("holds", "violated", "undecided", "decided by outcome") if (c["inclusion"] == x).any())
            inc.append(f"{p}: {w}")
        text += " Choi et al.'s inclusions (general rule not worse than its special case): " + "; ".join(inc) + "."
    return text


def published_answer(table: pd.DataFrame, tol: float = PUBLISHED_TOL) -> str:
    """The README's answer to "do our numbers agree with a published benchmark?" from notebook 08's
    ``08_cnn_vs_published`` table: per rule with published numbers, agrees (our mean inside the
    published min–max, or within ``tol``, at every epoch) or disagrees (at how many epochs, on which
    side, by up to how much), with the mean gap ours − published; the rules without published numbers
    by their last-epoch accuracy."""
    if table.empty:
        return "No runs to compare yet."
    pos = published_position(table, tol)
    agree, disagree, unpublished = [], [], []
    agree_names, disagree_names = [], []
    for rule, g in table.groupby("rule", sort=False):
        p = pos.loc[g.index]
        has = p != "no published"
        name = rule_label(rule)
        if not has.any():
            last = g.sort_values("epoch").iloc[-1]
            unpublished.append(f"{name} {last.test_acc:.1%}")
            continue
        c, pc = g[has], p[has]
        gap = 100 * (c["test_acc"] - c["published_test_acc"]).mean()
        out = pc.isin(["below", "above"])
        if not out.any():
            agree.append(f"{name} (mean gap {gap:+.2f} pp over {len(c)} epochs)")
            agree_names.append(rule)
            continue
        disagree_names.append(rule)
        sides = " and ".join(s for s in ("below", "above") if (pc == s).any())
        dist = np.maximum(c["published_min"] - c["test_acc"], c["test_acc"] - c["published_max"])[out]
        disagree.append(f"{name} ({sides} at {int(out.sum())} of {len(c)} epochs, by up to {100 * dist.max():.1f} pp; "
                        f"mean gap {gap:+.2f} pp)")
    lo, hi = int(table["n_seeds"].min()), int(table["n_seeds"].max())
    seeds = f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} seeds per rule"
    last = int(table["epoch"].max())
    n_pub = len(agree_names) + len(disagree_names)

    def verb(names, one, many):
        return f"{_rules_text(names)} {one if len(names) == 1 else many}"

    rng = f"the published range (±{100 * tol:.1f} pp)"
    if not n_pub:
        lead = "**No rule here has published numbers.**"
    elif not disagree_names:
        lead = f"**Yes: {verb(agree_names, 'stays', 'stay')} within {rng} at every epoch.**"
    elif not agree_names:
        lead = f"**No: {verb(disagree_names, 'leaves', 'leave')} {rng} at some epochs.**"
    else:
        lead = (f"**Partly: {verb(agree_names, 'stays', 'stay')} within {rng} at every epoch; "
                f"{verb(disagree_names, 'does', 'do')} not.**")
    text = lead
    if n_pub:
        text += (f" Our mean test accuracy ({seeds}, {last} epochs) against the published min–max "
                 f"(within {100 * tol:.1f} pp counts as agreeing): ")
        text += "; ".join(x for x in (("agrees: " + ", ".join(agree)) if agree else "",
                                       ("disagrees: " + ", ".join(disagree)) if disagree else "") if x) + "."
    if unpublished:
        text += f" Without published numbers, at epoch {last}: " + ", ".join(unpublished) + "."
    return text


__all__ += ["tuning_lead", "tuning_answer", "published_answer"]
