/* Stand-ins for the TensorRT libraries that the TensorRT Python bindings (tensorrt.so) link:
 * libnvinfer.so.N, libnvinfer_plugin.so.N and libnvonnxparser.so.N, compiled from this one file
 * (tests/conformance/bindings.py) so that the real bindings of TensorRT 10.x and 11.x import on a
 * machine without TensorRT and can be introspected. Every factory returns NULL: no TensorRT object
 * can be created, and none is; the conformance suite calls a double generated from the bindings'
 * signatures instead. The version getters are those the C++ runner links (getInferLibVersion in
 * 10.x and 11.x, the per-field getters since 10.x). Argument types are those of the headers; the
 * bindings only need the symbols to resolve. */
#include <stddef.h>
#include <stdint.h>

void *createInferBuilder_INTERNAL(void *logger, int32_t version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int32_t version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int32_t version) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(int32_t capability) { return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int32_t version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int32_t version) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
_Bool initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }
int32_t getInferLibVersion(void) { return 0; }
int32_t getInferLibMajorVersion(void) { return 0; }
int32_t getInferLibMinorVersion(void) { return 0; }
int32_t getInferLibPatchVersion(void) { return 0; }
int32_t getInferLibBuildVersion(void) { return 0; }
