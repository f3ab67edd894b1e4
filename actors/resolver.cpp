// resolver: c-ares in "socket state callback" mode. c-ares tells which of
// its sockets it wants to read or write; for each, the resolver keeps one
// io::poll in flight on its shard's ring and calls ares_process_fd when it
// completes; c-ares's retry timer is a delayed message to itself. Every
// c-ares call happens in one of the resolver's handlers, on its shard.
#include "resolver.hpp"

#include <troupe/error.hpp>

#include <ares.h>
#include <netdb.h>
#include <poll.h>

#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <utility>

namespace troupe::actors {

namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "c-ares"; }
  std::string message(int v) const override { return ::ares_strerror(v); }
  std::error_condition default_error_condition(int v) const noexcept override {
    if (v == ARES_ETIMEOUT) return std::errc::timed_out;
    if (v == ARES_ENOMEM) return std::errc::not_enough_memory;
    if (v == ARES_ECONNREFUSED) return std::errc::connection_refused;
    return std::error_condition(v, *this);
  }
};

std::error_code ares_error(int status) { return std::error_code(status, resolver_category()); }

void init_library() {
  static std::once_flag once;
  static int status = ARES_SUCCESS;
  std::call_once(once, [] { status = ::ares_library_init(ARES_LIB_INIT_ALL); });
  if (status != ARES_SUCCESS) throw error(std::string("troupe: resolver: ares_library_init: ") + ::ares_strerror(status));
}

std::int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

const std::error_category& resolver_category() noexcept {
  static const category c;
  return c;
}

/// One getaddrinfo in flight: its promise, until c-ares calls back.
struct query {
  resolver* owner;
  promise<std::vector<net::address>> reply;

  static void done(void* arg, int status, int, ares_addrinfo* res) {
    std::unique_ptr<query> q(static_cast<query*>(arg));
    --q->owner->pending_;
    if (status == ARES_EDESTRUCTION) {
      ::ares_freeaddrinfo(res);
      return;  // the resolver is going: the promise answers actor_stopped
    }
    if (status != ARES_SUCCESS) {
      ::ares_freeaddrinfo(res);
      return q->reply.deliver(ares_error(status));
    }
    std::vector<net::address> out;
    for (ares_addrinfo_node* n = res ? res->nodes : nullptr; n != nullptr; n = n->ai_next)
      out.push_back(net::address::from(n->ai_addr, n->ai_addrlen));
    ::ares_freeaddrinfo(res);
    if (out.empty()) return q->reply.deliver(ares_error(ARES_ENOTFOUND));
    q->reply.deliver(std::move(out));
  }
};

resolver::resolver() : resolver(options{}) {}

resolver::resolver(options o) {
  init_library();
  ares_options opts{};
  opts.sock_state_cb = &resolver::on_socket_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(o.timeout.count());
  opts.tries = o.tries;
  opts.flags = ARES_FLAG_NOSEARCH;  // a name is asked as given
  char lookups[] = "b";             // DNS only: /etc/hosts is a file read, not for a shard
  opts.lookups = lookups;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_LOOKUPS;
  ares_channel ch = nullptr;
  if (int s = ::ares_init_options(&ch, &opts, mask); s != ARES_SUCCESS)
    throw error(std::string("troupe: resolver: ares_init_options: ") + ::ares_strerror(s));
  channel_ = ch;
  if (!o.servers.empty())
    if (int s = ::ares_set_servers_ports_csv(ch, o.servers.c_str()); s != ARES_SUCCESS) {
      ::ares_destroy(ch);
      throw error("troupe: resolver: servers '" + o.servers + "': " + ::ares_strerror(s));
    }
}

resolver::~resolver() {
  // The polls were cancelled when the actor stopped; c-ares now closes its
  // sockets and fails what is pending with ARES_EDESTRUCTION.
  destroying_ = true;
  ::ares_destroy(channel_);
}

deferred<std::vector<net::address>> resolver::on(resolve r) {
  auto reply = reply_later<std::vector<net::address>>();
  // A literal needs no server.
  if (auto literal = net::address::parse(r.host, r.port)) {
    reply.deliver(std::vector<net::address>{*literal});
    return {};
  }
  ares_addrinfo_hints hints{};
  hints.ai_family = r.family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = ARES_AI_NUMERICSERV;
  auto* q = new query{this, std::move(reply)};
  ++pending_;
  const std::string service = std::to_string(r.port);
  ::ares_getaddrinfo(channel_, r.host.c_str(), service.c_str(), &hints, &query::done, q);
  after_ares();
  return {};
}

void resolver::on(const wake&) {
  wake_at_ns_ = 0;
  ::ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // c-ares's timeouts
  after_ares();
}

void resolver::on_socket_state(void* self, int fd, int readable, int writable) {
  static_cast<resolver*>(self)->socket_state(fd, readable != 0, writable != 0);
}

void resolver::socket_state(int fd, bool readable, bool writable) {
  if (destroying_) return;
  if (!readable && !writable) {
    // c-ares closes it next: no poll may outlive it.
    auto it = sockets_.find(fd);
    if (it == sockets_.end()) return;
    if (it->second.poll) cancel(it->second.poll);
    sockets_.erase(it);
    return;
  }
  watched& w = sockets_[fd];
  bool changed = w.read != readable || w.write != writable;
  w.read = readable;
  w.write = writable;
  if (changed && w.poll) {
    cancel(w.poll);
    w.poll = {};
  }
  if (!w.poll) arm(fd);
}

void resolver::arm(int fd) {
  watched& w = sockets_[fd];
  unsigned events = (w.read ? POLLIN : 0) | (w.write ? POLLOUT : 0);
  w.poll = submit(io::poll{fd, events}).then([this, fd](io::result<unsigned> r) {
    auto it = sockets_.find(fd);
    if (it == sockets_.end()) return;
    it->second.poll = {};
    // An error or POLLERR/POLLHUP: let c-ares read, it sees the error.
    unsigned ev = r ? *r : unsigned(POLLERR);
    bool in = (ev & (POLLIN | POLLERR | POLLHUP)) != 0, out = (ev & POLLOUT) != 0;
    ::ares_process_fd(channel_, in ? fd : ARES_SOCKET_BAD, out ? fd : ARES_SOCKET_BAD);
    // Still wanted (the callback did not drop it): poll again.
    if (auto again = sockets_.find(fd); again != sockets_.end() && !again->second.poll) arm(fd);
    after_ares();
  });
}

void resolver::after_ares() {
  if (pending_ == 0) return;
  timeval tv{};
  timeval* next = ::ares_timeout(channel_, nullptr, &tv);
  if (next == nullptr) return;
  const std::int64_t delay = std::int64_t(next->tv_sec) * 1'000'000'000 + std::int64_t(next->tv_usec) * 1000;
  const std::int64_t at = now_ns() + delay;
  if (wake_at_ns_ != 0 && wake_at_ns_ <= at) return;  // an earlier wake is on its way
  wake_at_ns_ = at;
  delayed_send(std::chrono::nanoseconds(delay), self(), wake{});
}

}  // namespace troupe::actors
