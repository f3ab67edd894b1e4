// CAF 0.17 network peer: a TCP echo server written as a CAF io broker.  See
// peers_net.hpp (start_caf_broker_echo) for what it does and where its
// threads run.
//
// How CAF 0.17 runs a broker (libcaf_io, default_multiplexer on epoll): a
// broker is executed by the middleman's multiplexer thread, never by the
// scheduler's workers (abstract_broker::enqueue hands it to the backend).
// A readable socket is read there (up to middleman.max-consecutive-reads
// recv calls per event) and each chunk is handed to the broker as a
// new_data_msg synchronously, on the same thread.  write() appends to the
// connection's offline buffer; flush() only registers the socket for
// EPOLLOUT: the send happens on a later epoll_wait round, after which the
// socket is deregistered for writing again.  CAF sets TCP_NODELAY (and
// non-blocking) on every socket it manages (event_handler::set_fd_flags), the
// listening socket and each accepted one alike, and SO_KEEPALIVE on accepted
// ones; sends use MSG_NOSIGNAL.  On
// EOF (recv returns 0) the connection's scribe detaches itself: the broker
// gets connection_closed_msg and the socket is closed once the multiplexer
// has dropped it from its loop.
#include "peers_net_common.hpp"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#pragma GCC diagnostic pop

#include <mutex>

namespace bench::peers {

using namespace net_detail;

namespace {

using ready_atom = caf::atom_constant<caf::atom("ready")>;

constexpr const char* kName = "caf_broker echo";

// Every thread the actor system starts calls thread_started() on it first
// and thread_terminates() last (scheduler workers, the clock thread, the
// multiplexer, private threads of detached actors, the logger).  The hook
// pins each one to the server CPU (they inherit that affinity from the
// creating thread anyway) and keeps their CPU clocks so that cpu_seconds()
// can add up the time CAF's threads used.
struct caf_threads {
  int cpu = 0;
  mutable std::mutex mtx;
  std::vector<std::pair<pthread_t, clockid_t>> live;  // started, not yet terminating
  double ended = 0;                                   // CPU seconds of the threads that terminated
  int started = 0;

  double cpu_seconds() const {
    std::lock_guard<std::mutex> lock(mtx);
    double sum = ended;
    for (const auto& t : live) sum += thread_cpu_seconds(t.second);
    return sum;
  }
};

class pin_hook final : public caf::thread_hook {
 public:
  explicit pin_hook(caf_threads* threads) : threads_(threads) {}
  void init(caf::actor_system&) override {}
  void thread_started() override {
    pin(threads_->cpu);
    clockid_t id;
    if (int e = pthread_getcpuclockid(pthread_self(), &id); e != 0) fail_errno("pthread_getcpuclockid", e);
    std::lock_guard<std::mutex> lock(threads_->mtx);
    threads_->live.emplace_back(pthread_self(), id);
    ++threads_->started;
  }
  void thread_terminates() override {
    const double mine = this_thread_cpu_seconds();
    std::lock_guard<std::mutex> lock(threads_->mtx);
    auto& v = threads_->live;
    for (std::size_t i = 0; i < v.size(); ++i)
      if (pthread_equal(v[i].first, pthread_self())) {
        v[i] = v.back();
        v.pop_back();
        threads_->ended += mine;
        return;
      }
  }

 private:
  caf_threads* threads_;
};

// One scheduler worker (work-sharing policy: an idle worker blocks on a
// condition variable instead of polling), the middleman loaded, its utility
// actor on the scheduler instead of on a private thread of its own.
struct config : caf::actor_system_config {
  explicit config(caf_threads* threads) {
    set("scheduler.max-threads", static_cast<int64_t>(1));
    set("scheduler.policy", caf::atom("sharing"));
    set("middleman.attach-utility-actors", true);
    load<caf::io::middleman>();
    add_thread_hook<pin_hook>(threads);
  }
};

// The echo broker.  Adopts the listening socket; `ready` is set from the
// first message it handles, by which time CAF has launched the doorman (a
// doorman added during the broker's initialisation is launched when the
// initialisation returns).
caf::behavior echo_broker(caf::io::broker* self, int listen_fd, std::promise<void>* ready) {
  self->add_doorman(listen_fd);
  self->send(self, ready_atom::value);
  return {
      [=](ready_atom) { ready->set_value(); },
      [=](const caf::io::new_connection_msg& m) {
        self->configure_read(m.handle, caf::io::receive_policy::at_most(kConnBuffer));
      },
      [=](const caf::io::new_data_msg& m) {
        self->write(m.handle, m.buf.size(), m.buf.data());
        self->flush(m.handle);
      },
      // The scribe has already detached itself (EOF or an error) and its
      // socket is closed as the multiplexer drops it; close() is a no-op
      // then, kept for the case of a close arriving any other way.
      [=](const caf::io::connection_closed_msg& m) { self->close(m.handle); },
      [=](const caf::io::acceptor_closed_msg&) {},
  };
}

class caf_broker_echo_server final : public echo_server_handle::impl {
 public:
  explicit caf_broker_echo_server(int cpu) {
    threads_.cpu = cpu;
    stop_requested_ = stop_.get_future();
    const int fd = bound_socket(SOCK_STREAM, &port_);  // 127.0.0.1:0, SOMAXCONN, as the other peers
    launch(kName, cpu, [this, fd](std::promise<void>& ready) { serve(fd, ready); });
  }
  ~caf_broker_echo_server() override { stop(); }

  // The launching thread (idle once the system runs) plus every CAF thread.
  double cpu_seconds() const override {
    if (stopping_) return impl::cpu_seconds();  // the total taken by stop()
    return impl::cpu_seconds() + threads_.cpu_seconds();
  }

 private:
  void request_stop() noexcept override {
    stopping_ = true;
    try {
      stop_.set_value();
    } catch (...) {
    }
  }

  // On the launched thread (pinned to the server CPU): the actor system's
  // threads are started from here; this thread then sleeps until stop().
  void serve(int listen_fd, std::promise<void>& ready) {
    try {
      config cfg(&threads_);
      caf::actor_system sys{cfg};
      std::promise<void> accepting;
      auto accepting_f = accepting.get_future();
      caf::actor broker = sys.middleman().spawn_broker(echo_broker, listen_fd, &accepting);
      if (accepting_f.wait_for(kSetupLimit) != std::future_status::ready)
        fail(std::string(kName) + ": broker did not start");
      ready.set_value();
      stop_requested_.wait();
      caf::anon_send_exit(broker, caf::exit_reason::user_shutdown);
      broker = nullptr;
      // ~actor_system waits for the broker to terminate (it closes its
      // doorman and connections on the way out), stops the middleman (joins
      // the multiplexer thread) and then the scheduler (worker, clock).
    } catch (const std::exception& e) {
      fail(std::string(kName) + ": " + e.what());
    }
  }

  caf_threads threads_;
  std::promise<void> stop_;
  std::future<void> stop_requested_;  // waited on by the launched thread
  bool stopping_ = false;  // owner thread only
};

}  // namespace

echo_server_handle start_caf_broker_echo(int cpu) {
  return echo_server_handle(std::make_unique<caf_broker_echo_server>(cpu));
}

}  // namespace bench::peers
