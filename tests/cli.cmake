# cli tests: the ssltrain program as a user (or PyTorch) sees it.

# `ssltrain params` lists exactly the PyTorch state_dict of bench/torch_step.py's build_model
# (names, order, shapes, param/buffer) for several model configs. Needs Debian's python3-torch
# under /usr/bin/python3; the script exits 77 (skipped) when torch cannot be imported.
add_test(NAME state_dict_names
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_state_dict.py
                 --ssltrain $<TARGET_FILE:ssltrain>)
set_tests_properties(state_dict_names PROPERTIES LABELS "cli;pytorch" SKIP_RETURN_CODE 77
                     TIMEOUT 300)
