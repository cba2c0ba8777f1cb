# Warnings and sanitizers for our own targets only: the layers, the tools and the tests link
# virtiofs_build_flags; nothing here is global, so nothing leaks into the installed package or
# into a project that builds against it.
if(VIRTIOFS_SANITIZE AND VIRTIOFS_SANITIZE_THREAD)
  message(FATAL_ERROR "VIRTIOFS_SANITIZE (ASan+UBSan) and VIRTIOFS_SANITIZE_THREAD (TSan) cannot "
                      "be combined (their runtimes exclude each other): use one build directory "
                      "for each, as scripts/test.sh does")
endif()
if(VIRTIOFS_FUZZ AND VIRTIOFS_SANITIZE_THREAD)
  message(FATAL_ERROR "VIRTIOFS_FUZZ builds with ASan+UBSan, which TSan excludes: drop "
                      "VIRTIOFS_SANITIZE_THREAD from the fuzz build")
endif()
if(VIRTIOFS_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "VIRTIOFS_FUZZ needs clang (CXX=clang++): libFuzzer is clang's")
endif()

add_library(virtiofs_build_flags INTERFACE)
target_compile_options(virtiofs_build_flags INTERFACE
  -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers
  $<$<BOOL:${VIRTIOFS_WERROR}>:-Werror>)
if(VIRTIOFS_SANITIZE)
  target_compile_options(virtiofs_build_flags INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(virtiofs_build_flags INTERFACE -fsanitize=address,undefined)
endif()
if(VIRTIOFS_SANITIZE_THREAD)
  # The ring's fences order memory shared with the device, which TSan cannot see; between our
  # own threads the queue lock orders everything, and that TSan checks.
  target_compile_options(virtiofs_build_flags INTERFACE
    -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  target_link_options(virtiofs_build_flags INTERFACE -fsanitize=thread)
endif()
if(VIRTIOFS_FUZZ)
  # Everything instrumented for coverage and checked by ASan+UBSan; the targets add the driver.
  target_compile_options(virtiofs_build_flags INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(virtiofs_build_flags INTERFACE -fsanitize=address,undefined)
endif()
if(VIRTIOFS_SANITIZE OR VIRTIOFS_SANITIZE_THREAD OR VIRTIOFS_FUZZ)
  set(VIRTIOFS_SANITIZED ON)
else()
  set(VIRTIOFS_SANITIZED OFF)
endif()
