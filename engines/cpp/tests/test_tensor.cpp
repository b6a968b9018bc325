// Reflect padding (periodic mirror, Python semantics), pad to a multiple, crop.
#include "test_support.hpp"
#include "mirnet/tensor.hpp"

using namespace mirnet;

namespace {

// 1x1xhxw tensor with value 10*y + x (distinct per pixel for h, w < 10).
TensorNCHW grid(int h, int w) {
    TensorNCHW t(1, 1, h, w);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) t.at(0, 0, y, x) = static_cast<float>(10 * y + x);
    return t;
}

std::vector<float> values(const TensorNCHW& t) { return t.data; }

}  // namespace

TEST(tensor, reflect_index_is_a_periodic_mirror) {
    for (int i = 0; i < 20; ++i) EXPECT_EQ(reflect_index(i, 1), 0);
    const int n2[] = {0, 1, 0, 1, 0, 1};
    for (int i = 0; i < 6; ++i) EXPECT_EQ(reflect_index(i, 2), n2[i]);
    const int n3[] = {0, 1, 2, 1, 0, 1, 2, 1, 0};
    for (int i = 0; i < 9; ++i) EXPECT_EQ(reflect_index(i, 3), n3[i]);
    const int n5[] = {0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3};
    for (int i = 0; i < 12; ++i) EXPECT_EQ(reflect_index(i, 5), n5[i]);
    EXPECT_EQ(reflect_index(1000000007LL, 4), reflect_index(1000000007LL % 6, 4));
    EXPECT_THROW_WITH(reflect_index(-1, 4), "i >= 0");
    EXPECT_THROW_WITH(reflect_index(0, 0), "at least 1");
}

TEST(tensor, round_up_to_multiple) {
    EXPECT_EQ(round_up(0, 4), 0);
    EXPECT_EQ(round_up(1, 4), 4);
    EXPECT_EQ(round_up(4, 4), 4);
    EXPECT_EQ(round_up(5, 4), 8);
    EXPECT_EQ(round_up(719, 4), 720);
    EXPECT_THROW_WITH(round_up(3, 0), "multiple >= 1");
}

TEST(tensor, pad_1x1_to_multiple_4_replicates) {
    TensorNCHW t(1, 3, 1, 1);
    t.data = {0.1f, 0.2f, 0.3f};
    const TensorNCHW p = pad_to_multiple(t, 4);
    EXPECT_EQ(p.h, 4);
    EXPECT_EQ(p.w, 4);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 4; ++y)
            for (int x = 0; x < 4; ++x) EXPECT_EQ(p.at(0, c, y, x), t.data[static_cast<std::size_t>(c)]);
}

TEST(tensor, pad_1x2_repeats_the_reflection) {
    // As tests/test_inference.py::test_padding_tiny_images_repeats_the_reflection.
    TensorNCHW t(1, 1, 1, 2);
    t.data = {1.0f, 2.0f};
    const TensorNCHW p = pad_to_multiple(t, 4);
    const std::vector<float> expected = {1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2};
    EXPECT_TRUE(values(p) == expected);
}

TEST(tensor, pad_3x5_to_4x8_matches_expected_array) {
    const TensorNCHW p = pad_to_multiple(grid(3, 5), 4);
    EXPECT_EQ(p.h, 4);
    EXPECT_EQ(p.w, 8);
    // rows 0 1 2 | 1 ; cols 0 1 2 3 4 | 3 2 1
    const std::vector<float> expected = {
        0,  1,  2,  3,  4,  3,  2,  1,   //
        10, 11, 12, 13, 14, 13, 12, 11,  //
        20, 21, 22, 23, 24, 23, 22, 21,  //
        10, 11, 12, 13, 14, 13, 12, 11,
    };
    EXPECT_TRUE(values(p) == expected);
}

TEST(tensor, pad_2x3_to_8x8_keeps_reflecting) {
    const TensorNCHW p = reflect_pad(grid(2, 3), 8, 8);
    // rows period 2: 0 1 0 1 ...; cols period 4: 0 1 2 1 0 1 2 1
    const int cols[] = {0, 1, 2, 1, 0, 1, 2, 1};
    for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x) EXPECT_EQ(p.at(0, 0, y, x), static_cast<float>(10 * (y % 2) + cols[x]));
}

TEST(tensor, pad_equals_numpy_reflect_when_pad_is_smaller_than_size) {
    // 5x7 -> 8x8: numpy.pad(mode="reflect") rows 0..4,3,2,1 and cols 0..6,5.
    const TensorNCHW p = pad_to_multiple(grid(5, 7), 4);
    const int rows[] = {0, 1, 2, 3, 4, 3, 2, 1};
    const int cols[] = {0, 1, 2, 3, 4, 5, 6, 5};
    for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x) EXPECT_EQ(p.at(0, 0, y, x), static_cast<float>(10 * rows[y] + cols[x]));
}

TEST(tensor, pad_keeps_planes_independent_and_is_a_noop_on_multiples) {
    TensorNCHW t(2, 3, 3, 2);
    for (std::size_t i = 0; i < t.size(); ++i) t.data[i] = static_cast<float>(i);
    const TensorNCHW p = pad_to_multiple(t, 4);
    EXPECT_EQ(p.n, 2);
    EXPECT_EQ(p.c, 3);
    for (int n = 0; n < 2; ++n)
        for (int c = 0; c < 3; ++c) {
            EXPECT_EQ(p.at(n, c, 3, 3), t.at(n, c, 1, 1));  // row reflect(3, 3) = 1, col reflect(3, 2) = 1
            EXPECT_EQ(p.at(n, c, 0, 2), t.at(n, c, 0, 0));
        }
    const TensorNCHW same = pad_to_multiple(p, 4);
    EXPECT_TRUE(same.data == p.data);
}

TEST(tensor, crop_undoes_padding_and_checks_bounds) {
    const TensorNCHW x = grid(3, 5);
    const TensorNCHW p = pad_to_multiple(x, 4);
    const TensorNCHW c = crop(p, 0, 0, 3, 5);
    EXPECT_TRUE(c.data == x.data);
    const TensorNCHW inner = crop(p, 1, 2, 2, 3);
    const std::vector<float> expected = {12, 13, 14, 22, 23, 24};
    EXPECT_TRUE(inner.data == expected);
    EXPECT_THROW_WITH(crop(p, 2, 0, 3, 5), "does not lie inside");
    EXPECT_THROW_WITH(crop(p, 0, -1, 1, 1), "does not lie inside");
    EXPECT_THROW_WITH(reflect_pad(x, 2, 5), "only grows");
}
