"""Plain-Python references for the two rules of seed 000 (no torch ops).

Written from the formulas in SEEDS.md, independently of ``optimizers.py``: a
parameter is a flat list of floats plus its shape; a row is a slice along the
first dimension.  Used by ``test_optimizers.py``.
"""

import math


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _rows(shape, per):
    """Split 0..numel into the index ranges the cosine is taken over."""
    n = _numel(shape)
    if per == "tensor" or len(shape) <= 1:  # a 1-D parameter is one vector
        return [(0, n)]
    width = n // shape[0]
    return [(r * width, (r + 1) * width) for r in range(shape[0])]


class GravityReference:
    """S = 0 once; S += sum over the group of sum g^2; k = sqrt(1/lr^2 + S); p -= g / k."""

    def __init__(self, groups):
        # groups: list of dict(params=[list of floats], lr=, accumulate=, weight_decay=)
        self.groups = groups
        self.S = [0.0 for _ in groups]
        self.k = [1.0 / g["lr"] for g in groups]

    def step(self, grads):
        """grads: per group, per parameter, a list of floats (same layout as params)."""
        for gi, group in enumerate(self.groups):
            wd = group.get("weight_decay", 0.0)
            g_eff = [[gv + wd * pv for gv, pv in zip(g, p)] for g, p in zip(grads[gi], group["params"])]
            total = 0.0
            for g in g_eff:
                for v in g:
                    total += v * v
            self.S[gi] = (self.S[gi] if group["accumulate"] else 0.0) + total
            k = math.sqrt(1.0 / group["lr"] ** 2 + self.S[gi])
            self.k[gi] = k
            for p, g in zip(group["params"], g_eff):
                for i in range(len(p)):
                    p[i] = p[i] - g[i] / k


class CosineReference:
    """Per row: cos = m.g / (|m||g|) (0 if a norm is 0); m = C cos/2 m + lr g; p -= m."""

    def __init__(self, groups):
        # groups: list of dict(params=[list of floats], shapes=[tuple], lr=, C=, per=, weight_decay=)
        self.groups = groups
        self.m = [[[0.0] * len(p) for p in g["params"]] for g in groups]
        self.cos = [[None for _ in g["params"]] for g in groups]

    def step(self, grads):
        for gi, group in enumerate(self.groups):
            lr, C, per = group["lr"], group["C"], group["per"]
            wd = group.get("weight_decay", 0.0)
            for pi, (p, shape) in enumerate(zip(group["params"], group["shapes"])):
                m = self.m[gi][pi]
                g = [gv + wd * pv for gv, pv in zip(grads[gi][pi], p)]
                cosines = []
                for start, stop in _rows(shape, per):
                    dot = sum(m[i] * g[i] for i in range(start, stop))
                    norm_m = math.sqrt(sum(m[i] * m[i] for i in range(start, stop)))
                    norm_g = math.sqrt(sum(g[i] * g[i] for i in range(start, stop)))
                    cos = dot / (norm_m * norm_g) if norm_m * norm_g > 0 else 0.0
                    cos = min(1.0, max(-1.0, cos))
                    cosines.append(cos)
                    for i in range(start, stop):
                        m[i] = C * (cos / 2) * m[i] + lr * g[i]
                        p[i] = p[i] - m[i]
                self.cos[gi][pi] = cosines
