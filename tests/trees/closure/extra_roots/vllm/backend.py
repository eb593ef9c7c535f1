# SPDX-License-Identifier: Apache-2.0
class Backend:
    pass


SIZE = 4
