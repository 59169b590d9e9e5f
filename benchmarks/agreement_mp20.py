"""Agreement with pymatgen's XRDCalculator on every row of the shared MP-20 table (1,130
crystals, 112 space groups): positions within 1e-3° and every intensity within 0.5 of the
max-100 scale, with the two-sided check of tests/test_pxrd.py. Development-only: it reads
../shared/data. Writes benchmarks/results/agreement_mp20.json.

Run: `.venv/bin/python benchmarks/agreement_mp20.py`.
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "mp20_test_1130.csv"


def main() -> None:
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT / "tests"))
    from pymatgen.core import Structure
    from test_pxrd import assert_matches_pymatgen

    from xrdcore.storage import atomic_write_json

    csv.field_size_limit(10 ** 9)
    rows = list(csv.DictReader(TABLE.open()))
    failures = []
    for row in rows:
        try:
            assert_matches_pymatgen(Structure.from_str(row["cif"], fmt="cif"))
        except AssertionError as exc:
            failures.append({"material_id": row["material_id"], "error": " ".join(str(exc).split())[:300]})
    result = {"table": "shared/data/mp20_test_1130.csv", "structures": len(rows),
              "space_groups": len({r["spacegroup.number"] for r in rows}), "failures": failures,
              "criterion": "positions within 1e-3 deg, every intensity within 0.5 (max 100), both ways"}
    atomic_write_json(ROOT / "benchmarks" / "results" / "agreement_mp20.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "failures"} | {"failed": len(failures)}, indent=2))


if __name__ == "__main__":
    main()
