# `cmake --install` and CPack (`cpack -G DEB` in the build directory).
#
# Layout: bin/internlm and share/internlm/ (prompts.jsonl, report.schema.json, schemas/ and the
# InternLM2 tokenizer of the built-in default model). The binary finds share/internlm from its
# own location (src/common/data_path.cpp: /proc/self/exe -> ../share/internlm), so these two
# paths are fixed rather than GNUInstallDirs variables.
set(INTERNLM_INSTALL_DATADIR share/internlm)
install(TARGETS internlm RUNTIME DESTINATION bin)
install(FILES data/prompts.jsonl data/report.schema.json DESTINATION ${INTERNLM_INSTALL_DATADIR})
install(DIRECTORY data/schemas DESTINATION ${INTERNLM_INSTALL_DATADIR})
# The tokenizer lives next to the repository (../shared/models, see README); without it the
# installed `synth` and default model need --tokenizer / $INTERNLM_TOKENIZER_DIR.
set(INTERNLM_TOKENIZER_SRC "${CMAKE_CURRENT_SOURCE_DIR}/../shared/models/internlm2-tokenizer"
    CACHE PATH "InternLM2 tokenizer directory installed into share/internlm/internlm2-tokenizer")
if(EXISTS "${INTERNLM_TOKENIZER_SRC}/tokenizer.model")
  install(DIRECTORY "${INTERNLM_TOKENIZER_SRC}/" DESTINATION ${INTERNLM_INSTALL_DATADIR}/internlm2-tokenizer)
else()
  message(WARNING "No tokenizer.model in ${INTERNLM_TOKENIZER_SRC}: the install will not include the "
                  "tokenizer of the built-in default model")
endif()
# `install` / `cpack` install what is built and do not build `all` first (which would build the
# tests): build `internlm` first (`cmake --build build --target internlm`).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CPACK_PACKAGE_NAME internlm)
set(CPACK_PACKAGE_VENDOR "internlm.cpp")
set(CPACK_PACKAGE_CONTACT "internlm.cpp maintainers <internlm-cpp@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Inference engine for InternLM2 / InternLM2.5 (CLI, OpenAI-compatible server, validation)")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # internlm_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/InternLM/InternLM")
find_program(INTERNLM_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(INTERNLM_DPKG_SHLIBDEPS)
  # Depends: computed from the binary's shared libraries (libsentencepiece0, libfmt9, ...).
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "libsentencepiece0, libfmt9, libcpp-httplib0.11, libstdc++6, libc6")
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/" "/models/" "/reports/" "node_modules")
include(CPack)
