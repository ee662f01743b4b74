"""Command line: `python -m training --config attrition --trials 30`."""

from __future__ import annotations

import argparse
import logging
import sys

from registry_scripts.access import configure_mlflow
from registry_scripts.cli import fail
from training.config import available_configs, load_config
from training.errors import TrainingError
from training.job import train


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, log and register an explainable classifier for one use case.",
    )
    parser.add_argument(
        "--config",
        default="attrition",
        help=f"shipped config ({', '.join(available_configs())}) or a YAML path (default: attrition)",
    )
    parser.add_argument(
        "--trials",
        type=_non_negative_int,
        default=0,
        help="search trials; 0 uses the config's search.trials (default: 0)",
    )
    parser.add_argument(
        "--cv-folds",
        type=_non_negative_int,
        default=0,
        help="CV folds; 0 uses the config's search.cv_folds (default: 0)",
    )
    args = parser.parse_args(argv)
    if args.cv_folds == 1:
        parser.error("--cv-folds must be 0 (the config's) or at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the training job; one clear line and exit status 2 on a config or data error."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    configure_mlflow()
    try:
        config = load_config(args.config)
        outcome = train(config, trials=args.trials or None, cv_folds=args.cv_folds or None)
    except TrainingError as exc:
        return fail(str(exc))
    print(
        f"run {outcome.run_id}: registered {outcome.model_name} version {outcome.version} "
        f"(holdout ROC AUC {outcome.metrics['holdout_roc_auc']:.4f}, threshold {outcome.threshold:.4f})"
    )
    if not outcome.baseline.beaten:
        print(
            f"warning: {outcome.baseline.describe()}; the version is tagged beats_baseline=false and the "
            "beats-baseline gate refuses it for Production (--force overrides, recorded)"
        )
        return 0
    print(
        f"next: python -m registry_scripts promote --model {outcome.model_name} "
        f"--version {outcome.version} --to production"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
