# One library per top-level folder, and an include path per library that holds only its own folder and the folders
# of the libraries it links, so that an #include pointing upward (engine/ including "harness/evaluator.h") fails
# to compile. Sources include with paths from the repository root ("core/check.h", "tasks/task.h"); the root
# itself is never an include directory of a library. Instead each folder gets a root of its own in the build tree,
# ${CMAKE_BINARY_DIR}/include/<folder>/, holding one symbolic link, <folder> -> the source folder, and a target's
# include path is its own root plus, through PUBLIC usage requirements, the roots of what it links.
# tests/layering/check_layering.py proves it with real compiles (README.md, "Layout").

set(MLABENCH_INCLUDE_ROOTS "${CMAKE_BINARY_DIR}/include")

# mlabench_folder_includes(<target> <folder>): <folder>'s root on <target>'s include path: PUBLIC for a library
# (what links it may include its headers), PRIVATE for an executable.
function(mlabench_folder_includes target folder)
  set(root "${MLABENCH_INCLUDE_ROOTS}/${folder}")
  file(MAKE_DIRECTORY "${root}")
  file(CREATE_LINK "${PROJECT_SOURCE_DIR}/${folder}" "${root}/${folder}" SYMBOLIC)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    target_include_directories(${target} PRIVATE "${root}")
  else()
    target_include_directories(${target} PUBLIC "${root}")
  endif()
endfunction()

# mlabench_folder_library(<name> <folder> [DEPS <lower library>...]): the library of <folder>, its sources from
# <folder>/sources.cmake, linking the lower libraries it uses (PUBLIC: their headers appear in its headers).
function(mlabench_folder_library name folder)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "DEPS")
  add_library(${name})
  mlabench_folder_includes(${name} ${folder})
  target_link_libraries(${name} PUBLIC ${arg_DEPS})
endfunction()
