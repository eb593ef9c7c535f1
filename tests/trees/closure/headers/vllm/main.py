# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright main authors
from vllm.lib import one, two


def target():
    return one() + two()
