# virtiofs_layer(NAME SOURCES ... [LAYERS lower ...] [LIBS external ...])
# One layer of lib/ (docs/architecture.md) as a static PIC library virtiofs_NAME that links
# only the layers below it. The layer order is a rule of the build: a layer's include path holds
# its own folder and, through LAYERS, the folders of the layers it may use (each seen through a
# directory in the build tree that holds just that one folder), so an #include of a layer that
# was not declared below fails to compile.
function(virtiofs_layer name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;LAYERS;LIBS")
  set(target virtiofs_${name})
  set(view ${PROJECT_BINARY_DIR}/layers/${name})
  file(MAKE_DIRECTORY ${view})
  file(CREATE_LINK ${PROJECT_SOURCE_DIR}/lib/${name} ${view}/${name} SYMBOLIC)
  add_library(${target} STATIC ${arg_SOURCES})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/include ${view})
  # The public classes get default visibility (include/virtiofs/export.hpp).
  target_compile_definitions(${target} PRIVATE VIRTIOFS_BUILDING)
  list(TRANSFORM arg_LAYERS PREPEND virtiofs_)
  target_link_libraries(${target} PUBLIC ${arg_LAYERS} ${arg_LIBS} PRIVATE virtiofs_build_flags)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
