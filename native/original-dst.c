// The original destination of a connection that iptables REDIRECTed to the
// sidecar (istio-iptables' nat rules): getsockopt(SO_ORIGINAL_DST), which
// Node has no API for. One function, originalDst(fd): "ADDRESS:PORT" (IPv6 in
// brackets), or null when the connection was not redirected (the kernel has
// no NAT record for it: ENOENT), which callers treat as "its local address".
// Any other failure throws an Error naming errno. As Envoy's
// Utility::getOriginalDst: SOL_IP for IPv4 sockets, SOL_IPV6
// (IP6T_SO_ORIGINAL_DST) for IPv6 ones, then SOL_IP for an IPv4-mapped peer.

#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

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

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn);
  napi_set_named_property(env, exports, "originalDst", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
