// crc32c, sealFrames and verifyFrames. Frame layout comes only from layout.h: a
// RECORD_HEADER_BYTES header whose u32 at REC_LEN is the payload length and whose u32 at
// REC_CRC is the CRC32C of [RECORD_CRC_START, RECORD_HEADER_BYTES + len); frames follow each
// other at their footprint, (header + len) rounded up to RECORD_ALIGN.
#include <string>

#include "args.h"
#include "bindings.h"
#include "crc32c.h"
#include "errors.h"
#include "layout.h"

namespace walrus {
namespace {

constexpr uint64_t kHeaderBytes = WALRUS_RECORD_HEADER_BYTES;
constexpr uint64_t kAlign = WALRUS_RECORD_ALIGN;
static_assert(kAlign > 0 && (kAlign & (kAlign - 1)) == 0, "RECORD_ALIGN is a power of two");
static_assert(WALRUS_REC_LEN + 4 <= WALRUS_RECORD_HEADER_BYTES, "REC_LEN inside the header");
static_assert(WALRUS_REC_CRC + 4 <= WALRUS_RECORD_CRC_START, "the CRC does not cover itself");
static_assert(WALRUS_RECORD_CRC_START <= WALRUS_RECORD_HEADER_BYTES, "CRC starts in the header");

// `buf` may be a view of the ring that another thread is writing. Each field is read exactly
// once (volatile), so the length that passed the bounds check is the length that is used.
inline uint32_t LoadLe32Once(const uint8_t* p) {
  const volatile uint8_t* v = p;
  return static_cast<uint32_t>(v[0]) | static_cast<uint32_t>(v[1]) << 8 |
         static_cast<uint32_t>(v[2]) << 16 | static_cast<uint32_t>(v[3]) << 24;
}

inline void StoreLe32(uint8_t* p, uint32_t value) {
  p[0] = static_cast<uint8_t>(value);
  p[1] = static_cast<uint8_t>(value >> 8);
  p[2] = static_cast<uint8_t>(value >> 16);
  p[3] = static_cast<uint8_t>(value >> 24);
}

inline uint32_t FrameCrc(const uint8_t* frame, uint32_t len) {
  return Crc32c(frame + WALRUS_RECORD_CRC_START,
                kHeaderBytes - WALRUS_RECORD_CRC_START + static_cast<uint64_t>(len), 0);
}

inline uint64_t Footprint(uint32_t len) {
  return (kHeaderBytes + static_cast<uint64_t>(len) + kAlign - 1) & ~(kAlign - 1);
}

uint32_t SeedArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return 0;
  uint32_t seed;
  if (napi_get_value_uint32(info.Env(), info[index], &seed) != napi_ok) {
    ThrowType(info.Env(), "seed must be a number");
  }
  return seed;
}

Napi::Value Crc32cJs(const Napi::CallbackInfo& info) {
  const Bytes data = Uint8ArrayArg(info.Env(), info[0], "data");
  return Napi::Number::New(info.Env(), Crc32c(data.data, data.length, SeedArg(info, 1)));
}

Napi::Value Crc32cPortableJs(const Napi::CallbackInfo& info) {
  const Bytes data = Uint8ArrayArg(info.Env(), info[0], "data");
  return Napi::Number::New(info.Env(), Crc32cPortable(data.data, data.length, SeedArg(info, 1)));
}

Napi::Value Crc32cHardwareJs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Crc32cHardware());
}

void SealFramesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes buf = Uint8ArrayArg(env, info[0], "buf");
  const Bytes positions = TypedArrayArg(env, info[1], napi_uint32_array, "positions");
  const uint64_t count = IndexArg(env, info[2], positions.length, "count");
  const uint32_t* const position = reinterpret_cast<const uint32_t*>(positions.data);
  for (uint64_t i = 0; i < count; i++) {
    const uint64_t at = *static_cast<const volatile uint32_t*>(position + i);  // read once
    if (at > buf.length || buf.length - at < kHeaderBytes) {
      ThrowRange(env, "positions[" + std::to_string(i) + "] = " + std::to_string(at) +
                          " leaves no room for a frame header in buf");
    }
    uint8_t* const frame = buf.data + at;
    const uint32_t len = LoadLe32Once(frame + WALRUS_REC_LEN);
    if (buf.length - at - kHeaderBytes < len) {
      ThrowRange(env, "the frame at positions[" + std::to_string(i) + "] = " +
                          std::to_string(at) + " has length " + std::to_string(len) +
                          ", past the end of buf");
    }
    StoreLe32(frame + WALRUS_REC_CRC, FrameCrc(frame, len));
  }
}

Napi::Value VerifyFramesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes buf = Uint8ArrayArg(env, info[0], "buf");
  const uint64_t end = IndexArg(env, info[2], buf.length, "end");
  uint64_t at = IndexArg(env, info[1], end, "start");
  // Invariant: at <= end <= buf.length, so every read below stays inside buf.
  while (end - at >= kHeaderBytes) {
    const uint8_t* const frame = buf.data + at;
    const uint32_t len = LoadLe32Once(frame + WALRUS_REC_LEN);
    const uint64_t footprint = Footprint(len);
    if (footprint > end - at) break;
    if (LoadLe32Once(frame + WALRUS_REC_CRC) != FrameCrc(frame, len)) break;
    at += footprint;
  }
  return Napi::Number::New(env, static_cast<double>(at));
}

// sealRun(buf, start, limit, topic, offset, salt, room, out, indexBase, indexEvery): the
// worker's hot loop. From `start`, takes Entry frames of `topic` whose offsets continue from
// `offset`, while each fits before `limit` and the run stays within `room` bytes; stamps
// `salt` into each and seals its CRC. Walking and checksumming in one sequential pass lets
// the hardware prefetcher bring each next header in with the payload before it. Returns the
// bytes taken. out[0] = frames taken, out[1] = offset after the last frame whose `remaining`
// is 1 (-1 if none), out[2] = index pairs written from out[RUN_OUT_FIELDS]: (offset, position
// relative to start) of every frame whose offset is indexBase plus a multiple of indexEvery.
// Stops early when out has no room for a pair. The salt and CRC it stores are what
// sealFrame in src/shared/format/frame.ts stores (test/frame.test.ts).
Napi::Value SealRunJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes buf = Uint8ArrayArg(env, info[0], "buf");
  const uint64_t limit = IndexArg(env, info[2], buf.length, "limit");
  const uint64_t start = IndexArg(env, info[1], limit, "start");
  const uint32_t topic = static_cast<uint32_t>(IndexArg(env, info[3], UINT32_MAX, "topic"));
  uint64_t offset = IndexArg(env, info[4], kMaxSafeInteger, "offset");
  const uint32_t salt = static_cast<uint32_t>(IndexArg(env, info[5], UINT32_MAX, "salt"));
  const uint64_t room = IndexArg(env, info[6], kMaxSafeInteger, "room");
  const Bytes outBytes = TypedArrayArg(env, info[7], napi_float64_array, "out");
  const uint64_t indexBase = IndexArg(env, info[8], offset, "indexBase");
  const uint64_t indexEvery = IndexArg(env, info[9], UINT32_MAX, "indexEvery");
  constexpr uint64_t kOutFields = WALRUS_RUN_OUT_FIELDS;
  static_assert(kOutFields >= 3, "out[0..2] are the counts");
  if (outBytes.length < kOutFields || indexEvery == 0) {
    ThrowRange(env, "out needs " + std::to_string(kOutFields) + " elements and indexEvery must be > 0");
  }
  double* const out = reinterpret_cast<double*>(outBytes.data);
  const uint64_t maxPairs = (outBytes.length - kOutFields) / 2;
  uint64_t at = start;
  uint64_t frames = 0;
  uint64_t pairs = 0;
  double completeNext = -1;
  // Invariant: start <= at <= limit <= buf.length.
  while (limit - at >= kHeaderBytes) {
    uint8_t* const frame = buf.data + at;
    if (frame[WALRUS_REC_KIND] != WALRUS_RECORD_KIND_ENTRY || frame[WALRUS_REC_FLAGS] != 0) break;
    if (LoadLe32Once(frame + WALRUS_REC_TOPIC) != topic) break;
    const uint64_t off = LoadLe32Once(frame + WALRUS_REC_OFFSET_LO) |
                         static_cast<uint64_t>(LoadLe32Once(frame + WALRUS_REC_OFFSET_HI)) << 32;
    if (off != offset) break;
    const uint32_t len = LoadLe32Once(frame + WALRUS_REC_LEN);
    const uint64_t footprint = Footprint(len);
    if (footprint > limit - at || footprint > room - (at - start)) break;
    if ((off - indexBase) % indexEvery == 0) {
      if (pairs == maxPairs) break;
      out[kOutFields + 2 * pairs] = static_cast<double>(off);
      out[kOutFields + 2 * pairs + 1] = static_cast<double>(at - start);
      pairs++;
    }
    const uint32_t remaining = LoadLe32Once(frame + WALRUS_REC_REMAINING);
    StoreLe32(frame + WALRUS_REC_SALT, salt);
    StoreLe32(frame + WALRUS_REC_CRC, FrameCrc(frame, len));
    frames++;
    offset++;
    if (remaining == 1) completeNext = static_cast<double>(offset);
    at += footprint;
  }
  out[0] = static_cast<double>(frames);
  out[1] = completeNext;
  out[2] = static_cast<double>(pairs);
  return Napi::Number::New(env, static_cast<double>(at - start));
}

}  // namespace

void InitChecksums(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, Crc32cJs, "crc32c"));
  exports.Set("crc32cHardware", Napi::Function::New(env, Crc32cHardwareJs, "crc32cHardware"));
  exports.Set("sealFrames", Napi::Function::New(env, SealFramesJs, "sealFrames"));
  exports.Set("verifyFrames", Napi::Function::New(env, VerifyFramesJs, "verifyFrames"));
  exports.Set("sealRun", Napi::Function::New(env, SealRunJs, "sealRun"));
  // Not part of NativeBinding: lets tests check the portable code on machines with the
  // instruction.
  exports.Set("_crc32cPortable", Napi::Function::New(env, Crc32cPortableJs, "_crc32cPortable"));
}

}  // namespace walrus
