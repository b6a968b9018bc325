// mirnet_core: NCHW shapes and TensorRT optimization profiles (min/opt/max boxes).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace mirnet {

using Shape4 = std::array<int64_t, 4>;  // N, C, H, W

// Channels of a model's input and output: 3 and 3 for RGB restoration; MIRNet-v2's dual-pixel
// defocus model takes 6 (the left and the right view) and returns 3.
struct Channels {
    int input = 3;
    int output = 3;
};

struct Profile {
    Shape4 min{};
    Shape4 opt{};
    Shape4 max{};
};

// min[i] <= shape[i] <= max[i] for all four dimensions.
bool profile_contains(const Profile& profile, const Shape4& shape);

// "1x3x720x1280"
std::string format_shape(const Shape4& shape);
// "min 1x3x180x320, opt 1x3x720x1280, max 1x3x720x1280"
std::string format_profile(const Profile& profile);

}  // namespace mirnet
