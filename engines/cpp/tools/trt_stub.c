/* A stand-in libnvinfer.so for tools/trt_compile_check.sh: the C symbols that the TensorRT
 * headers' inline functions call, so that libmirnet and mirnet_run link against real TensorRT
 * headers on a machine without TensorRT. It is never run: every function fails. */
void* createInferRuntime_INTERNAL(void* logger, int version) { (void)logger; (void)version; return 0; }
int getInferLibVersion(void) { return 0; }
int getInferLibMajorVersion(void) { return 0; }
int getInferLibMinorVersion(void) { return 0; }
int getInferLibPatchVersion(void) { return 0; }
int getInferLibBuildVersion(void) { return 0; }
