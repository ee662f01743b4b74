"""Score a file or folder on Spark with a registered version: `python -m serving.batch`.

The version an alias, stage or number names is scored with `mlflow.pyfunc.spark_udf`; the input's
columns are matched to the signature by name. The output (Parquet) holds the input's id, every output
column, the model name and version and the scoring time; it is written beside the destination and
moved into place only once complete. An MLflow run records the job; `--log-store` appends the
predictions to the prediction log (endpoint `batch`), so drift reports cover batch decisions too.
"""

from __future__ import annotations

import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts.access import configure_mlflow
from registry_scripts.cli import fail
from serving.batch.plan import BatchFailed, parse_args, plan_job


def _say(message: str) -> None:
    print(f"batch: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Check, score on Spark, write, move into place, log the run (and the predictions, if asked)."""
    args = parse_args(argv)
    configure_mlflow()
    try:
        job = plan_job(args, MlflowClient())
    except BatchFailed as exc:
        return fail(exc.message)
    try:
        signature = mlflow.models.get_model_info(job.uri).signature
    except MlflowException as exc:
        return fail(f"--model: {job.uri}: {exc.message}")
    if signature is None or signature.inputs is None or signature.outputs is None:
        return fail(f"--model: {job.uri} has no output schema; train it again with this version of the code")
    from serving.batch import spark_job  # PySpark is an optional extra: only this command needs it.

    try:
        return spark_job.run(job, signature, say=_say)
    except BatchFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
