// mirnet_core: the one exception type the library throws.
#pragma once

#include <stdexcept>
#include <string>

namespace mirnet {

// Every failure of mirnet_core is reported as a mirnet::Error whose what() is a
// complete sentence: what failed, on which file/field, and what to do about it.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace mirnet
