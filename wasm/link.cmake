# Link settings for the standalone doze.wasm (included from CMakeLists.txt,
# EMSCRIPTEN branch, target doze_wasm). No Emscripten JS is used: the module
# is loaded by js/src/wasm.js, which supplies the env.host_* imports
# (wasm/io_host.c), env.emscripten_notify_memory_growth and a minimal WASI
# shim. DOZE_WASM_OUT (default js/dist) is set by CMakeLists.txt.

set(DOZE_WASM_INITIAL_MEMORY 16777216 CACHE STRING "initial wasm memory, bytes")
set(DOZE_WASM_STACK_SIZE 1048576 CACHE STRING "wasm shadow stack, bytes")

# Emscripten 3.1.6 rejects undefined symbols it has no JS library entry for,
# even ones declared with import_module("env") (as io_host.c does). A JS
# library naming them (bodies unused: we ship no Emscripten JS) makes them
# plain env imports while every other undefined symbol stays a link error.
set(DOZE_WASM_HOST_IMPORTS host_open host_read host_write host_size host_close host_remove host_rename host_now)
set(_doze_lib "mergeInto(LibraryManager.library, {\n")
foreach(fn ${DOZE_WASM_HOST_IMPORTS})
  string(APPEND _doze_lib "  ${fn}: function() { throw new Error('${fn}: provided by js/src/wasm.js'); },\n")
endforeach()
string(APPEND _doze_lib "});\n")
set(DOZE_WASM_HOST_LIBRARY ${CMAKE_BINARY_DIR}/doze_host_imports.js)
file(CONFIGURE OUTPUT ${DOZE_WASM_HOST_LIBRARY} CONTENT "${_doze_lib}")

# Emscripten 3.1.6 spells the stack setting TOTAL_STACK (STACK_SIZE came in
# 3.1.25, which keeps TOTAL_STACK as an alias).
set(_doze_link_options
  -O3
  -msimd128
  -sSTANDALONE_WASM=1
  --no-entry
  -sALLOW_MEMORY_GROWTH=1
  -sMAXIMUM_MEMORY=4GB
  -sINITIAL_MEMORY=${DOZE_WASM_INITIAL_MEMORY}
  -sTOTAL_STACK=${DOZE_WASM_STACK_SIZE}
  "-sEXPORTED_FUNCTIONS=['_malloc','_free','_doze_cli_main',\
'_doze_status_name','_doze_type_name',\
'_doze_loader_feed','_doze_loader_free','_doze_model_free',\
'_doze_tokenize','_doze_token_to_piece','_doze_token_is_eog',\
'_doze_vocab_load','_doze_vocab_free','_doze_vocab_size','_doze_vocab_tokenize',\
'_doze_vocab_token_to_piece','_doze_vocab_is_eog',\
'_doze_model_meta_string',\
'_doze_session_new','_doze_session_free','_doze_session_reset','_doze_session_pos',\
'_doze_session_step','_doze_session_logits','_doze_session_prefill',\
'_doze_sampler_sample','_doze_sampler_free',\
'_doze_session_step_masked','_doze_session_layer_mask','_doze_session_head_mask',\
'_doze_session_prefill_masked','_doze_session_ffn_mask','_doze_session_expert_mask',\
'_doze_session_compute','_doze_session_set_budget','_doze_session_get_budget',\
'_doze_session_set_gates','_doze_gates_free',\
'_doze_finetune_finish','_doze_finetune_check_model','_doze_finetune_take_gates','_doze_finetune_tokens','_doze_finetune_free',\
'_doze_session_truncate','_doze_session_score','_doze_tokenize_literal','_doze_speculator_free','_doze_speculator_logits']"
  "SHELL:--js-library ${DOZE_WASM_HOST_LIBRARY}")

set_target_properties(doze_wasm PROPERTIES
  OUTPUT_NAME doze
  SUFFIX ".wasm"
  RUNTIME_OUTPUT_DIRECTORY ${DOZE_WASM_OUT})
target_link_options(doze_wasm PRIVATE ${_doze_link_options})
set_property(TARGET doze_wasm APPEND PROPERTY LINK_DEPENDS
  ${DOZE_WASM_HOST_LIBRARY} ${CMAKE_CURRENT_LIST_FILE})

# doze-mt.wasm: the same module for threads (js/src/pool.js). Its memory is
# shared and imported (env.memory, made by the glue), so that every worker
# instantiates the module on it; wasm-ld then makes the data segments
# passive, initialised once by whichever instance starts first. Without
# -pthread Emscripten adds no thread runtime: the pool (src/runtime/pool.c)
# is ours, and each worker gets its stack from the pool.
if(DOZE_WASM_THREADS)
  set_target_properties(doze_wasm_mt PROPERTIES
    OUTPUT_NAME doze-mt
    SUFFIX ".wasm"
    RUNTIME_OUTPUT_DIRECTORY ${DOZE_WASM_OUT})
  target_link_options(doze_wasm_mt PRIVATE ${_doze_link_options}
    -matomics -mbulk-memory -Wl,--shared-memory -Wl,--import-memory)
  set_property(TARGET doze_wasm_mt APPEND PROPERTY LINK_DEPENDS
    ${DOZE_WASM_HOST_LIBRARY} ${CMAKE_CURRENT_LIST_FILE})
endif()
