# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright fixture authors
def helper():
    return 2


def unused_helper():
    return 3
