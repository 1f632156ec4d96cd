# `cmake --install build --prefix P` installs the packptq command, the
# libraries and their headers, a CMake package, so that an application finds
# the library with find_package(packptq) (tools/example is one), and a
# pkg-config file for other build systems.
include(CMakePackageConfigHelpers)

set(PACKPTQ_LIBRARIES packptq_kernels packptq_engine packptq_nets packptq_quant packptq_data)
if(PACKPTQ_WITH_ONNX)
  list(APPEND PACKPTQ_LIBRARIES packptq_onnx)
endif()
foreach(library ${PACKPTQ_LIBRARIES})
  string(REPLACE "packptq_" "" short_name ${library})
  set_target_properties(${library} PROPERTIES EXPORT_NAME ${short_name})
endforeach()

install(TARGETS packptq RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${PACKPTQ_LIBRARIES} EXPORT packptqTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

# The public headers; the backends' own headers (kernels/cpu, kernels/cuda)
# stay private.
set(packptq_include ${CMAKE_INSTALL_INCLUDEDIR}/packptq)
set(packptq_header_folders engine kernels nets quant tools/data)
if(PACKPTQ_WITH_ONNX)
  list(APPEND packptq_header_folders quant/onnx)
endif()
foreach(folder ${packptq_header_folders})
  file(GLOB headers ${PROJECT_SOURCE_DIR}/${folder}/*.h)
  install(FILES ${headers} DESTINATION ${packptq_include}/${folder})
endforeach()

set(packptq_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/packptq)
install(EXPORT packptqTargets NAMESPACE packptq:: DESTINATION ${packptq_cmake_dir})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/packptq-config.cmake.in
                              ${PROJECT_BINARY_DIR}/packptq-config.cmake
                              INSTALL_DESTINATION ${packptq_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/packptq-config-version.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/packptq-config.cmake
              ${PROJECT_BINARY_DIR}/packptq-config-version.cmake
        DESTINATION ${packptq_cmake_dir})

# packptq.pc: the libraries in link order (each before what it uses), then
# what the static libraries need from the system.
string(REGEX REPLACE "[^/]+" ".." PACKPTQ_PC_TO_PREFIX "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
string(REPLACE ";" " " PACKPTQ_PC_OPENMP "${OpenMP_CXX_FLAGS}")
set(PACKPTQ_PC_CUDA_LIBS "")
if(PACKPTQ_WITH_CUDA)
  set(cuda_dir ${CUDAToolkit_LIBRARY_DIR})
  set(PACKPTQ_PC_CUDA_LIBS "-L${cuda_dir} -Wl,-rpath,${cuda_dir} -lcudart -lcublas ${PACKPTQ_CUDNN_LIB}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/packptq.pc.in ${PROJECT_BINARY_DIR}/packptq.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/packptq.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
