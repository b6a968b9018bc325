// Internal helpers shared by image.cpp and png.cpp (not installed, not part of the API).
#pragma once

#include <cstddef>
#include <string>

namespace mirnet::detail {

// Largest image mirnet_core will allocate: 2^28 pixels (16384 x 16384).
constexpr std::size_t kMaxPixels = std::size_t{1} << 28;

// Throws mirnet::Error unless 1 <= width, height and width*height <= kMaxPixels.
void check_dimensions(long long width, long long height, const std::string& what);

// Throws mirnet::Error unless every value is finite and inside [0, 1] (what the models take),
// naming `what` ("The float image") and, for values out of range, `remedy`.
void check_unit_range(const float* values, std::size_t count, const std::string& what, const std::string& remedy);

}  // namespace mirnet::detail
