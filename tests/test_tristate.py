"""Kleene's three-valued and/or (bundler_lib/common/tristate.py), as the preprocessor and CMake readers use it."""

import itertools

from bundler_lib.common.tristate import and3, or3

VALUES = (True, False, None)


def test_known_false_decides_and_known_true_decides_or():
    for a, b in itertools.product(VALUES, VALUES):
        assert and3(a, b) == (False if False in (a, b) else None if None in (a, b) else True), (a, b)
        assert or3(a, b) == (True if True in (a, b) else None if None in (a, b) else False), (a, b)


def test_integers_count_by_their_truth():
    assert and3(2, 0) is False and and3(2, None) is None and and3(2, 1) is True
    assert or3(0, 5) is True and or3(0, None) is None and or3(0, 0) is False
