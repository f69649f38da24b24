"""Reads Keyfold epoch archives with pyarrow (a real Parquet client) and checks the schema of
SPEC.md section 8, the outcome values and the total row count.

Usage: check_archives.py DATA_DIR EXPECTED_ROWS
"""
import glob
import sys

import pyarrow as pa
import pyarrow.parquet as pq

EXPECTED = {
    "position": pa.uint64(),
    "mutation_id": pa.binary(32),
    "key_index": pa.binary(32),
    "key": pa.binary(),
    "value": pa.binary(),
    "tombstone": pa.bool_(),
    "owner_signature": pa.binary(),
    "expected_version": pa.uint64(),
    "new_version": pa.uint64(),
    "outcome": pa.string(),
    "reason": pa.string(),
    "leaf_hash": pa.binary(32),
}


def main() -> None:
    data_dir, expected_rows = sys.argv[1], int(sys.argv[2])
    files = sorted(glob.glob(f"{data_dir}/archives/epoch-*.parquet"))
    if not files:
        sys.exit(f"no archives under {data_dir}/archives")
    total = 0
    for path in files:
        table = pq.read_table(path)
        types = {field.name: field.type for field in table.schema}
        if types != EXPECTED:
            sys.exit(f"{path}: schema {types} differs from {EXPECTED}")
        outcomes = set(table.column("outcome").to_pylist())
        if not outcomes <= {"applied", "rejected", "duplicate"}:
            sys.exit(f"{path}: unexpected outcomes {outcomes}")
        positions = table.column("position").to_pylist()
        if positions != sorted(set(positions)):
            sys.exit(f"{path}: positions are not strictly increasing")
        total += table.num_rows
    if total != expected_rows:
        sys.exit(f"{total} rows in {len(files)} archives, expected {expected_rows}")
    print(f"pyarrow {pa.__version__}: {len(files)} archives, {total} rows, schema and outcomes as specified")


if __name__ == "__main__":
    main()
