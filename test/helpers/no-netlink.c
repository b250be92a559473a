/*
 * Preloaded into the test browser by test/helpers/browser.ts (LD_PRELOAD). Chromium watches the
 * machine's network interfaces over a NETLINK_ROUTE socket and fails every request in flight with
 * ERR_NETWORK_CHANGED when one appears; the Docker engine the tests drive adds one (a veth) for
 * every container it starts on this same machine. Refusing that one socket makes chromium take its
 * "cannot watch: assume the network stays as it is" path; every other socket is the real one.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
  static int (*real_socket)(int, int, int);
  if (domain == AF_NETLINK && protocol == NETLINK_ROUTE) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  if (!real_socket) real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
  return real_socket(domain, type, protocol);
}
