"""The request bodies' words for what a field must be (worker/api_schema.py): what a 400 tells the client."""

import pytest

from mafioso.worker.api_schema import BadRequest, Param


@pytest.mark.parametrize("schema, value, words", [
    ({"type": "array", "items": {"type": "string"}, "minItems": 1}, [], "a non-empty list of strings"),
    ({"type": "array", "items": {"type": "boolean"}}, [1], "a list of true or false"),  # it read "a list of or false"
    ({"type": "array", "items": {"type": "integer", "minimum": 1}}, [0], "a list of integers at least 1"),
    ({"type": "string", "minLength": 1, "maxLength": 3}, "four", "a non-empty string of at most 3 characters"),
    ({"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 2}, ["a", "b", "c"],
     "a list of non-empty strings (at most 2)"),
])
def test_a_refused_value_is_told_what_the_field_must_be(schema, value, words):
    with pytest.raises(BadRequest) as refused:
        Param("field", schema, "a field").check(value)
    assert str(refused.value) == f"'field' must be {words}."
