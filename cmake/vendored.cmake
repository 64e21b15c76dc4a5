# Third-party libraries from FER_VENDOR_DIR (made by scripts/prepare-gpu-bundle.sh),
# as the same targets find_package would give: for machines with LibTorch, CMake
# and a compiler but none of the -dev packages and no network.
set(vendor ${FER_VENDOR_DIR})
if(NOT IS_ABSOLUTE "${vendor}")
  set(vendor ${PROJECT_SOURCE_DIR}/${vendor})
endif()
if(NOT EXISTS ${vendor}/include/nlohmann/json.hpp)
  message(FATAL_ERROR "FER_VENDOR_DIR=${FER_VENDOR_DIR} is not a bundle from scripts/prepare-gpu-bundle.sh")
endif()

add_library(nlohmann_json INTERFACE)
target_include_directories(nlohmann_json SYSTEM INTERFACE ${vendor}/include)
add_library(nlohmann_json::nlohmann_json ALIAS nlohmann_json)

add_library(fer_vendored_cli11 INTERFACE)
target_include_directories(fer_vendored_cli11 SYSTEM INTERFACE ${vendor}/include)
add_library(CLI11::CLI11 ALIAS fer_vendored_cli11)

# fmt and spdlog header-only (Debian's spdlog headers expect an external fmt).
add_library(fer_vendored_fmt INTERFACE)
target_include_directories(fer_vendored_fmt SYSTEM INTERFACE ${vendor}/include)
target_compile_definitions(fer_vendored_fmt INTERFACE FMT_HEADER_ONLY)
add_library(fmt::fmt ALIAS fer_vendored_fmt)
add_library(fer_vendored_spdlog INTERFACE)
target_compile_definitions(fer_vendored_spdlog INTERFACE SPDLOG_HEADER_ONLY SPDLOG_FMT_EXTERNAL)
target_link_libraries(fer_vendored_spdlog INTERFACE fer_vendored_fmt)
add_library(spdlog::spdlog ALIAS fer_vendored_spdlog)

# yaml-cpp and zlib: their sources compiled as static libraries (their own
# CMake files predate CMake 4's minimum and would install things).
file(GLOB yaml_cpp_sources ${vendor}/yaml-cpp/src/*.cpp)
add_library(yaml-cpp STATIC ${yaml_cpp_sources})
target_include_directories(yaml-cpp SYSTEM PUBLIC ${vendor}/yaml-cpp/include)
set_target_properties(yaml-cpp PROPERTIES POSITION_INDEPENDENT_CODE ON)
set(zlib_sources adler32 compress crc32 deflate gzclose gzlib gzread gzwrite infback inffast inflate inftrees trees uncompr zutil)
list(TRANSFORM zlib_sources PREPEND ${vendor}/zlib/)
list(TRANSFORM zlib_sources APPEND .c)
enable_language(C)
add_library(fer_vendored_zlib STATIC ${zlib_sources})
target_include_directories(fer_vendored_zlib SYSTEM PUBLIC ${vendor}/zlib)
target_compile_definitions(fer_vendored_zlib PRIVATE HAVE_UNISTD_H HAVE_STDARG_H)
set_target_properties(fer_vendored_zlib PROPERTIES POSITION_INDEPENDENT_CODE ON)
add_library(ZLIB::ZLIB ALIAS fer_vendored_zlib)

if(FER_BUILD_TESTS)
  set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
  set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
  add_subdirectory(${vendor}/googletest ${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)  # defines GTest::gtest_main
endif()
