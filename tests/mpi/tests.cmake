# The MPI adapter's test: 2 processes under mpirun, compared with one process over all the
# data. Built when QLIB_MPI is ON and MPI is found.
if(QLIB_MPI)
  find_package(MPI COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    add_executable(mpi_allreduce_test ${CMAKE_CURRENT_LIST_DIR}/mpi_allreduce_test.cpp)
    target_link_libraries(mpi_allreduce_test PRIVATE qlib::qlib MPI::MPI_CXX)
    target_compile_definitions(mpi_allreduce_test PRIVATE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
    target_include_directories(mpi_allreduce_test PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
    target_compile_options(mpi_allreduce_test PRIVATE ${QLIB_WARNINGS})
    # Root may run mpirun only with --allow-run-as-root; --oversubscribe lets 2 ranks share
    # fewer cores. OMPI_MCA_* keep Open MPI on shared memory and loopback (no network).
    set(qlib_mpirun_flags --oversubscribe --allow-run-as-root)
    add_test(NAME mpi.allreduce_2_ranks
      COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${qlib_mpirun_flags} $<TARGET_FILE:mpi_allreduce_test>)
    set_tests_properties(mpi.allreduce_2_ranks PROPERTIES
      ENVIRONMENT "OMPI_MCA_btl=self,vader;OMPI_MCA_btl_vader_single_copy_mechanism=none;OMPI_MCA_rmaps_base_oversubscribe=1;QLIB_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
      TIMEOUT 120 PROCESSORS 2)
  else()
    message(STATUS "qlib: MPI not found; the MPI tests are not built")
  endif()
endif()
