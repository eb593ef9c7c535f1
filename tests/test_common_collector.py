import gc

import pytest

from bundler_lib.common.collector import without_cycle_collection


@without_cycle_collection
def _state(fail: bool = False) -> bool:
    if fail:
        raise ValueError("x")
    return gc.isenabled()


def test_the_collector_is_off_inside_and_restored_after():
    assert gc.isenabled()
    assert _state() is False
    assert gc.isenabled()
    with pytest.raises(ValueError):
        _state(fail=True)
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    try:
        assert _state() is False
        assert not gc.isenabled()
    finally:
        gc.enable()
