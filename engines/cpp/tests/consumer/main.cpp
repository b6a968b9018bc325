// The smallest pipeline: restore one 8-bit RGB frame held in memory with mirnet::Restorer.
//   consumer ENGINE.json IMAGE.png OUT.png
#include <mirnet/restore.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: consumer ENGINE.json IMAGE.png OUT.png\n");
        return 2;
    }
    try {
        mirnet::Restorer restorer(argv[1]);
        const mirnet::Image image = mirnet::convert_bit_depth(mirnet::read_image(argv[2]), 8);
        std::vector<uint8_t> frame(image.codes.begin(), image.codes.end());  // interleaved RGB, as a camera gives
        const int scale = restorer.engine().scale();
        mirnet::Image out = mirnet::make_image(image.width * scale, image.height * scale, 8);
        std::vector<uint8_t> restored(out.sample_count());
        restorer.restore_rgb8(frame.data(), image.width, image.height, 3 * image.width, restored.data(),
                              3 * out.width);
        out.codes.assign(restored.begin(), restored.end());
        mirnet::write_image(argv[3], out);
        std::printf("restored %dx%d with %s (%s) in %.1f ms\n", image.width, image.height,
                    restorer.engine().backend().c_str(), restorer.engine().precision().c_str(),
                    restorer.last_times().infer_ms);
    } catch (const mirnet::Error& e) {
        std::fprintf(stderr, "consumer: %s\n", e.what());
        return 1;
    }
    return 0;
}
