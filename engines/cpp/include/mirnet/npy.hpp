// mirnet: NumPy .npy arrays as model input, for what an image file cannot hold. MIRNet-v2's dual-pixel
// defocus model takes 6 channels, the left and the right view (RGB each), as its authors feed it:
//
//   np.save("pair.npy", np.concatenate([left, right], axis=2))   # H x W x 6
//
// Accepted: NumPy format 1.0-3.0, C order, shape H x W x C (the layout of numpy images and of the
// Python side) or H x W (one channel), little-endian uint8 (code / 255), uint16 (code / 65535),
// float32 or float64 (finite, in [0, 1]). Anything else is refused with a message naming the file
// and the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mirnet/tensor.hpp"

namespace mirnet {

struct PlanarInput {
    TensorNCHW planes;  // 1 x C x H x W floats in [0, 1]
    int bit_depth = 32; // of the stored values: 8, 16 or 32 (float); the output keeps it by default
};

// Whether `bytes` start with the .npy magic string.
bool is_npy(const std::vector<uint8_t>& bytes);

// Decode a .npy array; `what` names it in errors (e.g. "Array pair.npy").
PlanarInput decode_npy(const std::vector<uint8_t>& bytes, const std::string& what);
PlanarInput read_npy(const std::string& path);

}  // namespace mirnet
