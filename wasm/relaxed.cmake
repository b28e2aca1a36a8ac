# doze-relaxed.wasm: doze.wasm with the quantized products on the relaxed-SIMD
# int8 dot (src/kernels/kernels_relaxed.c), chosen at load by js/src/wasm.js
# where the engine has the instruction; doze-mt-relaxed.wasm: the same for
# doze-mt.wasm (threads). Included from CMakeLists.txt's EMSCRIPTEN branch
# after link.cmake.
#
# Emscripten 3.1.6 ships LLVM 14, which has no relaxed-SIMD builtins, and its
# binaryen (108) knows only the pre-standard opcodes: it reads the final
# i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113) as a two-operand
# instruction and writes a module that does not validate. So the two files
# that differ (kernels_relaxed.c with the instruction, types.c pointing the
# q8_0/q4_0/q5_0 rows at it) are compiled by clang-16, and the module is linked by
# wasm-ld-16 from doze_wasm's other objects and Emscripten's libraries, with
# doze.wasm's exports and memory settings, and without binaryen (no wasm-opt
# pass over the whole module: the objects are -O3 already).

find_program(DOZE_CLANG16 clang-16 NO_CMAKE_FIND_ROOT_PATH)
find_program(DOZE_WASM_LD16 wasm-ld-16 NO_CMAKE_FIND_ROOT_PATH)
if(NOT DOZE_CLANG16 OR NOT DOZE_WASM_LD16)
  message(STATUS "clang-16 / wasm-ld-16 not found: no doze-relaxed.wasm (the strict doze.wasm is used everywhere)")
  return()
endif()

# doze_wasm's exports: the EXPORTED_FUNCTIONS of link.cmake
get_target_property(_opts doze_wasm LINK_OPTIONS)
string(REGEX MATCH "EXPORTED_FUNCTIONS=\\[[^]]*\\]" _exp "${_opts}")
string(REGEX MATCHALL "'_[A-Za-z0-9_]+'" _names "${_exp}")
set(_rel_exports "")
foreach(n ${_names})
  string(REGEX REPLACE "^'_(.*)'$" "\\1" n "${n}")
  list(APPEND _rel_exports --export-if-defined=${n})
endforeach()
if(NOT _rel_exports)
  message(FATAL_ERROR "relaxed.cmake: no EXPORTED_FUNCTIONS found in doze_wasm's link options")
endif()

# doze_relaxed_variant(TARGET BASE OUT DIR EXTRA_CFLAGS EXTRA_LDFLAGS): OUT is
# BASE's objects with types.c and kernels_relaxed.c rebuilt by clang-16 for
# relaxed SIMD (plus EXTRA_CFLAGS: the threaded build's atomics), linked by
# wasm-ld-16 with EXTRA_LDFLAGS (its shared, imported memory).
function(doze_relaxed_variant target base out dir extra_cflags extra_ldflags)
  set(_dir ${CMAKE_BINARY_DIR}/${dir})
  file(MAKE_DIRECTORY ${_dir})
  set(_cflags --target=wasm32-unknown-emscripten --sysroot=${EMSCRIPTEN_SYSROOT} -D__EMSCRIPTEN__ -DEMSCRIPTEN
      -DNDEBUG -std=c11 -O3 -msimd128 -mrelaxed-simd -DDOZE_RELAXED_SIMD=1 ${DOZE_COMMON_FLAGS} ${extra_cflags})
  foreach(d ${DOZE_INCLUDE_DIRS})
    list(APPEND _cflags -I${d})
  endforeach()
  set(_objs "")
  foreach(name types kernels_relaxed)
    set(_src ${CMAKE_SOURCE_DIR}/src/kernels/${name}.c)
    add_custom_command(OUTPUT ${_dir}/${name}.o
      COMMAND ${DOZE_CLANG16} ${_cflags} -MD -MF ${_dir}/${name}.d -c ${_src} -o ${_dir}/${name}.o
      DEPENDS ${_src} DEPFILE ${_dir}/${name}.d
      COMMENT "Building ${name}.c for ${out} (clang-16, relaxed SIMD)" VERBATIM)
    list(APPEND _objs ${_dir}/${name}.o)
  endforeach()
  set(_lib ${EMSCRIPTEN_SYSROOT}/lib/wasm32-emscripten)
  set(_out ${DOZE_WASM_OUT}/${out})
  add_custom_command(OUTPUT ${_out}
    COMMAND ${DOZE_WASM_LD16} -o ${_out}
      "$<FILTER:$<TARGET_OBJECTS:${base}>,EXCLUDE,/kernels/(types|kernels_relaxed)\\.c\\.o$>"
      ${_objs}
      -L${_lib} ${_lib}/crt1_reactor.o
      -lstandalonewasm-memgrow -lstubs -lnoexit -lc -ldlmalloc -lcompiler_rt
      --import-undefined --strip-debug ${_rel_exports}
      --export=stackSave --export=stackRestore --export=stackAlloc --export=__errno_location --export-table
      -z stack-size=${DOZE_WASM_STACK_SIZE} --initial-memory=${DOZE_WASM_INITIAL_MEMORY}
      --max-memory=4294967296 --entry=_initialize --global-base=1024 -O2 ${extra_ldflags}
    DEPENDS ${base} ${_objs} ${CMAKE_CURRENT_FUNCTION_LIST_FILE}
    COMMENT "Linking ${out} (wasm-ld-16)"
    COMMAND_EXPAND_LISTS VERBATIM)
  add_custom_target(${target} ALL DEPENDS ${_out})
endfunction()

doze_relaxed_variant(doze_wasm_relaxed doze_wasm doze-relaxed.wasm relaxed "" "")
if(DOZE_WASM_THREADS)
  # the threaded build's memory is shared and imported (link.cmake), and its
  # objects use atomics: so do the two rebuilt here
  doze_relaxed_variant(doze_wasm_mt_relaxed doze_wasm_mt doze-mt-relaxed.wasm relaxed-mt
    "-matomics;-mbulk-memory" "--shared-memory;--import-memory")
endif()
