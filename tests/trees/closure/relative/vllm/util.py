# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright fixture authors
CONST = 40
UNUSED_CONST = 1
