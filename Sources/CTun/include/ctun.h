#ifndef MESHWORK_CTUN_H
#define MESHWORK_CTUN_H

#include <stdint.h>

/// Opens /dev/net/tun and attaches a TUN device (IFF_TUN | IFF_NO_PI) named `name`
/// (created if absent; gone when the last descriptor closes). Writes the kernel's name
/// into `actual` (at least 16 bytes). Returns the descriptor, or -errno.
int mw_tun_open(const char *name, char *actual);

/// Sets the interface's MTU. 0 or -errno.
int mw_if_set_mtu(const char *name, int mtu);

/// Sets the interface's IPv4 address and prefix length (replacing the address it had).
/// `address` in host byte order. 0 or -errno.
int mw_if_set_ipv4(const char *name, uint32_t address, int prefix_length);

/// Brings the interface up. 0 or -errno.
int mw_if_up(const char *name);

#endif
