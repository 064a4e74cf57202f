#include "tests/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sphere::testing {

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(
    const std::string& target_host, int target_port) {
  std::unique_ptr<TcpProxy> p(new TcpProxy());
  p->target_host_ = target_host;
  p->target_port_ = target_port;
  p->listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p->listener_ < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(p->listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      listen(p->listener_, 64) != 0) {
    return absl::InternalError(absl::StrCat("bind/listen: errno ", errno));
  }
  socklen_t len = sizeof(addr);
  getsockname(p->listener_, reinterpret_cast<sockaddr*>(&addr), &len);
  p->port_ = ntohs(addr.sin_port);
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  shutdown(listener_, SHUT_RDWR);  // wakes accept()
  if (acceptor_.joinable()) acceptor_.join();
  close(listener_);
  std::vector<std::unique_ptr<Conn>> conns;
  {
    absl::MutexLock l(&mu_);
    conns.swap(conns_);
  }
  Close(std::move(conns));
}

std::string TcpProxy::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

void TcpProxy::Cut() {
  std::vector<std::unique_ptr<Conn>> conns;
  {
    absl::MutexLock l(&mu_);
    cut_ = true;
    conns.swap(conns_);
  }
  Close(std::move(conns));
}

void TcpProxy::Heal() {
  absl::MutexLock l(&mu_);
  cut_ = false;
}

int TcpProxy::accepted() const {
  absl::MutexLock l(&mu_);
  return accepted_;
}

int TcpProxy::refused() const {
  absl::MutexLock l(&mu_);
  return refused_;
}

void TcpProxy::AcceptLoop() {
  while (true) {
    int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // listener shut down
    }
    {
      absl::MutexLock l(&mu_);
      if (stopping_) {
        close(fd);
        return;
      }
      if (cut_) {
        ++refused_;
        close(fd);
        continue;
      }
    }
    int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(target_port_);
    inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
    if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&addr),
                              sizeof(addr)) != 0) {
      if (server >= 0) close(server);
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto conn = std::make_unique<Conn>();
    conn->client = fd;
    conn->server = server;
    conn->up = std::thread([fd, server] { Pump(fd, server); });
    conn->down = std::thread([fd, server] { Pump(server, fd); });
    absl::MutexLock l(&mu_);
    ++accepted_;
    conns_.push_back(std::move(conn));
  }
}

void TcpProxy::Pump(int from, int to) {
  char buf[64 * 1024];
  while (true) {
    ssize_t n = read(from, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t off = 0;
    while (off < n) {
      // MSG_NOSIGNAL: a peer that went away is an error here, not SIGPIPE.
      ssize_t w = send(to, buf + off, n - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        shutdown(from, SHUT_RDWR);
        return;
      }
      off += w;
    }
  }
  shutdown(to, SHUT_WR);  // pass the half-close on
}

void TcpProxy::Close(std::vector<std::unique_ptr<Conn>> conns) {
  for (auto& c : conns) {
    shutdown(c->client, SHUT_RDWR);
    shutdown(c->server, SHUT_RDWR);
  }
  for (auto& c : conns) {
    if (c->up.joinable()) c->up.join();
    if (c->down.joinable()) c->down.join();
    close(c->client);
    close(c->server);
  }
}

}  // namespace sphere::testing
