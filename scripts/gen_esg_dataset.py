#!/usr/bin/env python3
"""Generate the synthetic ESG-ratings dataset used by the trainer.

The output is a CSV of fictional companies with environmental, social and
governance indicators and a five-level ``esg_rating`` target (A best .. E
worst). It is built to look and behave like real ratings data:

* 12 numeric columns with realistic ranges, skew and correlations
  (``carbon_intensity`` depends strongly on sector, ``employees`` on revenue,
  European companies use more renewable energy, and so on);
* 3 categorical columns: ``sector`` (8 values), ``region`` (5 values) and
  ``market_cap_tier`` (Small/Mid/Large);
* about 3% blank cells in six columns, one of them categorical (``region``);
* the rating is a noisy function of a latent score that combines several
  features non-linearly, judges carbon intensity relative to the sector's
  norm and adds sector and region offsets, so a reasonable model scores far
  above chance but cannot be perfect.

Determinism: only the standard library is used, normal deviates are drawn
with an explicit Box-Muller transform on top of ``random.Random(seed).random()``
and every number is rounded to a fixed number of decimals, so the same
arguments give a byte-identical file on any platform and Python 3 version
(barring a last-ulp difference in the C math library landing exactly on a
rounding boundary). Default output md5: 1a00d4ef014639c4ac55deefdff8f4d1.

Usage:
    python3 scripts/gen_esg_dataset.py [--out trainer/data/esg_ratings.csv]
                                       [--rows 2000] [--seed 42]
"""

import argparse
import csv
import math
import os
import random

RATINGS = ["A", "B", "C", "D", "E"]
# Share of rows per rating (best to worst); cut-offs are quantiles of the score.
RATING_SHARES = [0.14, 0.24, 0.27, 0.21, 0.14]

# sector: (weight, carbon base tCO2e/$M, water base k m3/$M, employees per $M,
#          controversy base 0-10, latent sector offset on the score)
SECTORS = {
    "Energy":      (0.11, 520.0, 9.0, 0.9, 4.2, -0.45),
    "Utilities":   (0.09, 780.0, 14.0, 1.6, 3.2, -0.25),
    "Materials":   (0.12, 430.0, 7.5, 2.2, 3.6, -0.30),
    "Industrials": (0.16, 120.0, 2.4, 3.8, 2.6, 0.00),
    "Consumer":    (0.17, 55.0, 1.6, 5.5, 2.8, 0.05),
    "Healthcare":  (0.11, 28.0, 1.1, 3.1, 2.4, 0.20),
    "Financials":  (0.12, 9.0, 0.2, 2.0, 2.2, 0.15),
    "Technology":  (0.12, 18.0, 0.6, 2.6, 2.0, 0.35),
}

# region: (weight, renewable shift, board-independence shift, disclosure shift,
#          gender-diversity shift, latent region offset)
REGIONS = {
    "Europe":               (0.27, 14.0, 8.0, 9.0, 6.0, 0.35),
    "North America":        (0.30, 2.0, 10.0, 4.0, 3.0, 0.10),
    "Asia Pacific":         (0.25, -4.0, -6.0, -3.0, -6.0, -0.15),
    "Latin America":        (0.10, 10.0, -4.0, -5.0, -1.0, -0.10),
    "Middle East & Africa": (0.08, -10.0, -8.0, -8.0, -9.0, -0.40),
}

# tier: (weight, log-revenue mean, log-revenue sd, mean years public, disclosure shift)
TIERS = {
    "Small": (0.40, math.log(350.0), 0.7, 9.0, -12.0),
    "Mid":   (0.35, math.log(2500.0), 0.6, 18.0, 0.0),
    "Large": (0.25, math.log(20000.0), 0.7, 35.0, 10.0),
}

# column -> number of decimals (0 = integer)
NUMERIC_COLUMNS = [
    ("carbon_intensity", 1),
    ("renewable_energy_pct", 1),
    ("water_usage", 2),
    ("waste_recycling_pct", 1),
    ("employee_turnover_pct", 1),
    ("gender_diversity_pct", 1),
    ("board_independence_pct", 1),
    ("controversy_score", 1),
    ("esg_disclosure_score", 1),
    ("revenue_musd", 1),
    ("employees", 0),
    ("years_public", 0),
]
CATEGORICAL_COLUMNS = ["sector", "region", "market_cap_tier"]
TARGET = "esg_rating"
COLUMNS = (
    [name for name, _ in NUMERIC_COLUMNS[:9]]
    + CATEGORICAL_COLUMNS
    + [name for name, _ in NUMERIC_COLUMNS[9:]]
    + [TARGET]
)
DECIMALS = dict(NUMERIC_COLUMNS)

# Probability that a cell is left blank, per column (others are always filled).
MISSING_RATE = {
    "water_usage": 0.04,
    "waste_recycling_pct": 0.035,
    "employee_turnover_pct": 0.03,
    "gender_diversity_pct": 0.025,
    "esg_disclosure_score": 0.03,
    "region": 0.025,
}

# Standard deviation of the noise added to the latent score (controls how
# learnable the rating is).
SCORE_NOISE = 0.35


class Sampler:
    """Thin, version-stable wrapper around ``random.Random``."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.rng.random()

    def normal(self, mean=0.0, sd=1.0):
        # Box-Muller; 1 - random() lies in (0, 1] so log() is safe.
        u1 = 1.0 - self.rng.random()
        u2 = self.rng.random()
        return mean + sd * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def lognormal(self, log_mean, log_sd):
        return math.exp(self.normal(log_mean, log_sd))

    def choice(self, weighted):
        """Pick a key from a dict whose values start with a weight."""
        total = sum(v[0] for v in weighted.values())
        x = self.rng.random() * total
        acc = 0.0
        for key, value in weighted.items():
            acc += value[0]
            if x < acc:
                return key
        return key  # floating-point edge case: last key

    def bernoulli(self, p):
        return self.rng.random() < p


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def make_company(s):
    """Draw one company; returns (row dict with true values, latent score)."""
    sector = s.choice(SECTORS)
    region = s.choice(REGIONS)
    tier = s.choice(TIERS)
    _, carbon_base, water_base, emp_per_musd, controversy_base, sector_off = SECTORS[sector]
    _, ren_shift, board_shift, discl_shift, gender_shift, region_off = REGIONS[region]
    _, rev_mu, rev_sd, years_mean, tier_discl = TIERS[tier]

    # Hidden "management quality": drives many indicators at once, so the
    # features are correlated with each other and with the rating.
    quality = s.normal()

    revenue = s.lognormal(rev_mu, rev_sd)
    employees = max(5, round(revenue * emp_per_musd * s.lognormal(0.0, 0.45)))
    years_public = int(clamp(round(s.lognormal(math.log(years_mean), 0.6)), 1, 120))

    renewable = clamp(
        s.normal(28.0 + ren_shift + 9.0 * quality, 16.0), 0.0, 100.0)
    carbon = carbon_base * s.lognormal(-0.18 * quality - 0.006 * (renewable - 30.0), 0.45)
    water = water_base * s.lognormal(-0.10 * quality, 0.55)
    recycling = clamp(s.normal(52.0 + 8.0 * quality, 17.0), 0.0, 100.0)
    turnover = clamp(
        s.lognormal(math.log(14.0) - 0.12 * quality + (0.15 if sector == "Consumer" else 0.0), 0.35),
        1.0, 80.0)
    gender = clamp(
        s.normal(33.0 + gender_shift + 4.0 * quality
                 + (-7.0 if sector in ("Energy", "Materials", "Industrials") else 0.0)
                 + (6.0 if sector == "Healthcare" else 0.0), 9.0),
        2.0, 75.0)
    board = clamp(s.normal(68.0 + board_shift + 6.0 * quality, 12.0), 10.0, 100.0)
    controversy = clamp(
        s.normal(controversy_base + 0.35 * math.log(revenue / 1000.0) - 0.7 * quality, 1.4),
        0.0, 10.0)
    disclosure = clamp(
        s.normal(55.0 + discl_shift + tier_discl + 7.0 * quality
                 + 1.5 * math.log(years_public), 12.0),
        0.0, 100.0)

    # Latent ESG score. Environmental pillar judges carbon relative to the
    # sector norm; social and governance pillars have threshold effects.
    env = (
        -0.55 * math.log(carbon / carbon_base)
        + 0.018 * (renewable - 30.0)
        + 0.012 * (recycling - 50.0)
        - 0.20 * math.log(water / water_base)
    )
    soc = (
        -1.1 * sigmoid((turnover - 22.0) / 4.0)
        + 0.030 * (gender - 30.0)
        - 0.30 * max(0.0, controversy - 4.0)
    )
    gov = (
        0.022 * (board - 65.0)
        + 0.020 * (disclosure - 55.0)
        + (0.25 if board >= 75.0 and disclosure >= 60.0 else 0.0)
    )
    score = env + soc + gov + sector_off + region_off + 0.05 * math.log(revenue / 1000.0)
    score += s.normal(0.0, SCORE_NOISE)

    row = {
        "carbon_intensity": carbon,
        "renewable_energy_pct": renewable,
        "water_usage": water,
        "waste_recycling_pct": recycling,
        "employee_turnover_pct": turnover,
        "gender_diversity_pct": gender,
        "board_independence_pct": board,
        "controversy_score": controversy,
        "esg_disclosure_score": disclosure,
        "sector": sector,
        "region": region,
        "market_cap_tier": tier,
        "revenue_musd": revenue,
        "employees": employees,
        "years_public": years_public,
    }
    return row, score


def assign_ratings(scores):
    """Map scores to A..E by quantile cut-offs (highest scores get A)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ratings = [None] * len(scores)
    start = 0
    for k, share in enumerate(RATING_SHARES):
        end = len(scores) if k == len(RATINGS) - 1 else start + round(share * len(scores))
        for i in order[start:end]:
            ratings[i] = RATINGS[k]
        start = end
    return ratings


def format_cell(column, value):
    if isinstance(value, str):
        return value
    decimals = DECIMALS[column]
    if decimals == 0:
        return str(int(round(value)))
    return f"{value:.{decimals}f}"


def generate(rows, seed):
    """Return the dataset as a list of lists of strings (header first)."""
    s = Sampler(seed)
    companies, scores = [], []
    for _ in range(rows):
        row, score = make_company(s)
        companies.append(row)
        scores.append(score)
    ratings = assign_ratings(scores)

    # Missing cells are drawn after all values so that changing the
    # missingness rates does not change the underlying companies.
    miss = Sampler(seed + 1_000_003)
    table = [COLUMNS]
    for row, rating in zip(companies, ratings):
        cells = []
        for column in COLUMNS[:-1]:
            rate = MISSING_RATE.get(column, 0.0)
            if rate and miss.bernoulli(rate):
                cells.append("")
            else:
                cells.append(format_cell(column, row[column]))
        cells.append(rating)
        table.append(cells)
    return table


def main():
    parser = argparse.ArgumentParser(description="Generate the synthetic ESG-ratings CSV.")
    parser.add_argument("--out", default="trainer/data/esg_ratings.csv")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.rows < len(RATINGS):
        parser.error(f"--rows must be at least {len(RATINGS)}")

    table = generate(args.rows, args.seed)
    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(table)

    counts = {r: 0 for r in RATINGS}
    for cells in table[1:]:
        counts[cells[-1]] += 1
    print(f"wrote {args.out}: {args.rows} rows, {len(COLUMNS)} columns; "
          + ", ".join(f"{r}={n}" for r, n in counts.items()))


if __name__ == "__main__":
    main()
