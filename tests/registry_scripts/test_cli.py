"""The command-line conventions every command shares: one line on stderr, exit status 2."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from registry_scripts.cli import BAD_INPUT, fail, problems


class Options(BaseModel):
    """Two fields, one nested, to see how each is named."""

    min_rows: int = Field(ge=1)
    window: dict[str, int] = {}


def _error(**values: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Options.model_validate(values)
    return caught.value


def test_fail_says_one_line_on_stderr_and_returns_the_bad_input_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert fail("--input: cannot read x.csv") == BAD_INPUT == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: --input: cannot read x.csv\n")


def test_problems_names_the_first_field_as_the_user_writes_it() -> None:
    error = _error(min_rows=0, window={"days": "x"})
    assert problems(error) == "min_rows: Input should be greater than or equal to 1"
    assert problems(error, spell=lambda f: "--" + f.replace("_", "-")).startswith("--min-rows: ")
    assert problems(error, every=True) == (
        "min_rows: Input should be greater than or equal to 1; "
        "window.days: Input should be a valid integer, unable to parse string as an integer"
    )


def test_problems_names_the_input_itself_when_no_field_is_at_fault() -> None:
    with pytest.raises(ValidationError) as caught:
        Options.model_validate([1])
    assert problems(caught.value, whole="settings").startswith("settings: Input should be")
