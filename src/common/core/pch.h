// Precompiled header for the core library and every binary (see CMakeLists.txt).
#pragma once
#include <torch/torch.h>
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
