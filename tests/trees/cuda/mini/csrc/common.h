#pragma once
// SPDX-License-Identifier: Apache-2.0
namespace mini {
constexpr int kBlock = 256;
}
