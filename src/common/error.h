#pragma once
// One exception type for every user-facing failure (bad file, bad argument, bad config).
// Messages name the file and, where there is one, the tensor or field at fault.
#include <stdexcept>
#include <string>

namespace ilm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ilm
