// tcp_connection<Derived>: the base of a connection actor for tcp_server.
// It reads the socket into on_data, sends what write() queues in order,
// closes a connection that stays silent past its idle timeout, and closes
// with a logged reason on a peer reset, a malformed frame or a send queue
// over its cap. Built only on troupe's public API.
//
//   class echo : public troupe::actors::tcp_connection<echo> {
//    public:
//     using tcp_connection::tcp_connection;
//     void on_data(std::span<const std::byte> data) { write(troupe::io::bytes(data.begin(), data.end())); }
//   };
//
// Derived provides `void on_data(std::span<const std::byte>)` (or
// `void on_data(io::bytes&&)` to take the received buffer over) and may
// provide `void on_closed(std::string_view reason)` and `void on_writable()`.
// If Derived has its own on_start, it calls tcp_connection::on_start().
//
// Backpressure, two ways (both bounded by max_queued_bytes):
// - write(): queue and forget; a queue past the cap closes the connection
//   (a peer that does not read is dropped, memory stays bounded);
// - try_write(): refuses past the cap with errc::would_overflow and hands
//   the data back; on_writable() runs once the queue has drained to half
//   the cap, to produce more.
#pragma once

#include <troupe/actor.hpp>
#include <troupe/error.hpp>
#include <troupe/io.hpp>
#include <troupe/log.hpp>
#include <troupe/net.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace troupe::actors {

/// What tcp_server hands a new connection actor (its first constructor
/// argument): the socket, the peer, and its place in the server's
/// connection count, given back when the actor is destroyed.
struct tcp_accepted {
  net::socket socket;
  net::address peer;
  std::shared_ptr<void> slot;
  std::chrono::milliseconds idle_timeout{0};  // 0: none
};

struct connection_limits {
  /// Bytes queued by write() and not yet sent past which the connection is
  /// closed (a peer that does not read). 0: no cap.
  std::size_t max_queued_bytes = 4 * 1024 * 1024;
  /// Bytes asked for per recv.
  std::size_t read_size = 64 * 1024;
  /// Receive into the shard's provided-buffer ring (config::recv_buffers)
  /// instead of into a buffer of this connection's own: a silent
  /// connection holds no memory. When the ring runs dry (ENOBUFS) reading
  /// resumes after a short backoff, losing nothing.
  bool provided_buffers = false;
  /// With provided buffers: ring buffers this connection may hold at once
  /// (an on_data(net::buffer&&) that keeps them, or hands them to a slow
  /// actor). At the cap, reading pauses until half of them are back, so
  /// one connection cannot take the shard's ring from the others. 0: no
  /// cap, and one multishot recv serves every arrival (fewer SQEs, but a
  /// backlog on the socket can take the whole ring at once).
  std::uint32_t max_held_buffers = 32;
  /// Writes of at least this many bytes go out with IORING_OP_SEND_ZC (no
  /// copy into the kernel); 0: never. doc/io.md has the measurement.
  std::size_t zero_copy_from = 0;
};

template <class Derived>
class tcp_connection : public actor<Derived> {
 public:
  explicit tcp_connection(tcp_accepted a, connection_limits limits = {})
      : socket_(std::move(a.socket)), peer_(std::move(a.peer)), slot_(std::move(a.slot)),
        idle_(a.idle_timeout), limits_(limits) {
    if (limits_.provided_buffers && limits_.max_held_buffers != 0) quota_ = net::recv_quota(limits_.max_held_buffers);
  }

  void on_start() { read_next(); }

  const net::address& peer() const noexcept { return peer_; }
  const net::socket& socket() const noexcept { return socket_; }
  /// Times the provided-buffer ring was dry and the recv waited for it.
  std::uint64_t buffer_waits() const noexcept { return buffer_waits_; }
  /// Times reading paused because this connection held max_held_buffers.
  std::uint64_t quota_pauses() const noexcept { return quota_pauses_; }
  /// Ring buffers handed to this connection and not yet destroyed.
  std::uint32_t held_buffers() const noexcept { return quota_.held(); }
  /// Bytes write() has queued that are not sent yet.
  std::size_t queued_bytes() const noexcept { return queued_; }

 protected:
  /// Queues `data` to be sent after what is queued before it.
  void write(io::bytes data) {
    if (closing_ || data.empty()) return;
    queued_ += data.size();
    if (limits_.max_queued_bytes != 0 && queued_ > limits_.max_queued_bytes)
      return close("send queue over " + std::to_string(limits_.max_queued_bytes) + " bytes (the peer reads too slowly)");
    out_.push_back(std::move(data));
    if (!sending_) send_next();
  }
  /// Queues `data` unless that would pass max_queued_bytes: then
  /// errc::would_overflow, `data` untouched, and on_writable() runs once
  /// the queue is down to half the cap.
  result<void> try_write(io::bytes& data) {
    if (closing_) return errc::actor_stopped;
    if (limits_.max_queued_bytes != 0 && queued_ + data.size() > limits_.max_queued_bytes) {
      writable_wanted_ = true;
      return errc::would_overflow;
    }
    write(std::move(data));
    return {};
  }

  void write(std::string_view text) { write(io::bytes(reinterpret_cast<const std::byte*>(text.data()),
                                                       reinterpret_cast<const std::byte*>(text.data()) + text.size())); }

  /// Closes the connection: logs `reason` (info level; the peer's address
  /// first), lets on_closed see it, and stops the actor. Writes still
  /// queued are dropped.
  void close(std::string_view reason) {
    if (closing_) return;
    closing_ = true;
    if (log_enabled(log_level::info)) log(log_level::info, "connection " + peer_.to_string() + " closed: " + std::string(reason));
    if constexpr (requires(Derived& d) { d.on_closed(reason); }) static_cast<Derived*>(this)->on_closed(reason);
    this->stop();  // in-flight operations are cancelled; the socket closes with the last of them
  }

  /// Closes after what is queued has been sent (a half-close first, so the
  /// peer reads end of stream).
  void close_after_writes(std::string_view reason) {
    if (closing_ || !close_reason_.empty()) return;
    close_reason_ = std::string(reason);
    if (!sending_) finish_writes();
  }

 private:
  void read_next() {
    if (closing_) return;
    if (limits_.provided_buffers) return limits_.max_held_buffers != 0 ? read_provided() : arm_multishot();
    // One read buffer, reused: it comes back with each result.
    io::bytes buffer = std::move(read_buffer_);
    buffer.resize(limits_.read_size);
    auto request = this->submit(net::recv{socket_, std::move(buffer)});
    auto then = [this](io::result<io::bytes> r) {
      if (!r) return read_failed(r.error());
      // The peer is done sending (it may still read): what is queued goes
      // out first, then our side closes too.
      if (r->empty()) return close_after_writes("closed by the peer");
      if constexpr (requires(Derived& d, io::bytes b) { d.on_data(std::move(b)); }) {
        // Derived takes the buffer (say, to write it back): no copy; the
        // next read gets a new one.
        static_cast<Derived*>(this)->on_data(std::move(*r));
      } else if constexpr (requires(Derived& d, std::span<const std::byte> v) { d.on_data(v); }) {
        static_cast<Derived*>(this)->on_data(std::span<const std::byte>(r->data(), r->size()));
        read_buffer_ = std::move(*r);
      } else {
        return close("on_data takes only net::buffer: set connection_limits::provided_buffers");
      }
      read_next();
    };
    if (idle_.count() > 0) std::move(request).timeout(idle_).then(std::move(then));
    else std::move(request).then(std::move(then));
  }

  void read_failed(std::error_code e) {
    if (e == std::errc::timed_out) return close("idle for " + std::to_string(idle_.count()) + " ms");
    close("receive failed: " + e.message());
  }

  // A ring buffer, however it was received, to Derived.
  void deliver(net::buffer&& b) {
    ++arrivals_;
    if constexpr (requires(Derived& d, net::buffer nb) { d.on_data(std::move(nb)); })
      static_cast<Derived*>(this)->on_data(std::move(b));
    else if constexpr (requires(Derived& d, std::span<const std::byte> v) { d.on_data(v); })
      static_cast<Derived*>(this)->on_data(b.bytes());
    else  // on_data(io::bytes&&): a copy out of the ring's buffer
      static_cast<Derived*>(this)->on_data(io::bytes(b.bytes().begin(), b.bytes().end()));
  }

  // The ring was dry (ENOBUFS): every buffer is held somewhere. Try again
  // shortly; they come back as their holders drop them.
  template <class Retry>
  void retry_after_backoff(Retry retry) {
    ++buffer_waits_;
    backoff_ = backoff_.count() == 0 ? std::chrono::microseconds(50) : std::min(backoff_ * 2, std::chrono::microseconds(10'000));
    this->submit(io::sleep{backoff_}).then([this, retry](io::result<void>) { (this->*retry)(); });
  }

  // Provided buffers under a quota: one recv at a time, each taking exactly
  // one buffer, and none while this connection holds max_held_buffers
  // (then TCP flow control keeps the rest in the kernel). A multishot recv
  // could not keep that cap: the kernel fills as many buffers in one go as
  // the socket has queued.
  void read_provided() {
    if (closing_) return;
    if (quota_.full()) return wait_for_buffers();
    auto request = this->submit(net::recv_provided{socket_, quota_});
    auto then = [this](io::result<net::buffer> b) {
      if (!b) {
        if (b.error() == std::errc::no_buffer_space) return retry_after_backoff(&tcp_connection::read_provided);
        return read_failed(b.error());
      }
      if (b->empty()) return close_after_writes("closed by the peer");
      backoff_ = {};
      deliver(std::move(*b));
      read_provided();
    };
    if (idle_.count() > 0) std::move(request).timeout(idle_).then(std::move(then));
    else std::move(request).then(std::move(then));
  }

  // At the quota: read again once half the buffers are back, wherever they
  // are destroyed.
  void wait_for_buffers() {
    ++quota_pauses_;
    quota_.when_drained(this->template expect<void>([this](result<void>) { read_provided(); }));
  }

  // Provided buffers without a cap: one multishot recv for many arrivals;
  // idleness is watched by a sleep operation, since a linked timeout would
  // bound the whole multishot recv, not the silence between arrivals.
  void arm_multishot() {
    if (closing_) return;
    this->submit(net::recv_multishot{socket_}).then([this](io::result<net::buffer> b, bool more) {
      if (closing_) return;
      if (!b) {
        if (b.error() == std::errc::no_buffer_space) return retry_after_backoff(&tcp_connection::arm_multishot);
        return close("receive failed: " + b.error().message());
      }
      if (b->empty()) return close_after_writes("closed by the peer");
      backoff_ = {};
      deliver(std::move(*b));
      if (!more && !closing_) arm_multishot();  // the kernel ended it: go on
    });
    if (idle_.count() > 0 && !idle_watch_) watch_idle(arrivals_);
  }

  void watch_idle(std::uint64_t seen) {
    idle_watch_ = true;
    this->submit(io::sleep{idle_}).then([this, seen](io::result<void>) {
      if (closing_) return;
      if (arrivals_ == seen) return close("idle for " + std::to_string(idle_.count()) + " ms");
      watch_idle(arrivals_);
    });
  }

  void send_next() {
    if (out_.empty()) {
      sending_ = false;
      if (!close_reason_.empty()) finish_writes();
      return;
    }
    sending_ = true;
    io::bytes next = std::move(out_.front());
    out_.pop_front();
    auto then = [this](io::result<net::sent> s) { on_sent(std::move(s)); };
    if (limits_.zero_copy_from != 0 && next.size() >= limits_.zero_copy_from)
      this->submit(net::send_zc{socket_, std::move(next)}).then(std::move(then));
    else
      this->submit(net::send{socket_, std::move(next)}).then(std::move(then));
  }

  void on_sent(io::result<net::sent> s) {
    if (!s) return close("send failed: " + s.error().message());
    queued_ -= s->bytes;
    if (writable_wanted_ && queued_ <= limits_.max_queued_bytes / 2) {
      writable_wanted_ = false;
      if constexpr (requires(Derived& d) { d.on_writable(); }) static_cast<Derived*>(this)->on_writable();
      if (closing_) return;
    }
    if (s->bytes < s->buffer.size()) {
      // Short: the rest goes first.
      io::bytes rest(s->buffer.begin() + static_cast<std::ptrdiff_t>(s->bytes), s->buffer.end());
      out_.push_front(std::move(rest));
    }
    send_next();
  }

  void finish_writes() {
    std::string reason = std::move(close_reason_);
    this->submit(net::shutdown{socket_, SHUT_WR}).then([this, reason](io::result<void>) { close(reason); });
  }

  net::socket socket_;
  net::address peer_;
  std::shared_ptr<void> slot_;
  std::chrono::milliseconds idle_;
  connection_limits limits_;
  io::bytes read_buffer_;
  std::deque<io::bytes> out_;
  std::size_t queued_ = 0;
  bool sending_ = false;
  bool closing_ = false;
  bool writable_wanted_ = false;
  bool idle_watch_ = false;
  std::uint64_t buffer_waits_ = 0;
  std::uint64_t quota_pauses_ = 0;
  net::recv_quota quota_;
  std::uint64_t arrivals_ = 0;
  std::chrono::microseconds backoff_{0};
  std::string close_reason_;
};

}  // namespace troupe::actors
