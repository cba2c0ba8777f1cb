# The installed package: the library, its headers, a CMake package (find_package(virtiofs),
# target virtiofs::virtiofs) and a pkg-config file, both relocatable: they find the rest of the
# installation from where they lie, so the tree may be moved after `cmake --install`.
install(TARGETS virtiofs EXPORT virtiofsTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/virtiofs DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT virtiofsTargets NAMESPACE virtiofs:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/virtiofs)

include(CMakePackageConfigHelpers)
if(VIRTIOFS_SHARED)
  set(VIRTIOFS_STATIC_PACKAGE OFF)
else()
  set(VIRTIOFS_STATIC_PACKAGE ON)
endif()
configure_package_config_file(cmake/virtiofsConfig.cmake.in
  ${PROJECT_BINARY_DIR}/virtiofsConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/virtiofs)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/virtiofsConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/virtiofsConfig.cmake ${PROJECT_BINARY_DIR}/virtiofsConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/virtiofs)

# pkg-config: prefix is found from the .pc file's own place (${pcfiledir}), the way back from
# LIBDIR/pkgconfig to the prefix worked out here. An absolute LIBDIR or INCLUDEDIR is used as
# given (that installation is then not relocatable).
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(VIRTIOFS_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(VIRTIOFS_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH up "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
  string(REGEX REPLACE "/$" "" up "${up}")
  set(VIRTIOFS_PC_PREFIX "\${pcfiledir}/${up}")
  set(VIRTIOFS_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(VIRTIOFS_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(VIRTIOFS_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# What a plain link (no --static) needs: libvirtiofs.so records liburing itself; a static
# libvirtiofs.a needs liburing and threads on the application's link line.
if(VIRTIOFS_SHARED)
  set(VIRTIOFS_PC_LINKING "Libs: -L\${libdir} -lvirtiofs\nLibs.private: -luring -pthread")
else()
  set(VIRTIOFS_PC_LINKING "Requires: liburing\nLibs: -L\${libdir} -lvirtiofs -pthread")
endif()
configure_file(cmake/virtiofs.pc.in ${PROJECT_BINARY_DIR}/virtiofs.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/virtiofs.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# Installed into the system (no DESTDIR, prefix /usr or /usr/local): refresh the dynamic
# linker's cache so that programs find libvirtiofs.so.1 at once, as Meson's install does.
if(VIRTIOFS_SHARED)
  install(CODE [[
    if("$ENV{DESTDIR}" STREQUAL "" AND CMAKE_INSTALL_PREFIX MATCHES "^/usr(/local)?/?$")
      execute_process(COMMAND ldconfig RESULT_VARIABLE status ERROR_QUIET)
      if(NOT status EQUAL 0)
        message(STATUS "ldconfig failed (not root?): run it before using libvirtiofs.so.1")
      endif()
    endif()
  ]])
endif()
