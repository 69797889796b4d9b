# The libtorch adapter (qlib/torch.hpp) against libtorch's own fake-quant ops. Opt-in:
# built only when libtorch is found (Debian: libtorch-dev 1.13, whose TorchConfig.cmake is
# in /usr/lib/<arch>/cmake/Torch, found by find_package without hints).
find_package(Torch CONFIG QUIET)
if(Torch_FOUND)
  qlib_add_test(torch.adapter ${CMAKE_CURRENT_LIST_DIR}/torch_adapter_test.cpp LIBS ${TORCH_LIBRARIES})
  set_tests_properties(torch.adapter PROPERTIES
    ENVIRONMENT "QLIB_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMP_NUM_THREADS=1" LABELS torch)
  # qlib/torch.hpp on its own, with the strict warnings (libtorch's headers are SYSTEM).
  file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/header_checks/qlib_torch_hpp.cpp
       CONTENT "#include <qlib/torch.hpp>\n#include <qlib/torch.hpp>  // include guard\n")
  add_library(qlib_header_check_torch OBJECT ${CMAKE_CURRENT_BINARY_DIR}/header_checks/qlib_torch_hpp.cpp)
  target_link_libraries(qlib_header_check_torch PRIVATE qlib::qlib ${TORCH_LIBRARIES})
  target_compile_options(qlib_header_check_torch PRIVATE ${QLIB_WARNINGS})
else()
  message(STATUS "qlib: libtorch not found; the libtorch adapter's tests are not built")
endif()
