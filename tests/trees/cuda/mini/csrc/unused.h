#pragma once
// not included by anything the ops need
