// The vhost-user back end's sockets and control thread (vhost_user.h): one
// epoll loop over every port's listening or connected socket, the lcores'
// miss eventfd and a stop eventfd. Each readable connection yields one
// message per wake-up (level-triggered), so one front end cannot starve the
// others; a message whose header arrived is read to its end with a receive
// timeout, so a front end that stalls mid-message loses its connection, not
// the loop.
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "vxlate/dataplane/vhost_user.h"

namespace vxlate::dataplane::vhost_user {

namespace {

using Clock = std::chrono::steady_clock;

// A message that stalls longer than this mid-way closes its connection.
constexpr timeval kIoTimeout{1, 0};
constexpr std::chrono::milliseconds kReconnectMin{50};
constexpr std::chrono::milliseconds kReconnectMax{1000};
constexpr size_t kMaxFds = kMaxMemRegions;  // the most any message carries

// epoll tags: the port index in the high bits, the kind in the low two.
enum Kind : uint64_t { kListen = 0, kConn = 1, kWake = 2, kStop = 3 };

[[noreturn]] void fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

sockaddr_un unix_addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    throw std::invalid_argument("vhost-user: socket path empty or longer than " +
                                std::to_string(sizeof a.sun_path - 1) + " bytes: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Reads exactly len bytes (the socket has a receive timeout); false on EOF,
// error or timeout.
bool read_all(int fd, uint8_t* buf, size_t len) {
  while (len > 0) {
    const ssize_t n = ::recv(fd, buf, len, 0);
    if (n > 0) {
      buf += n;
      len -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

bool write_all(int fd, const uint8_t* buf, size_t len) {
  while (len > 0) {
    const ssize_t n = ::send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n;
      len -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

struct Backend::Endpoint {
  std::unique_ptr<Port> port;
  uint64_t index = 0;
  int listen_fd = -1;
  int conn_fd = -1;
  Clock::time_point next_connect{};  // client mode
  std::chrono::milliseconds backoff = kReconnectMin;
  Clock::time_point next_service = Clock::time_point::max();
};

Backend::Backend(Rcu& rcu) : rcu_(rcu) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0 || stop_fd_ < 0) {
    const int e = errno;
    for (int fd : {epoll_fd_, wake_fd_, stop_fd_})
      if (fd >= 0) ::close(fd);
    errno = e;
    fail("vhost-user backend: epoll/eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWake;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  ev.data.u64 = kStop;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &ev);
}

Backend::~Backend() {
  stop();
  for (auto& e : ports_) {
    if (e->listen_fd >= 0) {
      ::close(e->listen_fd);
      ::unlink(e->port->config().path.c_str());
    }
  }
  ports_.clear();
  ::close(epoll_fd_);
  ::close(wake_fd_);
  ::close(stop_fd_);
}

Port& Backend::add_port(const PortConfig& cfg) {
  const sockaddr_un addr = unix_addr(cfg.path);
  auto e = std::make_unique<Endpoint>();
  e->port = std::make_unique<Port>(rcu_, cfg, wake_fd_);
  e->index = ports_.size();
  if (!cfg.client) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("vhost-user: socket");
    ::unlink(cfg.path.c_str());  // a stale socket file from an earlier run
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1) != 0) {
      const int err = errno;
      ::close(fd);
      errno = err;
      fail("vhost-user: bind/listen " + cfg.path);
    }
    // Only this user and its group may connect: the front end is one step
    // from the guest.
    ::chmod(cfg.path.c_str(), 0660);
    e->listen_fd = fd;
    watch(fd, e.get());
  }
  ports_.push_back(std::move(e));
  return *ports_.back()->port;
}

Port& Backend::port(size_t i) noexcept { return *ports_[i]->port; }

void Backend::watch(int fd, Endpoint* e) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = (e->index << 2) | (fd == e->listen_fd ? kListen : kConn);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) fail("vhost-user: epoll_ctl");
}

void Backend::start(const cpu_set_t* cpus) {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
  if (cpus == nullptr) return;
  if (const int err = ::pthread_setaffinity_np(thread_.native_handle(), sizeof *cpus, cpus); err != 0) {
    stop();
    throw std::system_error(err, std::generic_category(), "vhost-user: control thread affinity");
  }
}

void Backend::stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  for (auto& e : ports_) close_conn(*e);
}

bool Backend::try_connect(Endpoint& e) {
  const sockaddr_un addr = unix_addr(e.port->config().path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return false;
  }
  e.conn_fd = fd;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &kIoTimeout, sizeof kIoTimeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &kIoTimeout, sizeof kIoTimeout);
  e.port->connected();
  watch(fd, &e);
  return true;
}

void Backend::accept_on(Endpoint& e) {
  const int fd = ::accept4(e.listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  if (e.conn_fd >= 0) {
    // One front end per port at a time.
    ::close(fd);
    return;
  }
  e.conn_fd = fd;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &kIoTimeout, sizeof kIoTimeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &kIoTimeout, sizeof kIoTimeout);
  e.port->connected();
  watch(fd, &e);
}

void Backend::close_conn(Endpoint& e) {
  if (e.conn_fd < 0) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, e.conn_fd, nullptr);
  ::close(e.conn_fd);
  e.conn_fd = -1;
  e.port->disconnect();
  e.next_service = Clock::time_point::max();
  if (e.port->config().client) {
    e.next_connect = Clock::now() + e.backoff;
    e.backoff = std::min(e.backoff * 2, kReconnectMax);
  }
}

void Backend::serve(Endpoint& e) {
  // The header, with any descriptors (they ride on its first byte).
  Header h{};
  uint8_t hbuf[sizeof(Header)];
  alignas(cmsghdr) uint8_t cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{hbuf, sizeof hbuf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = ::recvmsg(e.conn_fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  std::array<int, kMaxFds * 2> fds;
  size_t nfds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (nfds < fds.size()) fds[nfds++] = fd;
      else ::close(fd);
    }
  }
  auto drop_fds = [&] {
    for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
    nfds = 0;
  };
  // EOF, an error, more descriptors than any message carries (truncated), or
  // a header that does not complete: the connection ends.
  if (n <= 0 || (msg.msg_flags & MSG_CTRUNC) != 0 ||
      (n < static_cast<ssize_t>(sizeof hbuf) &&
       !read_all(e.conn_fd, hbuf + n, sizeof hbuf - static_cast<size_t>(n)))) {
    drop_fds();
    close_conn(e);
    return;
  }
  h = decode<Header>(std::span<const uint8_t>(hbuf));
  if (check_header(h) != Refusal::kNone) {
    std::fprintf(stderr, "vxlate vhost-user %s: bad message header (request %u flags %#x size %u): closing\n",
                 e.port->config().path.c_str(), h.request.get(), h.flags.get(), h.size.get());
    drop_fds();
    // Let the port count it.
    std::vector<uint8_t> ignored;
    (void)e.port->handle_message(h, {}, {}, &ignored);
    close_conn(e);
    return;
  }
  std::array<uint8_t, kMaxPayload> payload;
  const uint32_t size = h.size.get();
  if (!read_all(e.conn_fd, payload.data(), size)) {
    drop_fds();
    close_conn(e);
    return;
  }
  std::vector<uint8_t> reply;
  const Port::Action a =
      e.port->handle_message(h, std::span<const uint8_t>(payload.data(), size), std::span<const int>(fds.data(), nfds),
                             &reply);
  if (!reply.empty() && !write_all(e.conn_fd, reply.data(), reply.size())) {
    close_conn(e);
    return;
  }
  if (a == Port::Action::kClose) {
    std::fprintf(stderr, "vxlate vhost-user %s: refused request %u: closing the connection\n",
                 e.port->config().path.c_str(), h.request.get());
    close_conn(e);
  }
}

void Backend::run() {
  for (;;) {
    const auto now = Clock::now();
    auto deadline = now + std::chrono::milliseconds(100);
    for (auto& e : ports_) {
      if (e->port->config().client && e->conn_fd < 0) {
        if (now >= e->next_connect) {
          if (try_connect(*e)) e->backoff = kReconnectMin;
          else {
            e->next_connect = now + e->backoff;
            e->backoff = std::min(e->backoff * 2, kReconnectMax);
          }
        }
        if (e->conn_fd < 0) deadline = std::min(deadline, e->next_connect);
      }
      if (e->next_service <= now) e->next_service = e->port->service(now);
      deadline = std::min(deadline, e->next_service);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    std::array<epoll_event, 16> evs;
    const int k = ::epoll_wait(epoll_fd_, evs.data(), static_cast<int>(evs.size()),
                               static_cast<int>(std::clamp<int64_t>(wait, 0, 100)));
    for (int i = 0; i < k; ++i) {
      const uint64_t tag = evs[i].data.u64;
      const uint64_t kind = tag & 3;
      if (kind == kStop) return;
      if (kind == kWake) {
        uint64_t v;
        (void)!::read(wake_fd_, &v, sizeof v);
        const auto t = Clock::now();
        for (auto& e : ports_) e->next_service = e->port->service(t);
        continue;
      }
      Endpoint& e = *ports_[tag >> 2];
      if (kind == kListen) {
        accept_on(e);
      } else if (e.conn_fd >= 0) {
        if (evs[i].events & EPOLLIN) serve(e);
        else if (evs[i].events & (EPOLLHUP | EPOLLERR)) close_conn(e);
      }
    }
  }
}

}  // namespace vxlate::dataplane::vhost_user
