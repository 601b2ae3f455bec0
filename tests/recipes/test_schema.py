"""The judgment example schema: validation errors name file, row and field; Arrow round trip."""

from __future__ import annotations

import datasets
import pytest

from recipes.schema import FEATURES, DataError, example_id, from_arrow_row, to_arrow_row, validate_example


GOOD = {"category": "jailbreak", "prompt": "p", "response": "r", "label": 1}


def test_validate_fills_defaults_and_stable_id():
    example = validate_example(GOOD)
    assert example["id"] == example_id("jailbreak", "p", "r") == validate_example(dict(GOOD))["id"]
    assert (example["group"], example["annotations"], example["context"], example["meta"]) == (
        example["id"],
        [],
        {},
        {},
    )


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        pytest.param({"prompt": ""}, "prompt", id="empty_prompt"),
        pytest.param({"prompt": [{"role": "user", "content": " "}]}, "prompt", id="empty_chat_message"),
        pytest.param({"response": None}, "response", id="missing_response"),
        pytest.param({"label": 2}, "label", id="label_two"),
        pytest.param({"label": True}, "label", id="label_bool"),
        pytest.param({"annotations": [1, 3]}, "annotations", id="annotation_not_binary"),
        pytest.param({"context": "secret"}, "context", id="context_not_mapping"),
        pytest.param({"category": " "}, "category", id="blank_category"),
    ],
)
def test_validation_errors_name_file_row_and_field(change, field_name):
    with pytest.raises(DataError) as caught:
        validate_example({**GOOD, **change}, "data.csv", 7)
    assert str(caught.value).startswith(f"data.csv:7: field '{field_name}': expected ")
    assert isinstance(caught.value, ValueError)


def test_chat_prompt_and_context_round_trip_through_arrow():
    example = validate_example(
        {
            **GOOD,
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "context": {"secret": "x"},
            "meta": {"agreement": 0.5},
            "annotations": [1, 0],
        }
    )
    row = to_arrow_row(example)
    data = datasets.Dataset.from_list([row], features=FEATURES)
    assert from_arrow_row(data[0]) == example
