# libvirtiofs: the layers' objects in one library, shared (libvirtiofs.so.1, the default) or
# static (-DVIRTIOFS_SHARED=OFF). Only the public API (include/virtiofs/, VIRTIOFS_API) is
# exported from the shared library: -fvisibility=hidden hides the rest and the export map
# (lib/virtiofs.map) names what may leave, under the version node VIRTIOFS_1, as libfuse and
# SPDK do; tests/install/check_exports.sh holds both to the headers.
set(layer_objects)
foreach(layer ${VIRTIOFS_LAYERS})
  list(APPEND layer_objects $<TARGET_OBJECTS:virtiofs_${layer}>)
endforeach()
if(VIRTIOFS_SHARED)
  add_library(virtiofs SHARED ${layer_objects})
else()
  add_library(virtiofs STATIC ${layer_objects})
endif()
add_library(virtiofs::virtiofs ALIAS virtiofs)
target_include_directories(virtiofs INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# The public headers need C++20 (std::span, std::stop_token): users get it from the target.
target_compile_features(virtiofs INTERFACE cxx_std_20)
# liburing and threads stay private to the shared library (it records them itself); a static
# libvirtiofs.a passes them on, and virtiofsConfig.cmake finds them for its users.
target_link_libraries(virtiofs PRIVATE PkgConfig::LIBURING Threads::Threads
  $<BUILD_INTERFACE:virtiofs_build_flags>)
# The ABI's number, in the soname and the export map's node: raised by every incompatible
# change of the public types or calls (1: Options, Entry and Stats grew for the path cache and
# adaptive polling).
set(VIRTIOFS_ABI 1)
set_target_properties(virtiofs PROPERTIES LINKER_LANGUAGE CXX
  VERSION ${VIRTIOFS_ABI}.${PROJECT_VERSION_MINOR}.${PROJECT_VERSION_PATCH} SOVERSION ${VIRTIOFS_ABI})
if(VIRTIOFS_SHARED)
  set(export_map ${PROJECT_SOURCE_DIR}/lib/virtiofs.map)
  target_link_options(virtiofs PRIVATE -Wl,--version-script=${export_map})
  set_property(TARGET virtiofs APPEND PROPERTY LINK_DEPENDS ${export_map})
  if(NOT VIRTIOFS_SANITIZED)
    # Every symbol resolved when the library is linked: it names all it needs (liburing, libc),
    # so a plain link of an application needs only -lvirtiofs. (A sanitizer's runtime is linked
    # into the executable, not into shared libraries, so those builds leave it out.)
    target_link_options(virtiofs PRIVATE -Wl,--no-undefined)
  endif()
endif()
