# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright lib authors
def one():
    return 1


def unused():
    return 0


def two():
    return 2
