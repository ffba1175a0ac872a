"""The agent DAG's input checks and HITL text, without servers (milliseconds)."""
from __future__ import annotations

import re

import pytest

from operators.agent import InputError, PLANNER_STEPS, fenced, validate_inputs


def test_planner_steps_are_the_graph():
    from include.agent.graph import STEP_NAMES

    assert PLANNER_STEPS == STEP_NAMES


@pytest.mark.parametrize("params, says", [
    ({}, "Request (request) is required"),
    ({"request": "   "}, "is required"),
    ({"request": "x" * 4001}, "too long"),
    ({"request": "dedup", "source_format": "exe"}, "Source format"),
    ({"request": "dedup", "output_table": "../../etc/x"}, "Output table"),
    ({"request": "dedup", "source_path": "a\nb"}, "Source path"),
    ({"request": "dedup", "name": "Bad-Name"}, "Pipeline name"),
    ({"request": "dedup", "llm": "gpt"}, "Planner"),
    ({"request": "dedup", "feedback": "more"}, "name the item"),
    ({"request": "dedup", "previous_item": "x"}, "needs Feedback"),
    ({"request": "dedup", "shell": "rm -rf /"}, "unknown input"),
])
def test_bad_inputs_are_refused_with_a_message(params, says):
    with pytest.raises(InputError, match=re.escape(says)):
        validate_inputs(params)


def test_inputs_are_normalised():
    got = validate_inputs({"request": "  dedup  ", "source_path": " ", "output_table": "gold/x"})
    assert got["request"] == "dedup" and got["source_path"] is None
    assert got["output_table"] == "gold/x" and got["llm"] == "none"
    got = validate_inputs({"previous_item": "x", "feedback": "less augmentation"})
    assert got["request"] is None  # a revision may take the item's request


def test_fence_cannot_be_closed_by_its_content():
    text = "a ``` b ```` c"
    block = fenced(text)
    assert block.startswith("`````text\n") and block.endswith("\n`````\n")
    assert text in block
