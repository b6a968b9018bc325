# Which engine backends this build has: OpenVINO and TensorRT, each detected at configure time with
# a one-line status. Sets MIRNET_HAVE_OPENVINO / MIRNET_HAVE_TRT (and TENSORRT_INCLUDE_DIR,
# TENSORRT_NVINFER_LIBRARY, TENSORRT_VERSION for TensorRT).

# --- OpenVINO: the `openvino` wheel ships the C++ headers, libraries and OpenVINOConfig.cmake ------
set(MIRNET_HAVE_OPENVINO OFF)
if(MIRNET_BUILD_OPENVINO)
  if(NOT OpenVINO_DIR AND EXISTS "${MIRNET_PYTHON}")
    execute_process(
      COMMAND "${MIRNET_PYTHON}" -c "import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), 'cmake'))"
      OUTPUT_VARIABLE _ov_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _ov_rc)
    if(_ov_rc EQUAL 0 AND EXISTS "${_ov_dir}/OpenVINOConfig.cmake")
      set(OpenVINO_DIR "${_ov_dir}" CACHE PATH "OpenVINO's CMake package folder" FORCE)
    endif()
  endif()
  find_package(OpenVINO QUIET COMPONENTS Runtime)
  if(OpenVINO_FOUND)
    set(MIRNET_HAVE_OPENVINO ON)
    message(STATUS "mirnet: OpenVINO engine ON (OpenVINO ${OpenVINO_VERSION}, ${OpenVINO_DIR})")
  else()
    message(STATUS "mirnet: OpenVINO engine OFF: OpenVINO not found (pip install openvino, then pass "
                   "-DOpenVINO_DIR=$(python -c \"import openvino, os; print(os.path.join(os.path.dirname("
                   "openvino.__file__), 'cmake'))\") or -DMIRNET_PYTHON=<venv>/bin/python)")
  endif()
else()
  message(STATUS "mirnet: OpenVINO engine OFF (MIRNET_BUILD_OPENVINO=OFF)")
endif()

# --- TensorRT + CUDA runtime ---------------------------------------------------------------------
set(MIRNET_HAVE_TRT OFF)
if(NOT MIRNET_BUILD_TRT)
  if(MIRNET_REQUIRE_TRT)
    message(FATAL_ERROR "mirnet: MIRNET_REQUIRE_TRT=ON contradicts MIRNET_BUILD_TRT=OFF.")
  endif()
  message(STATUS "mirnet: TensorRT engine OFF (MIRNET_BUILD_TRT=OFF)")
  return()
endif()

find_package(CUDAToolkit QUIET)
set(_trt_hints ${TENSORRT_ROOT} /usr/local/TensorRT /opt/tensorrt /usr/src/tensorrt)
set(_trt_lib_suffixes lib lib64 lib/x86_64-linux-gnu lib/aarch64-linux-gnu targets/x86_64-linux/lib
                      targets/aarch64-linux/lib)
set(_trt_lib_paths /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib /usr/local/lib /usr/local/cuda/lib64)
find_path(TENSORRT_INCLUDE_DIR NvInfer.h
  HINTS ${_trt_hints}
  PATH_SUFFIXES include include/x86_64-linux-gnu include/aarch64-linux-gnu
  PATHS /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/include /usr/local/include
        /usr/local/cuda/include)
find_library(TENSORRT_NVINFER_LIBRARY NAMES nvinfer HINTS ${_trt_hints} PATH_SUFFIXES ${_trt_lib_suffixes}
             PATHS ${_trt_lib_paths})

# A pip-only TensorRT (the `tensorrt` wheel) has no headers and only versioned libraries
# (site-packages/tensorrt_libs/libnvinfer.so.10 or .so.11): look for those too, to say what is there.
set(_trt_versioned)
if(NOT TENSORRT_NVINFER_LIBRARY)
  set(_trt_dirs)
  foreach(hint ${_trt_hints})
    foreach(suffix ${_trt_lib_suffixes})
      list(APPEND _trt_dirs "${hint}/${suffix}")
    endforeach()
  endforeach()
  list(APPEND _trt_dirs ${_trt_lib_paths})
  if(EXISTS "${MIRNET_PYTHON}")
    execute_process(
      COMMAND "${MIRNET_PYTHON}" -c "import tensorrt_libs, os; print(os.path.dirname(tensorrt_libs.__file__))"
      OUTPUT_VARIABLE _trt_pip_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _trt_pip_rc)
    if(_trt_pip_rc EQUAL 0)
      list(APPEND _trt_dirs "${_trt_pip_dir}")
    endif()
  endif()
  foreach(dir ${_trt_dirs})
    file(GLOB _found "${dir}/libnvinfer.so.1[0-9]*")
    list(APPEND _trt_versioned ${_found})
  endforeach()
  list(REMOVE_DUPLICATES _trt_versioned)
endif()

set(_trt_missing)
if(NOT TENSORRT_INCLUDE_DIR)
  list(APPEND _trt_missing "the TensorRT headers NvInfer.h (set TENSORRT_ROOT to a TensorRT tarball, or install the TensorRT dev package: the pip wheel has no headers)")
endif()
if(NOT TENSORRT_NVINFER_LIBRARY)
  if(_trt_versioned)
    list(JOIN _trt_versioned ", " _trt_versioned_text)
    list(APPEND _trt_missing "an unversioned libnvinfer.so to link (found only ${_trt_versioned_text}, as a pip install ships it: use a TensorRT tarball or dev package, or set TENSORRT_ROOT)")
  else()
    list(APPEND _trt_missing "the TensorRT library libnvinfer.so (set TENSORRT_ROOT)")
  endif()
endif()
if(NOT CUDAToolkit_FOUND)
  list(APPEND _trt_missing "the CUDA toolkit (set CUDAToolkit_ROOT)")
endif()

if(NOT _trt_missing)
  set(TENSORRT_VERSION "unknown")
  if(EXISTS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h")
    # Plain numbers, or the TRT_*_ENTERPRISE indirection of newer headers.
    file(READ "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h" _trt_version_h)
    foreach(part MAJOR MINOR PATCH)
      set(TENSORRT_VERSION_${part} "")
      if(_trt_version_h MATCHES "#define[ \t]+NV_TENSORRT_${part}[ \t]+([0-9]+)")
        set(TENSORRT_VERSION_${part} "${CMAKE_MATCH_1}")
      elseif(_trt_version_h MATCHES "#define[ \t]+TRT_${part}_ENTERPRISE[ \t]+([0-9]+)")
        set(TENSORRT_VERSION_${part} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
    if(TENSORRT_VERSION_MAJOR)
      set(TENSORRT_VERSION "${TENSORRT_VERSION_MAJOR}.${TENSORRT_VERSION_MINOR}.${TENSORRT_VERSION_PATCH}")
    endif()
  endif()
  if(TENSORRT_VERSION_MAJOR AND TENSORRT_VERSION_MAJOR LESS 10)
    list(APPEND _trt_missing "TensorRT 10 or 11 (found ${TENSORRT_VERSION}, but enqueueV3 and the name-based tensor API are needed)")
  endif()
endif()

if(_trt_missing)
  list(JOIN _trt_missing "; " _trt_missing_text)
  if(MIRNET_REQUIRE_TRT)
    message(FATAL_ERROR "mirnet: MIRNET_REQUIRE_TRT=ON but the TensorRT engine cannot be built. Missing: "
                        "${_trt_missing_text}.")
  endif()
  message(STATUS "mirnet: TensorRT engine OFF, missing: ${_trt_missing_text}")
else()
  set(MIRNET_HAVE_TRT ON)
  message(STATUS "mirnet: TensorRT engine ON (TensorRT ${TENSORRT_VERSION}, ${TENSORRT_NVINFER_LIBRARY}, "
                 "CUDA ${CUDAToolkit_VERSION})")
endif()
