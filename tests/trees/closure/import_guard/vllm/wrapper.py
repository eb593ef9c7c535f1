# SPDX-License-Identifier: Apache-2.0
class Library:
    def __init__(self):
        raise AssertionError("the compiled library is not loaded")
