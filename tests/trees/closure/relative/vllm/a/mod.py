# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright fixture authors
from .helpers import helper
from ..util import CONST


def target():
    return helper() + CONST
