#include "common/rpc/idle_connections.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/time/clock.h"

namespace sphere::rpc {

std::vector<int> OpenIdle(int port, int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
        errno != EINPROGRESS) {
      close(fd);
      break;
    }
    fds.push_back(fd);
  }
  return fds;
}

int WaitClosedByServer(const std::vector<int>& fds, int want,
                       absl::Duration deadline) {
  const absl::Time end = absl::Now() + deadline;
  std::vector<bool> closed(fds.size(), false);
  int count = 0;
  while (count < want && absl::Now() < end) {
    std::vector<pollfd> pfds;
    std::vector<size_t> index;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!closed[i]) {
        pfds.push_back({fds[i], POLLIN | POLLRDHUP, 0});
        index.push_back(i);
      }
    }
    int n =
        poll(pfds.data(), pfds.size(),
             static_cast<int>(absl::ToInt64Milliseconds(end - absl::Now())));
    if (n <= 0) break;
    for (size_t j = 0; j < pfds.size(); ++j) {
      if (pfds[j].revents == 0) continue;
      char b;
      if (recv(pfds[j].fd, &b, 1, MSG_DONTWAIT) <= 0 && errno != EAGAIN) {
        closed[index[j]] = true;
        ++count;
      } else if ((pfds[j].revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0) {
        closed[index[j]] = true;
        ++count;
      }
    }
  }
  return count;
}

}  // namespace sphere::rpc
