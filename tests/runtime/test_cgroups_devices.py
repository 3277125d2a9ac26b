"""Device rules reduced to a default and exceptions, as the v1 controller keeps them."""

from __future__ import annotations

from cais.runtime.cgroups.devices import WILDCARD, Rule, program, reduce

DENY_ALL = {"allow": False, "access": "rwm"}

# What Docker puts in linux.resources.devices for every container.
DOCKER_DEFAULT = [
    DENY_ALL,
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
]


def test_no_rules_allow_everything() -> None:
    state = reduce([])
    assert state.default_allow and state.exceptions == []


def test_docker_default() -> None:
    state = reduce(DOCKER_DEFAULT)
    assert not state.default_allow
    lines = [e.line() for e in state.exceptions]
    assert lines[:3] == ["c *:* m", "b *:* m", "c 1:3 rwm"]
    assert "c 136:* rwm" in lines
    assert not any("10:229" in line for line in lines)  # a deny on a deny default: nothing to add
    assert len(program(state)) % 8 == 0


def test_later_rules_take_access_back() -> None:
    rules = [
        DENY_ALL,
        {"allow": True, "type": "c", "major": 1, "minor": 3},
        {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
    ]
    assert reduce(rules).exceptions == [Rule("c", 1, 3, "rm")]


def test_a_wildcard_deny_takes_back_what_it_covers() -> None:
    rules = [
        DENY_ALL,
        {"allow": True, "type": "c", "major": 1, "minor": 3},
        {"allow": True, "type": "b", "major": 8, "minor": 0},
        {"allow": False, "type": "c"},
    ]
    assert reduce(rules).exceptions == [Rule("b", 8, 0, "rwm")]


def test_type_a_with_partial_access_is_both_types() -> None:
    state = reduce([{"allow": False, "type": "a", "access": "w"}])
    assert state.default_allow
    assert state.exceptions == [Rule("b", WILDCARD, WILDCARD, "w"), Rule("c", WILDCARD, WILDCARD, "w")]


def test_reset_in_the_middle_forgets_earlier_rules() -> None:
    rules = [DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3}, {"allow": True, "access": "rwm"}]
    state = reduce(rules)
    assert state.default_allow and state.exceptions == []
