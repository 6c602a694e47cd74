"""The embedded ESG dataset as the predict API takes it, for the benchmark scripts (run from
the repository root: `sys.path.insert(0, "bench"); from esg_rows import feature_rows`)."""
import csv

DATA = "trainer/data/esg_ratings.csv"
TARGET = "esg_rating"


def value(cell):
    """A CSV cell as JSON: int, float, text, or None when empty."""
    if cell == "":
        return None
    for cast in (int, float):
        try:
            return cast(cell)
        except ValueError:
            pass
    return cell


def feature_rows():
    """(feature names, every row's features in that order), the target left out."""
    with open(DATA, newline="") as f:
        records = list(csv.DictReader(f))
    names = [k for k in records[0] if k != TARGET]
    return names, [[value(r[k]) for k in names] for r in records]
