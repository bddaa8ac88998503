#ifndef MESHWORK_CSODIUM_SHIM_H
#define MESHWORK_CSODIUM_SHIM_H
// libsodium, as a system library (pkg-config "libsodium"; Debian/Ubuntu: libsodium-dev).
#include <sodium.h>
#endif
