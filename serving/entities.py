"""Load the entity table from a dataset CSV: `python -m serving.entities --model M --input F.csv`.

`POST /predict/by-id/{id}` scores entities from this table. Each row keeps the model's input columns
(read from the signature of the version the alias or stage names) under the value of its id column.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from logstore.database import first_line, make_engine, migrate, safe_url
from logstore.errors import LogStoreError
from logstore.records import pseudonym
from logstore.store import upsert_entities
from registry_scripts.access import configure_mlflow
from registry_scripts.cli import fail, problems
from serving.errors import ServingError
from serving.registry import describe, resolve
from serving.settings import ServingSettings


def entity_features(
    frame: pd.DataFrame, *, columns: list[str], id_column: str | None
) -> dict[str, dict[str, Any]]:
    """Each row's model inputs under its id; missing values become null."""
    if id_column is None:
        raise ValueError("--model: the model's signature has no optional id column")
    if id_column not in frame.columns:
        raise ValueError(f"--input: the id column {id_column!r} is not in the CSV")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"--input: the model's input column(s) {missing} are not in the CSV")
    if frame[id_column].duplicated().any():
        raise ValueError(f"--input: the id column {id_column!r} has duplicate values")
    records = frame[columns].astype(object).to_dict(orient="records")
    return {
        str(record[id_column]): {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in record.items()
        }
        for record in records
    }


def pseudonymised(
    features: dict[str, dict[str, Any]], *, id_column: str, key: bytes
) -> dict[str, dict[str, Any]]:
    """The entities under keyed hashes of their ids, the id column emptied: the table holds no raw id."""
    return {pseudonym(entity_id, key): {**row, id_column: None} for entity_id, row in features.items()}


def main(argv: list[str] | None = None) -> int:
    """Read the CSV, check it against the model's signature, and upsert the entities."""
    parser = argparse.ArgumentParser(prog="python -m serving.entities", description=__doc__)
    parser.add_argument("--model", required=True, help="registered model name")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--alias", help="alias whose signature is used (default: production)")
    target.add_argument("--stage", help="stage whose signature is used instead")
    parser.add_argument("--input", required=True, type=Path, help="CSV with an id column and the inputs")
    args = parser.parse_args(argv)
    configure_mlflow()
    try:
        settings = ServingSettings(model=args.model, alias=args.alias, stage=args.stage)
        client = MlflowClient()
        version = resolve(client, settings.model, alias=settings.alias, stage=settings.stage)
        info = describe(client, settings.model, version, settings.target)
        frame = pd.read_csv(args.input)
        features = entity_features(frame, columns=info.columns, id_column=info.id_column)
        if settings.hmac_key is not None and info.id_column is not None:
            features = pseudonymised(features, id_column=info.id_column, key=settings.hmac_key)
        engine = make_engine(settings.database_url)
        migrate(engine)
        count = upsert_entities(engine, model_name=settings.model, features=features)
    except ValidationError as exc:
        return fail(problems(exc))
    except (ServingError, LogStoreError) as exc:
        return fail(exc.message)
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    except SQLAlchemyError as exc:
        return fail(f"DATABASE_URL: {first_line(exc)}")
    print(f"loaded {count} entities of {settings.model} (version {version}'s inputs) into {safe_url(engine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
