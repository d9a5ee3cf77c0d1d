// Reading arguments from JavaScript. TypeScript validates and sets defaults; these checks are
// the safety net that keeps a wrong call from touching memory or descriptors it should not.
#ifndef WALRUS_ARGS_H_
#define WALRUS_ARGS_H_

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace walrus {

// A typed array's elements, as the engine reports them (data already includes byteOffset).
struct Bytes {
  uint8_t* data = nullptr;
  size_t length = 0;  // in elements
};

// Largest integer a double holds exactly; positions and lengths stay at or below it.
constexpr uint64_t kMaxSafeInteger = (uint64_t{1} << 53) - 1;

// True when `value` is an integer in [0, max].
bool IsIndex(double value, uint64_t max);

// The elements of a typed array of `type`; TypeError naming `name` otherwise.
Bytes TypedArrayArg(napi_env env, napi_value value, napi_typedarray_type type, const char* name);

inline Bytes Uint8ArrayArg(napi_env env, napi_value value, const char* name) {
  return TypedArrayArg(env, value, napi_uint8_array, name);
}

// A number that is an integer in [0, max]: TypeError when not a number, RangeError otherwise.
uint64_t IndexArg(napi_env env, napi_value value, uint64_t max, const char* name);

// A file descriptor: an integer in [0, INT32_MAX].
int FdArg(napi_env env, napi_value value, const char* name);

// A string without NUL bytes (a path handed to the kernel).
std::string PathArg(napi_env env, napi_value value, const char* name);

// An opaque handle for JavaScript: an External owning `data` (deleted when the handle is
// collected), tagged with `tag` so that HandleArg accepts only handles of its own kind.
template <typename T>
Napi::Value NewHandle(napi_env env, T* data, const napi_type_tag& tag) {
  auto handle = Napi::External<T>::New(env, data, [](Napi::Env, T* d) { delete d; });
  if (napi_type_tag_object(env, handle, &tag) != napi_ok) throw Napi::Error::New(env);
  return handle;
}

// What NewHandle(…, tag) wrapped; TypeError `message` for anything else.
void CheckHandle(napi_env env, napi_value value, const napi_type_tag& tag, const char* message);
template <typename T>
T* HandleArg(napi_env env, const Napi::Value& value, const napi_type_tag& tag, const char* message) {
  CheckHandle(env, value, tag, message);
  return value.As<Napi::External<T>>().Data();
}

}  // namespace walrus

#endif  // WALRUS_ARGS_H_
