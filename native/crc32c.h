// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) with the conventional pre- and
// post-inversion, so that Crc32c(b, Crc32c(a, 0)) == Crc32c(a || b, 0).
#ifndef WALRUS_CRC32C_H_
#define WALRUS_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace walrus {

// Uses the CPU's CRC32C instruction when this process may (detected once), else the
// portable code.
uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t seed);

// Table-driven slicing-by-8; same results as Crc32c on every machine.
uint32_t Crc32cPortable(const uint8_t* data, size_t length, uint32_t seed);

// True when Crc32c uses the hardware instruction.
bool Crc32cHardware();

}  // namespace walrus

#endif  // WALRUS_CRC32C_H_
