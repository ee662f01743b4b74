"""Score and explain rows of a CSV with a registered model: `python -m serving.score`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from registry_scripts.access import configure_mlflow, model_uri
from registry_scripts.cli import fail


def explain_lines(result: pd.Series, row: pd.Series, id_column: str | None) -> str:
    """One entity's score, label and strongest drivers, with the values that drive them."""
    who = f"{id_column} {result[id_column]}" if id_column else f"row {result.name}"
    head = (
        f"{who}: score {result['score']:.3f} -> {result['prediction']} (threshold {result['threshold']:.3f})"
    )
    drivers = sorted(result["contributions"].items(), key=lambda item: -abs(item[1]))
    parts = [
        f"{name}={row.get(name)} {'raises' if value > 0 else 'lowers'} the log-odds by {abs(value):.2f}"
        for name, value in drivers
    ]
    return head + ("\n    " + "; ".join(parts) if parts else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m serving.score", description=__doc__)
    parser.add_argument("--model", required=True, help="registered model name")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--alias", default=None, help="alias to load (default: production)")
    where.add_argument(
        "--stage", default=None, choices=["Staging", "Production"], help="stage to load instead"
    )
    parser.add_argument("--input", required=True, type=Path, help="CSV with the model's input columns")
    parser.add_argument("--limit", type=int, default=5, help="score the first N rows (default 5; 0: all)")
    parser.add_argument("--top-k", type=int, default=3, help="drivers shown per row (default 3)")
    parser.add_argument(
        "--output", type=Path, default=None, help="write the results as JSON lines instead of printing them"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Load the model by URI, score the rows and print their explanations."""
    args = parse_args(argv)
    configure_mlflow()
    if args.limit < 0 or args.top_k < 0:
        return fail("--limit and --top-k must be >= 0")
    uri = model_uri(args.model, alias=args.alias, stage=args.stage)
    try:
        rows = pd.read_csv(args.input, nrows=args.limit or None)
    except (OSError, ValueError) as exc:
        return fail(f"--input: cannot read {args.input}: {exc}")
    try:
        model = mlflow.pyfunc.load_model(uri)
        schema = model.metadata.get_input_schema()
        columns = [c for c in schema.input_names() if c in rows.columns] if schema else list(rows.columns)
        result = model.predict(rows[columns], params={"top_k": args.top_k})
    except MlflowException as exc:
        return fail(f"{uri}: {exc.message}")
    id_column = next(
        (
            c
            for c in result.columns
            if c
            not in {"score", "prediction", "threshold", "base_value", "unseen_categories", "contributions"}
        ),
        None,
    )
    info = model.metadata
    if args.output:
        result.to_json(args.output, orient="records", lines=True)
        print(f"{uri} (run {info.run_id}): {len(result)} rows scored into {args.output}")
        return 0
    print(f"{uri} (run {info.run_id}):")
    for (_, scored), (_, row) in zip(result.iterrows(), rows.iterrows(), strict=True):
        print("  " + explain_lines(scored, row, id_column))
    return 0


if __name__ == "__main__":
    sys.exit(main())
