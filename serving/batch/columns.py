"""Match an input's columns to a model's signature by name, for Spark: what to send and what to expect.

Pure Spark column expressions: nothing here reads data. A column is sent under the model's own type;
text is converted where the model wants numbers, and a value that does not convert stops the job
with a message naming the column (`raise_error`, during the scoring pass, not in a pass of its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.types.schema import Array, ColSpec, DataType, Map, Schema
from pyspark.sql import Column
from pyspark.sql import functions as sf
from pyspark.sql import types as st

from serving.batch.plan import MARK

NUMBERS = (
    st.ByteType,
    st.ShortType,
    st.IntegerType,
    st.LongType,
    st.FloatType,
    st.DoubleType,
    st.DecimalType,
)
WHOLE_NUMBERS = (st.ByteType, st.ShortType, st.IntegerType, st.LongType)


class ColumnMismatch(ValueError):
    """The input cannot give the model a column it needs; the message names the column."""


@dataclass(frozen=True)
class Plan:
    """The id column and the model's input columns, as expressions over the input."""

    id_column: str
    identifier: Column
    features: list[Column]
    left_aside: list[str]  # Input columns the model does not take (the target, say).


def spark_type(spec: object) -> st.DataType:
    """The Spark type of a signature type (MLflow's `Schema.as_spark_schema` has no arrays or maps)."""
    if isinstance(spec, Array):
        return st.ArrayType(spark_type(spec.dtype))
    if isinstance(spec, Map):
        return st.MapType(st.StringType(), spark_type(spec.value_type))
    if isinstance(spec, DataType):
        return spec.to_spark()
    raise ColumnMismatch(f"the model's signature has a type Spark cannot hold: {spec}")


# The model's reason codes (params.reasons), left out of its output schema: see `_output_schema` in training.
REASONS = st.ArrayType(
    st.StructType(
        [st.StructField(name, st.StringType()) for name in ("code", "feature", "value", "statement")]
        + [st.StructField("contribution", st.DoubleType())]
    )
)


def result_type(outputs: Schema, *, leave_out: set[str], reasons: bool = False) -> st.StructType:
    """The UDF's result struct: the model's output schema less the columns it will not answer, + reasons."""
    specs = [spec for spec in outputs.inputs if isinstance(spec, ColSpec) and spec.name not in leave_out]
    fields = [st.StructField(str(spec.name), spark_type(spec.type)) for spec in specs]
    return st.StructType(fields + ([st.StructField("reasons", REASONS)] if reasons else []))


def _converted(name: str, found: st.DataType, wanted: st.DataType) -> Column:
    column = sf.col(f"`{name}`")
    if found == wanted:
        return column
    if isinstance(found, NUMBERS) and isinstance(wanted, NUMBERS):
        if isinstance(wanted, WHOLE_NUMBERS) and not isinstance(found, WHOLE_NUMBERS):
            raise ColumnMismatch(
                f"column {name!r} is {found.simpleString()}, the model needs whole numbers "
                f"({wanted.simpleString()})"
            )
        return column.cast(wanted)
    if isinstance(found, st.StringType) and isinstance(wanted, (*NUMBERS, st.BooleanType)):
        converted = column.try_cast(wanted)
        return sf.when(
            column.isNotNull() & converted.isNull(),
            sf.raise_error(
                sf.concat(
                    sf.lit(f"{MARK}column {name!r}: value '"),
                    column,
                    sf.lit(f"' is not a {wanted.simpleString()}"),
                )
            ),
        ).otherwise(converted)
    raise ColumnMismatch(
        f"column {name!r} is {found.simpleString()}, the model needs {wanted.simpleString()}"
    )


def plan(found: st.StructType, inputs: Schema, outputs: Schema) -> Plan:
    """Each input the model takes, by name, converted to its signature type; `ColumnMismatch` if not.

    The id is the optional input the model echoes; other optional inputs (protected attributes kept for
    fairness monitoring, never used by the model) are sent when the input has them.
    """
    specs = [spec for spec in inputs.inputs if isinstance(spec, ColSpec) and spec.name]
    echoed = {spec.name for spec in outputs.inputs}
    optional = [str(spec.name) for spec in specs if not spec.required and spec.name in echoed]
    if len(optional) != 1:
        raise ColumnMismatch("the model's signature has no optional id column to key the output by")
    id_column = optional[0]
    types = {field.name: field.dataType for field in found.fields}
    needed = [str(spec.name) for spec in specs if spec.required or spec.name == id_column]
    missing = [name for name in needed if name not in types]
    if missing:
        raise ColumnMismatch(f"missing column(s) {missing}")
    sent = [spec for spec in specs if spec.name in types]
    columns = {
        str(spec.name): _converted(str(spec.name), types[str(spec.name)], spark_type(spec.type)).alias(
            str(spec.name)
        )
        for spec in sent
    }
    identifier = columns.pop(id_column)
    wanted = {str(spec.name) for spec in sent}
    return Plan(id_column, identifier, list(columns.values()), [n for n in types if n not in wanted])
