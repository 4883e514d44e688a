# All dependencies come from Debian packages (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
find_package(tomlplusplus 3 REQUIRED)  # the validate thresholds file (libtomlplusplus-dev)
pkg_check_modules(SentencePiece REQUIRED IMPORTED_TARGET sentencepiece)
# Debian builds cpp-httplib as a shared library; its pkg-config flags carry the feature macros
# the library was built with, which the header's class layouts depend on.
pkg_check_modules(CppHttplib REQUIRED IMPORTED_TARGET cpp-httplib)
if(INTERNLM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
# Logging of `internlm serve` (Debian's libspdlog-dev, built against the system fmt).
find_package(spdlog REQUIRED)
