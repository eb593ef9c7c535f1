# SPDX-License-Identifier: Apache-2.0
_impl_a = None
_impl_b = None
_counter = 0
_gone = 1


def _lazy_init():
    global _impl_a, _impl_b, _counter, _gone
    if _impl_a is not None:
        return
    _impl_a = abs
    _impl_b = len
    _counter += 1
    del _gone


def target(x):
    _lazy_init()
    return _impl_a(x) + _counter
