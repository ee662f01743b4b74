"""What a batch job is and what can be checked before Spark starts: options, version, input, output."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from mlflow.environment_variables import MLFLOW_RUN_ID
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry_scripts.access import LookupFailed, resolve
from registry_scripts.cli import problems

HASHED_BYTES = 256 * 2**20  # Inputs up to this size (local files) get a SHA-256 in the run.
DEFAULT_EXPERIMENT = "batch-scoring"
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

# Marks our own `raise_error` messages inside Spark's exception text, so the command can find them.
MARK = "BAD_INPUT_VALUE: "


class BatchParams(BaseModel):
    """The model's params a batch may set (`--params` as a JSON object)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="default: the model's own")
    explain: bool = True
    top_k: int = Field(default=0, ge=0, description="contributions kept per row; 0 = all")
    reasons: int = Field(default=0, ge=0, description="reason codes per row; 0 = none")


@dataclass(frozen=True)
class Job:
    """One batch, as asked for and resolved against the registry."""

    model: str
    version: int
    target: str  # What the user named: `@production`, `/Production` or `/3`.
    input: str
    input_format: str
    output: str
    overwrite: bool
    master: str
    params: dict[str, Any]
    log_store: str | None
    experiment: str
    env_manager: str
    scorer: str = "arrow"  # Or "spark_udf", MLflow's own (the only one with an isolated environment).

    @property
    def uri(self) -> str:
        """The version itself: a promotion during the job does not change what it scores with."""
        return f"models:/{self.model}/{self.version}"


class BatchFailed(Exception):
    """The job cannot go on; `status` 2 for bad input, 1 otherwise."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.batch",
        description="Score a file or folder on Spark with a registered model version.",
    )
    parser.add_argument("--model", required=True, help="registered model name")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--alias", help="alias whose version scores (default: production)")
    where.add_argument("--stage", choices=["Staging", "Production"], help="stage whose version scores")
    where.add_argument("--version", type=int, help="version number that scores")
    parser.add_argument(
        "--input", required=True, help="CSV or Parquet file or folder; any path or URI Spark reads"
    )
    parser.add_argument(
        "--format",
        choices=["csv", "parquet"],
        help="input format (default: from the name; folders: their files)",
    )
    parser.add_argument("--output", required=True, help="Parquet folder to write (path or URI)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
    parser.add_argument("--params", default="{}", help="model params as JSON, e.g. '{\"top_k\": 3}'")
    parser.add_argument(
        "--log-store", help="also append the predictions to this prediction log (SQLAlchemy URL)"
    )
    parser.add_argument("--experiment-name", default=DEFAULT_EXPERIMENT, help="MLflow experiment of the run")
    parser.add_argument(
        "--env-manager",
        default="local",
        choices=["local", "virtualenv", "uv", "conda"],
        help="spark_udf's env_manager: local uses this interpreter on every worker (default)",
    )
    parser.add_argument(
        "--scorer",
        default="arrow",
        choices=["arrow", "spark_udf"],
        help="arrow: each task loads the model and answers Arrow batches (default); spark_udf: MLflow's",
    )
    return parser.parse_args(argv)


def _params(text: str) -> dict[str, Any]:
    try:
        given = json.loads(text)
    except ValueError as exc:
        raise BatchFailed(f"--params: not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise BatchFailed(f"--params: must be a JSON object, got {type(given).__name__}")
    try:
        checked = BatchParams.model_validate(given)
    except ValidationError as exc:
        raise BatchFailed(problems(exc, spell=lambda field: f"--params.{field}", whole="--params")) from None
    return checked.model_dump(exclude_none=True)


def is_local(path: str) -> bool:
    """A path on this machine's disk (no scheme, or `file:`)."""
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def _local(path: str) -> Path:
    return Path(urlparse(path).path if path.startswith("file:") else path)


def input_format(path: str, given: str | None) -> str:
    """CSV or Parquet: as given, else by the file's suffix, else by the files a local folder holds."""
    if given:
        return given
    if (found := FORMATS.get(Path(urlparse(path).path).suffix.lower())) is not None:
        return found
    if is_local(path) and _local(path).is_dir():
        kinds = {FORMATS.get(p.suffix.lower()) for p in _local(path).rglob("*") if p.is_file()} - {None}
        if len(kinds) == 1:
            return str(kinds.pop())
        raise BatchFailed(
            f"--input: cannot tell the format of {path} (its files: {sorted(map(str, kinds))}); use --format"
        )
    if is_local(path):
        raise BatchFailed(
            f"--input: cannot tell the format of {path}; name it .csv or .parquet, or use --format"
        )
    return "parquet"


def plan_job(args: argparse.Namespace, client: MlflowClient) -> Job:
    """Everything that can be checked before Spark starts: the version, params, input and output."""
    params = _params(args.params)
    try:
        version = resolve(client, args.model, alias=args.alias, stage=args.stage, version=args.version)
    except LookupFailed as exc:
        option = "--version" if args.version is not None else "--stage" if args.stage else "--alias"
        raise BatchFailed(f"{option}: {exc.message}") from None
    target = (
        f"/{args.version}"
        if args.version is not None
        else f"/{args.stage}"
        if args.stage
        else f"@{args.alias or 'production'}"
    )
    if args.env_manager != "local" and args.scorer == "arrow":
        raise BatchFailed(
            f"--env-manager: {args.env_manager} needs --scorer spark_udf "
            "(the Arrow path runs in the executors' own interpreter)"
        )
    if is_local(args.input) and not _local(args.input).exists():
        raise BatchFailed(f"--input: {args.input} does not exist")
    if is_local(args.output) and _local(args.output).exists() and not args.overwrite:
        raise BatchFailed(f"--output: {args.output} already exists; remove it or pass --overwrite")
    return Job(
        model=args.model,
        version=version,
        target=target,
        input=args.input,
        input_format=input_format(args.input, args.format),
        output=args.output.rstrip("/"),
        overwrite=args.overwrite,
        master=args.master,
        params=params,
        log_store=args.log_store,
        experiment=args.experiment_name,
        env_manager=args.env_manager,
        scorer=args.scorer,
    )


def input_digest(path: str) -> tuple[int | None, str | None]:
    """Bytes and SHA-256 of a local input (a folder: its files in order), when cheap; else None."""
    if not is_local(path):
        return None, None
    root = _local(path)
    files = (
        sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        if root.is_dir()
        else [root]
    )
    size = sum(p.stat().st_size for p in files)
    if size > HASHED_BYTES:
        return size, None
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            while block := handle.read(2**20):
                digest.update(block)
    return size, digest.hexdigest()


@contextmanager
def mlflow_run(job: Job) -> Iterator[str]:
    """The MLflow run of the job (`mlflow run`'s own when it started us); failed if the job fails."""
    if not MLFLOW_RUN_ID.get():
        mlflow.set_experiment(job.experiment)
    with mlflow.start_run(run_name=f"batch-{job.model}-v{job.version}") as run:
        mlflow.set_tags({"job": "batch", "model_name": job.model, "model_version": str(job.version)})
        yield run.info.run_id


def spark_message(exc: BaseException) -> tuple[str, int]:
    """One line for a failed Spark job: our own bad-value message (status 2) or the error's first line."""
    text = str(exc)
    if (found := re.search(re.escape(MARK) + r"(.*?)\s*(?:SQLSTATE|$)", text, re.MULTILINE)) is not None:
        return f"--input: {found.group(1).strip().rstrip('.')}", 2
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:500], 1


def literal(path: str) -> str:
    """A path that Hadoop reads as written, not as a glob (`scored-local[2]`)."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", path)
