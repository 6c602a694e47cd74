#!/usr/bin/env python3
"""Export scikit-learn's bundled toy datasets as CSV test fixtures.

Writes four files (no network access needed: the data ships inside the
scikit-learn package):

  iris.csv           4 features,  target ``species``   (setosa/versicolor/virginica)
  wine.csv          13 features,  target ``class``     (integers 0..2)
  breast_cancer.csv 30 features,  target ``diagnosis`` (malignant/benign)
  diabetes.csv      10 features,  target ``progression`` (raw, unscaled)

Feature names are converted to simple snake_case (units in parentheses are
dropped, e.g. ``sepal length (cm)`` -> ``sepal_length``). Numbers are written
with up to 10 significant digits, so values round-trip exactly as they appear
in scikit-learn's own data files (``5.1``, ``0.1184``, ``151``).

Usage:
    pip install scikit-learn
    python3 scripts/export_sklearn_fixtures.py [--out-dir tests/fixtures]
"""

import argparse
import csv
import os
import re

from sklearn import datasets


def snake_case(name):
    """'sepal length (cm)' -> 'sepal_length'; 'od280/od315_of_x' -> 'od280_od315_of_x'."""
    name = re.sub(r"\(.*?\)", "", name)
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip().lower())
    return name.strip("_")


def fmt(value):
    """Format a number compactly (10 significant digits, no trailing '.0')."""
    return format(float(value), ".10g")


def write_csv(path, feature_names, X, target_name, y):
    header = [snake_case(n) for n in feature_names] + [target_name]
    assert len(set(header)) == len(header), f"duplicate column names in {path}"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for row, label in zip(X, y):
            writer.writerow([fmt(v) for v in row] + [label])
    print(f"wrote {path}: {len(y)} rows, {len(header)} columns")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="tests/fixtures")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    iris = datasets.load_iris()
    write_csv(
        os.path.join(args.out_dir, "iris.csv"),
        iris.feature_names, iris.data,
        "species", [iris.target_names[t] for t in iris.target],
    )

    wine = datasets.load_wine()
    write_csv(
        os.path.join(args.out_dir, "wine.csv"),
        wine.feature_names, wine.data,
        "class", [int(t) for t in wine.target],
    )

    bc = datasets.load_breast_cancer()
    write_csv(
        os.path.join(args.out_dir, "breast_cancer.csv"),
        bc.feature_names, bc.data,
        "diagnosis", [bc.target_names[t] for t in bc.target],
    )

    diabetes = datasets.load_diabetes(scaled=False)
    write_csv(
        os.path.join(args.out_dir, "diabetes.csv"),
        diabetes.feature_names, diabetes.data,
        "progression", [fmt(t) for t in diabetes.target],
    )


if __name__ == "__main__":
    main()
