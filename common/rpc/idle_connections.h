// Test helpers for connection-flood tests: raw TCP connections to a loopback
// server that never send a byte, and a bounded wait for the server to close
// them. Used by //common/rpc:rpc_test and //tests:connection_flood_test.
#ifndef SPHERE_COMMON_RPC_IDLE_CONNECTIONS_H_
#define SPHERE_COMMON_RPC_IDLE_CONNECTIONS_H_

#include <vector>

#include "absl/time/time.h"

namespace sphere::rpc {

// OpenIdle opens up to `n` non-blocking TCP connections to 127.0.0.1:port
// that never send a byte; stops early when a socket cannot be made.
std::vector<int> OpenIdle(int port, int n);

// WaitClosedByServer polls `fds` until at least `want` of them reached
// end-of-stream or reset (the server closed them), or `deadline` passed;
// returns how many did.
int WaitClosedByServer(const std::vector<int>& fds, int want,
                       absl::Duration deadline);

}  // namespace sphere::rpc

#endif  // SPHERE_COMMON_RPC_IDLE_CONNECTIONS_H_
