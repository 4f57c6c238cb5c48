#!/usr/bin/env python3
"""Writes tests/data/compare/stats_cases.json: inputs of the paired statistics of `mlabench compare`
(metrics/paired_stats.h) with the values SciPy, statsmodels and numpy give for them. tests/metrics/test_paired_stats.cpp
checks the C++ functions against this file, so the reference is the libraries, not numbers typed into a test.

  mcnemar      discordant counts (a_only, b_only) -> statsmodels.stats.contingency_tables.mcnemar(exact=True)
               p-value: none discordant, all one way, balanced, small and large n (up to 20,000 pairs)
  bh           p-value vectors -> statsmodels.stats.multitest.multipletests(method='fdr_bh') adjusted p-values:
               ties, p = 1, p = 0, one value, unsorted input
  normal_ppf   probabilities -> scipy.stats.norm.ppf, in all three regions of AS 241 (central, tail, far tail)
  percentile   value vectors and quantiles -> numpy.percentile(method='linear')

Usage: tools/make_compare_cases.py [--out FILE]   (Debian: apt-get install python3-scipy python3-statsmodels and run
it with /usr/bin/python3). Deterministic: numpy.random.default_rng(21) makes the random inputs.
"""
import argparse
import json
import os

import numpy as np
import scipy
import statsmodels
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests


def mcnemar_cases():
    counts = [(0, 0), (0, 1), (1, 0), (0, 5), (7, 0), (3, 3), (1, 9), (10, 4), (25, 31), (40, 12),
              (0, 60), (200, 230), (510, 440), (1200, 1100), (4800, 5200), (9000, 11000), (3, 900), (3, 1500)]
    out = []
    for a_only, b_only in counts:
        # statsmodels' table [[both, a_only], [b_only, neither]]: only the off-diagonal cells enter the test.
        res = mcnemar([[5, a_only], [b_only, 5]], exact=True)
        out.append({"a_only": a_only, "b_only": b_only, "p": float(res.pvalue)})
    return out


def bh_cases(rng):
    vectors = [
        [0.01],
        [1.0, 1.0, 1.0],
        [0.0, 0.5, 1.0],
        [0.04, 0.01, 0.03, 0.02],
        [0.01, 0.01, 0.04, 0.04, 0.2],
        [0.2, 0.001, 0.2, 0.05, 1.0, 0.049, 0.3],
        [0.5, 0.5, 0.5, 0.5],
        [float(v) for v in rng.uniform(0, 0.2, 20)],
    ]
    return [{"p": v, "adjusted": [float(x) for x in multipletests(v, method="fdr_bh")[1]]} for v in vectors]


def ppf_cases():
    ps = [1e-300, 1e-20, 1e-10, 1e-5, 0.001, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.925,
          0.95, 0.975, 0.99, 0.999, 1 - 1e-10]
    return [{"p": p, "x": float(norm.ppf(p))} for p in ps]


def percentile_cases(rng):
    out = []
    for values, qs in [([3.0], [0.0, 0.5, 1.0]), ([1.0, 2.0], [0.25, 0.5, 0.75]),
                       ([float(v) for v in rng.normal(0, 1, 11)], [0.0, 0.025, 0.5, 0.975, 1.0]),
                       ([float(v) for v in rng.integers(-3, 4, 200) / 7], [0.025, 0.3, 0.975])]:
        out.append({"values": values, "q": qs,
                    "percentile": [float(np.percentile(values, 100 * q, method="linear")) for q in qs]})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "compare", "stats_cases.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(21)
    doc = {
        "made_by": "tools/make_compare_cases.py",
        "versions": {"scipy": scipy.__version__, "statsmodels": statsmodels.__version__, "numpy": np.__version__},
        "mcnemar": mcnemar_cases(),
        "bh": bh_cases(rng),
        "normal_ppf": ppf_cases(),
        "percentile": percentile_cases(rng),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        # repr-exact floats: json writes the shortest string that reads back as the same double.
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
