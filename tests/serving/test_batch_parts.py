"""The batch command's parts that need neither Spark running nor a model."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from logstore.records import pseudonym
from serving.batch.log import prediction_row
from serving.batch.plan import MARK, BatchFailed, input_format, literal, spark_message


def test_our_bad_value_message_is_found_in_sparks_error_text() -> None:
    text = (
        "An error occurred while calling o123.parquet.\n: org.apache.spark.SparkException: Job aborted\n"
        f"[USER_RAISED_EXCEPTION] {MARK}column 'Age': value 'forty' is not a bigint SQLSTATE: P0001\n"
        "\tat org.apache.spark..."
    )
    assert spark_message(RuntimeError(text)) == ("--input: column 'Age': value 'forty' is not a bigint", 2)
    assert spark_message(RuntimeError("\n  [PATH_NOT_FOUND] Path does not exist\nmore")) == (
        "[PATH_NOT_FOUND] Path does not exist",
        1,
    )


def test_the_format_comes_from_the_name_or_the_files(tmp_path: Path) -> None:
    assert input_format("s3a://bucket/rows.CSV", None) == "csv"
    assert input_format("hdfs:///data/scored", None) == "parquet"
    assert input_format(str(tmp_path / "x.bin"), "csv") == "csv"
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "_SUCCESS").write_text("")
    (folder / "part-0.parquet").write_bytes(b"")
    assert input_format(str(folder), None) == "parquet"
    with pytest.raises(BatchFailed, match="cannot tell the format"):
        input_format(str(tmp_path / "rows.txt"), None)


def test_globs_in_our_own_paths_are_read_literally() -> None:
    assert literal("/tmp/scored-local[2].incomplete-1a") == "/tmp/scored-local\\[2\\].incomplete-1a"
    assert literal("s3a://b/{x}*?") == "s3a://b/\\{x\\}\\*\\?"


@pytest.mark.parametrize("key", [None, b"secret"])
def test_a_logged_batch_row_holds_its_input_as_sent(key: bytes | None) -> None:
    request_id = uuid.uuid4()
    scored: dict[str, object] = {
        "employee_id": 7, "Age": 41, "OverTime": None, "score": 0.3, "prediction": "No", "threshold": 0.5,
        "base_value": -1.2, "contributions": {"Age": 0.1}, "unseen_categories": [],
    }  # fmt: skip
    inputs = ["Age", "OverTime"]
    row = prediction_row(request_id, 3, scored, id_column="employee_id", inputs=inputs, hmac_key=key)
    entity = "7" if key is None else pseudonym("7", key)
    assert row["entity_id"] == entity and row["row_index"] == 3 and row["request_id"] == request_id
    assert row["input"] == {"Age": 41, "OverTime": None, "employee_id": 7 if key is None else entity}
    assert (row["score"], row["contributions"], row["unseen_categories"]) == (0.3, {"Age": 0.1}, [])
