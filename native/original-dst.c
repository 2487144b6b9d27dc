// The original destination of a connection that iptables REDIRECTed to the
// sidecar (istio-iptables' nat rules): getsockopt(SO_ORIGINAL_DST), which
// Node has no API for. One function, originalDst(fd): "ADDRESS:PORT" (IPv6 in
// brackets), or null when the connection was not redirected (the kernel has
// no NAT record for it: ENOENT), which callers treat as "its local address".
// Any other failure throws an Error naming errno. As Envoy's
// Utility::getOriginalDst: SOL_IP for IPv4 sockets, SOL_IPV6
// (IP6T_SO_ORIGINAL_DST) for IPv6 ones, then SOL_IP for an IPv4-mapped peer.
//
// And reusePortListener(address, port, backlog): a listening TCP socket with
// SO_REUSEPORT, as Envoy binds each worker's listener (enable_reuse_port),
// which Node 20's net has no option for (reusePort came in Node 22.12). Each
// serving thread binds its own; the kernel spreads connections across them.

#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h: both 80.
#define INSTIO_SO_ORIGINAL_DST 80
#define INSTIO_IP6T_SO_ORIGINAL_DST 80

static napi_value throw_errno(napi_env env, const char* what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s (errno %d)", what, strerror(err), err);
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, NULL, "originalDst(fd): a file descriptor is required");
    return NULL;
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "originalDst(fd): fd must be a non-negative integer");
    return NULL;
  }

  struct sockaddr_storage local;
  socklen_t local_len = sizeof local;
  if (getsockname(fd, (struct sockaddr*)&local, &local_len) != 0) return throw_errno(env, "getsockname", errno);

  struct sockaddr_storage dst;
  socklen_t len = sizeof dst;
  int rc;
  if (local.ss_family == AF_INET6) {
    rc = getsockopt(fd, SOL_IPV6, INSTIO_IP6T_SO_ORIGINAL_DST, &dst, &len);
    if (rc != 0) {
      len = sizeof dst;
      rc = getsockopt(fd, SOL_IP, INSTIO_SO_ORIGINAL_DST, &dst, &len);
    }
  } else {
    rc = getsockopt(fd, SOL_IP, INSTIO_SO_ORIGINAL_DST, &dst, &len);
  }
  napi_value result;
  if (rc != 0) {
    if (errno == ENOENT) {
      napi_get_null(env, &result);
      return result;
    }
    return throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", errno);
  }

  char address[INET6_ADDRSTRLEN];
  char text[INET6_ADDRSTRLEN + 10];
  if (dst.ss_family == AF_INET) {
    const struct sockaddr_in* in = (const struct sockaddr_in*)&dst;
    inet_ntop(AF_INET, &in->sin_addr, address, sizeof address);
    snprintf(text, sizeof text, "%s:%u", address, (unsigned)ntohs(in->sin_port));
  } else if (dst.ss_family == AF_INET6) {
    const struct sockaddr_in6* in6 = (const struct sockaddr_in6*)&dst;
    inet_ntop(AF_INET6, &in6->sin6_addr, address, sizeof address);
    snprintf(text, sizeof text, "[%s]:%u", address, (unsigned)ntohs(in6->sin6_port));
  } else {
    napi_throw_error(env, NULL, "getsockopt(SO_ORIGINAL_DST): an address family that is neither IPv4 nor IPv6");
    return NULL;
  }
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &result);
  return result;
}

static napi_value reuse_port_listener(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char address[INET6_ADDRSTRLEN];
  size_t address_len;
  int32_t port, backlog;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_string_utf8(env, argv[0], address, sizeof address, &address_len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || napi_get_value_int32(env, argv[2], &backlog) != napi_ok ||
      port < 0 || port > 65535 || backlog < 1) {
    napi_throw_type_error(env, NULL, "reusePortListener(address, port, backlog): an IP address, a port 0..65535 and a positive backlog");
    return NULL;
  }
  struct sockaddr_storage at;
  memset(&at, 0, sizeof at);
  socklen_t at_len;
  int family;
  struct sockaddr_in* in = (struct sockaddr_in*)&at;
  struct sockaddr_in6* in6 = (struct sockaddr_in6*)&at;
  if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
    family = in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    at_len = sizeof *in;
  } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
    family = in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    at_len = sizeof *in6;
  } else {
    napi_throw_type_error(env, NULL, "reusePortListener: the address must be an IPv4 or IPv6 address");
    return NULL;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int on = 1;
  const char* step = NULL;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) step = "setsockopt(SO_REUSEADDR)";
  else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) step = "setsockopt(SO_REUSEPORT)";
  else if (bind(fd, (struct sockaddr*)&at, at_len) != 0) step = "bind";
  else if (listen(fd, backlog) != 0) step = "listen";
  if (step) {
    int err = errno;
    close(fd);
    char what[INET6_ADDRSTRLEN + 48];
    snprintf(what, sizeof what, "%s %s:%d", step, address, port);
    return throw_errno(env, what, err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn);
  napi_set_named_property(env, exports, "originalDst", fn);
  napi_create_function(env, "reusePortListener", NAPI_AUTO_LENGTH, reuse_port_listener, NULL, &fn);
  napi_set_named_property(env, exports, "reusePortListener", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
