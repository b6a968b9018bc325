#include "mirnet/profile.hpp"

namespace mirnet {

bool profile_contains(const Profile& profile, const Shape4& shape) {
    for (std::size_t i = 0; i < 4; ++i) {
        if (shape[i] < profile.min[i] || shape[i] > profile.max[i]) {
            return false;
        }
    }
    return true;
}

std::string format_shape(const Shape4& shape) {
    return std::to_string(shape[0]) + "x" + std::to_string(shape[1]) + "x" + std::to_string(shape[2]) + "x" +
           std::to_string(shape[3]);
}

std::string format_profile(const Profile& profile) {
    return "min " + format_shape(profile.min) + ", opt " + format_shape(profile.opt) + ", max " +
           format_shape(profile.max);
}

}  // namespace mirnet
