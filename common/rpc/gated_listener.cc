#include "common/rpc/gated_listener.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

// tcmalloc's, weak: null where glibc's malloc is linked (tests, sanitizers).
extern "C" void MallocExtension_ReleaseFreeMemory() __attribute__((weak));

namespace sphere::rpc {
namespace {

metrics::CounterMetric* Connections() {
  static auto* c = metrics::Counter(
      "sphere_rpc_connections_total",
      "Incoming TCP connections by outcome (admitted, rejected_limit: over "
      "the connection or descriptor limit, shed_emfile: the process was out "
      "of descriptors)");
  return c;
}

absl::Status Errno(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", strerror(errno)));
}

}  // namespace

absl::StatusOr<int> RaiseFileDescriptorLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return Errno("getrlimit");
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return Errno("setrlimit");
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30)) {
    return 1 << 30;
  }
  return static_cast<int>(rl.rlim_cur);
}

absl::StatusOr<std::unique_ptr<GatedListener>> GatedListener::Listen(
    const std::string& address, Options options) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 0 ||
      port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" has a bad port"));
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(),
                       &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot resolve listen address \"", address, "\": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError("no address");
  for (struct addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (fd < 0) {
      last = Errno("socket");
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, options.backlog) != 0) {
      last = Errno(absl::StrCat("cannot listen on ", address));
      close(fd);
      continue;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof(bound);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
      last = Errno("getsockname");
      close(fd);
      continue;
    }
    int bound_port =
        bound.ss_family == AF_INET6
            ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
            : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    freeaddrinfo(res);
    return std::unique_ptr<GatedListener>(
        new GatedListener(fd, bound_port, options));
  }
  freeaddrinfo(res);
  return last;
}

GatedListener::GatedListener(int fd, int port, Options options)
    : listen_fd_(fd), port_(port), options_(options) {}

GatedListener::~GatedListener() {
  Stop();
  close(listen_fd_);
}

absl::Status GatedListener::Start(
    grpc::experimental::ExternalConnectionAcceptor* acceptor) {
  acceptor_ = acceptor;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return Errno("eventfd");
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) return Errno("open /dev/null");
  absl::StatusOr<int> limit = RaiseFileDescriptorLimit();
  if (!limit.ok()) return limit.status();
  const int by_headroom = *limit - options_.fd_headroom;
  const int by_count = reserve_fd_ + 1 + options_.max_connections;
  admit_below_ = std::max(reserve_fd_ + 2, std::min(by_headroom, by_count));
  log::Info("listening", {{"port", absl::StrCat(port_)},
                          {"fd_limit", absl::StrCat(*limit)},
                          {"admit_below_fd", absl::StrCat(admit_below_)}});
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void GatedListener::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  while (write(wake_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  thread_.join();
  close(wake_fd_);
  wake_fd_ = -1;
  if (reserve_fd_ >= 0) close(reserve_fd_);
  reserve_fd_ = -1;
}

void GatedListener::ShedOneConnection() {
  if (reserve_fd_ >= 0) {
    close(reserve_fd_);
    reserve_fd_ = -1;
  }
  int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) close(fd);
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void GatedListener::Loop() {
  bool back_off = false;
  // Flood tracking for returning memory afterwards (see header).
  absl::Time window_start = absl::Now();
  int admitted_in_window = 0;
  absl::Time trim_until = absl::InfinitePast();
  while (true) {
    struct pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    // Back off briefly only when the kernel itself refused (ENOBUFS,
    // ENOMEM, or no spare descriptor to shed with): never spin. After a
    // flood, wake once a second to return freed memory.
    const absl::Time now = absl::Now();
    int timeout_ms = -1;
    const bool trim_wait = !back_off && now < trim_until;
    if (back_off) {
      timeout_ms = 10;
    } else if (trim_wait) {
      timeout_ms = 1000;
    }
    int n = poll(fds, 2, timeout_ms);
    back_off = false;
    if (n < 0) {
      if (errno == EINTR) continue;
      log::Error("accept loop poll failed", {{"error", strerror(errno)}});
      back_off = true;
      continue;
    }
    if (n == 0 && trim_wait) {
      // tcmalloc (the server binaries' allocator) keeps freed spans and
      // returns only its excess in the background: give back all of it.
      if (MallocExtension_ReleaseFreeMemory != nullptr) {
        MallocExtension_ReleaseFreeMemory();
      }
      malloc_trim(0);
      const uint64_t trims = trims_.fetch_add(1) + 1;
      log::Info("returned freed memory to the OS after a connection flood",
                {{"trims", absl::StrCat(trims)}});
      continue;
    }
    if (fds[1].revents != 0) return;
    if (absl::Now() - window_start > absl::Seconds(1)) {
      window_start = absl::Now();
      admitted_in_window = 0;
    }
    const uint64_t rejected_before = rejected_.load();
    for (int i = 0; i < 256; ++i) {
      int fd =
          accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
          continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if ((errno == EMFILE || errno == ENFILE) && reserve_fd_ >= 0) {
          ShedOneConnection();
          rejected_.fetch_add(1);
          Connections()->Increment("outcome=\"shed_emfile\"");
          continue;
        }
        back_off = true;
        break;
      }
      if (fd >= admit_below_) {
        close(fd);
        rejected_.fetch_add(1);
        Connections()->Increment("outcome=\"rejected_limit\"");
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      admitted_.fetch_add(1);
      Connections()->Increment("outcome=\"admitted\"");
      grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters
          params;
      params.listener_fd = listen_fd_;
      params.fd = fd;
      acceptor_->HandleNewConnection(&params);
      ++admitted_in_window;
    }
    if (rejected_.load() != rejected_before ||
        admitted_in_window >= options_.flood_connections) {
      trim_until = absl::Now() + options_.trim_window;
    }
  }
}

}  // namespace sphere::rpc
