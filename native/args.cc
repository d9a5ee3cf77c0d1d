#include "args.h"

#include <climits>
#include <cmath>
#include <cstdio>
#include <string>

#include "errors.h"

namespace walrus {

bool IsIndex(double value, uint64_t max) {
  return std::isfinite(value) && value >= 0 && value == std::floor(value) &&
         value <= static_cast<double>(max);
}

void CheckHandle(napi_env env, napi_value value, const napi_type_tag& tag, const char* message) {
  napi_valuetype type;
  bool tagged = false;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &tag, &tagged) != napi_ok || !tagged) {
    ThrowType(Napi::Env(env), message);
  }
}

Bytes TypedArrayArg(napi_env env, napi_value value, napi_typedarray_type type, const char* name) {
  static const char* const kTypeNames[] = {
      "an Int8Array",   "a Uint8Array",   "a Uint8ClampedArray", "an Int16Array",
      "a Uint16Array",  "an Int32Array",  "a Uint32Array",       "a Float32Array",
      "a Float64Array", "a BigInt64Array", "a BigUint64Array"};
  napi_typedarray_type actual;
  size_t length = 0;
  void* data = nullptr;
  // Fails (without a pending exception) when `value` is not a typed array.
  if (napi_get_typedarray_info(env, value, &actual, &length, &data, nullptr, nullptr) != napi_ok ||
      actual != type) {
    const size_t index = static_cast<size_t>(type);
    ThrowType(Napi::Env(env), std::string(name) + " must be " +
                                  (index < sizeof kTypeNames / sizeof kTypeNames[0]
                                       ? kTypeNames[index]
                                       : "a typed array"));
  }
  Bytes bytes;
  // An empty view may report no data pointer at all.
  bytes.data = static_cast<uint8_t*>(data);
  bytes.length = bytes.data == nullptr ? 0 : length;
  return bytes;
}

uint64_t IndexArg(napi_env env, napi_value value, uint64_t max, const char* name) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok) {
    ThrowType(Napi::Env(env), std::string(name) + " must be a number");
  }
  if (!IsIndex(number, max)) {
    char got[32];
    std::snprintf(got, sizeof got, "%.17g", number);
    ThrowRange(Napi::Env(env), std::string(name) + " must be an integer from 0 to " +
                                   std::to_string(max) + ", got " + got);
  }
  return static_cast<uint64_t>(number);
}

int FdArg(napi_env env, napi_value value, const char* name) {
  return static_cast<int>(IndexArg(env, value, INT_MAX, name));
}

std::string PathArg(napi_env env, napi_value value, const char* name) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, nullptr, 0, &length) != napi_ok) {
    ThrowType(Napi::Env(env), std::string(name) + " must be a string");
  }
  std::string path(length, '\0');
  napi_get_value_string_utf8(env, value, &path[0], length + 1, &length);
  if (path.find('\0') != std::string::npos) {
    ThrowType(Napi::Env(env), std::string(name) + " must not contain NUL bytes");
  }
  return path;
}

}  // namespace walrus
