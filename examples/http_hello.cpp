// A minimal HTTP/1.1 responder: every GET gets "hello\n". A listener on
// every shard (actors::tcp_server, SO_REUSEPORT), one connection actor per
// connection on the shard that accepted it; the request heads are cut into
// lines by net::line_framer. It is the troupe side of the wrk check
// (test/bench/wrk_http.sh, doc/benchmarks.md "HTTP check (wrk)").
//
//   http_hello [--port N] [--shards N]   serve on 0.0.0.0:N (default 8080;
//                                        0: a free port, printed) with N
//                                        shards (default one per CPU) until Ctrl-C
//   http_hello --quick                   serve on a free loopback port, send
//                                        requests over plain sockets, check
//                                        every answer byte for byte (b2 test)
//
// Try it: `http_hello & curl -v http://127.0.0.1:8080/`.
//
// What it speaks (RFC 9112, the part a hello responder needs):
// - a request head is a request line and header lines up to an empty line;
//   lines end in CRLF or a bare LF; empty lines before a request line are
//   skipped; a head over 8 KiB, a malformed request line or header line,
//   a bare CR, a missing or repeated Host in HTTP/1.1 get a 400 and the
//   connection closes after it;
// - GET answers 200 with "hello\n", HEAD the same head without the body;
//   another method gets a 405 and a close, a version other than HTTP/1.x a
//   505 and a close; a GET or HEAD announcing a body (Content-Length other
//   than 0, Transfer-Encoding) gets a 400 and a close (bodies are not read);
// - HTTP/1.1 keeps the connection open unless the request says
//   `Connection: close`; HTTP/1.0 closes unless it says
//   `Connection: keep-alive`; the answer says which when it is not the
//   version's default, and "close" when it closes;
// - pipelined requests are answered in order, all the answers to one read
//   going out in one send.
#include <actors/tcp_server.hpp>
#include <troupe/troupe.hpp>

#include <fmt/format.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace net = troupe::net;
namespace io = troupe::io;

namespace {

constexpr std::size_t max_head = 8 * 1024;  // bytes of a request head, line ends included

/// The Date header's value (IMF-fixdate, 29 characters), formatted once a
/// second per shard thread.
std::string_view http_date() {
  thread_local std::time_t cached = -1;
  thread_local char text[32];
  std::time_t now = std::time(nullptr);
  if (now != cached) {
    std::tm t{};
    gmtime_r(&now, &t);
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &t);  // the C locale's names
    cached = now;
  }
  return {text, 29};
}

bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!is_tchar(c)) return false;
  return true;
}
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;  // enough for the ASCII names compared here
  return true;
}
std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

class http_connection : public troupe::actors::tcp_connection<http_connection> {
 public:
  explicit http_connection(troupe::actors::tcp_accepted a) : tcp_connection(std::move(a)) {
    (void)socket().set(net::no_delay{});  // as nginx's tcp_nodelay (its default)
  }

  void on_data(std::span<const std::byte> data) {
    if (done_) return;  // closing: what follows is not read
    auto ok = framer_.feed(data, [this](std::string_view line) { on_line(line); });
    // A line over the limit, a NUL byte, or a head growing past the limit
    // in its unfinished last line.
    if (!done_ && (!ok || head_bytes_ + framer_.pending() > max_head))
      finish(status::bad_request, ok ? "request head over 8 KiB" : "malformed request head: " + ok.error().message());
    if (!out_.empty()) write(std::move(out_));  // every answer to this read in one send
    out_ = {};
    if (done_) close_after_writes(close_reason_);
  }

 private:
  enum class status { ok, bad_request, not_allowed, bad_version };
  enum class method { get, head, other };

  void on_line(std::string_view line) {
    if (done_) return;
    head_bytes_ += line.size() + 2;
    if (head_bytes_ > max_head) return finish(status::bad_request, "request head over 8 KiB");
    if (line.find('\r') != std::string_view::npos) return finish(status::bad_request, "bare CR in the request head");
    if (!in_head_) {
      if (line.empty()) return;  // RFC 9112 2.2: empty lines before a request line are skipped
      in_head_ = true;
      return request_line(line);
    }
    if (line.empty()) return end_of_head();
    header_line(line);
  }

  // method SP request-target SP HTTP-version
  void request_line(std::string_view line) {
    auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return finish(status::bad_request, "malformed request line");
    auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return finish(status::bad_request, "malformed request line");
    std::string_view m = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1), version = line.substr(sp2 + 1);
    if (!is_token(m) || target.empty()) return finish(status::bad_request, "malformed request line");
    for (unsigned char c : target)
      if (c <= 0x20 || c == 0x7f) return finish(status::bad_request, "malformed request target");
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[5] < '0' || version[5] > '9' ||
        version[6] != '.' || version[7] < '0' || version[7] > '9')
      return finish(status::bad_request, "malformed HTTP version");
    method_ = m == "GET" ? method::get : m == "HEAD" ? method::head : method::other;
    major_ = version[5] - '0';
    http11_ = major_ == 1 && version[7] >= '1';  // 1.1 and later 1.x: 1.1's rules
  }

  // field-name ":" OWS field-value OWS
  void header_line(std::string_view line) {
    if (line.front() == ' ' || line.front() == '\t') return finish(status::bad_request, "obsolete line folding");
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return finish(status::bad_request, "header line without a colon");
    std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return finish(status::bad_request, "malformed header name");  // also: a space before the colon
    std::string_view value = trim_ows(line.substr(colon + 1));
    for (unsigned char c : value)
      if ((c < 0x20 && c != '\t') || c == 0x7f) return finish(status::bad_request, "control character in a header value");
    if (iequals(name, "host")) {
      ++hosts_;
    } else if (iequals(name, "connection")) {
      // A comma-separated list of options.
      while (!value.empty()) {
        auto comma = value.find(',');
        std::string_view option = trim_ows(value.substr(0, comma));
        if (iequals(option, "close")) close_asked_ = true;
        else if (iequals(option, "keep-alive")) keep_alive_asked_ = true;
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
      }
    } else if (iequals(name, "content-length")) {
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size()) return finish(status::bad_request, "malformed Content-Length");
      if (n != 0) has_body_ = true;
    } else if (iequals(name, "transfer-encoding")) {
      has_body_ = true;
    }
  }

  void end_of_head() {
    if (major_ != 1) return finish(status::bad_version, "HTTP version not supported");
    if (http11_ && hosts_ != 1) return finish(status::bad_request, hosts_ == 0 ? "no Host header" : "more than one Host header");
    if (method_ == method::other) return finish(status::not_allowed, "method not allowed");
    if (has_body_) return finish(status::bad_request, "a GET or HEAD with a body");
    bool keep_alive = http11_ ? !close_asked_ : keep_alive_asked_ && !close_asked_;
    std::string_view connection = !keep_alive ? "Connection: close\r\n" : http11_ ? "" : "Connection: keep-alive\r\n";
    append_response("200 OK", "hello\n", connection, method_ == method::get);
    if (!keep_alive) {
      done_ = true;
      close_reason_ = "the request asked to close";
      return;
    }
    // Ready for the next request on this connection.
    in_head_ = false;
    head_bytes_ = 0;
    hosts_ = 0;
    close_asked_ = keep_alive_asked_ = has_body_ = false;
  }

  /// Answers with an error and closes once it is sent (stops reading requests).
  void finish(status s, std::string reason) {
    switch (s) {
      case status::bad_request: append_response("400 Bad Request", "bad request\n", "Connection: close\r\n", true); break;
      case status::not_allowed:
        append_response("405 Method Not Allowed", "method not allowed\n", "Allow: GET, HEAD\r\nConnection: close\r\n", true);
        break;
      case status::bad_version:
        append_response("505 HTTP Version Not Supported", "http version not supported\n", "Connection: close\r\n", true);
        break;
      case status::ok: break;
    }
    done_ = true;
    close_reason_ = std::move(reason);
  }

  void append_response(std::string_view status_line, std::string_view body, std::string_view extra_headers, bool with_body) {
    char length[24];
    auto [end, ec] = std::to_chars(length, length + sizeof length, body.size());
    (void)ec;
    for (std::string_view part : {std::string_view("HTTP/1.1 "), status_line, std::string_view("\r\nDate: "), http_date(),
                                  std::string_view("\r\nContent-Type: text/plain\r\nContent-Length: "),
                                  std::string_view(length, std::size_t(end - length)), std::string_view("\r\n"),
                                  extra_headers, std::string_view("\r\n"), with_body ? body : std::string_view{}}) {
      auto p = reinterpret_cast<const std::byte*>(part.data());
      out_.insert(out_.end(), p, p + part.size());
    }
  }

  net::line_framer framer_{max_head};
  io::bytes out_;
  std::size_t head_bytes_ = 0;
  bool in_head_ = false;
  method method_ = method::get;
  int major_ = 1;
  bool http11_ = true;
  int hosts_ = 0;
  bool close_asked_ = false, keep_alive_asked_ = false, has_body_ = false;
  bool done_ = false;
  std::string close_reason_;
};

// --quick: plain blocking sockets, every answer checked byte for byte (the
// Date value checked for its shape, then compared as a fixed string).

constexpr std::string_view date_stand_in = "Thu, 01 Jan 1970 00:00:00 GMT";

std::string with_date(std::string_view head_and_body) {
  std::string s(head_and_body);
  for (auto at = s.find("@DATE@"); at != std::string::npos; at = s.find("@DATE@")) s.replace(at, 6, date_stand_in);
  return s;
}

const std::string ok200 = with_date(
    "HTTP/1.1 200 OK\r\nDate: @DATE@\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n");
const std::string ok200_close = with_date(
    "HTTP/1.1 200 OK\r\nDate: @DATE@\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n");
const std::string ok200_keep_alive = with_date(
    "HTTP/1.1 200 OK\r\nDate: @DATE@\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n");
const std::string head200 = with_date(
    "HTTP/1.1 200 OK\r\nDate: @DATE@\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n");
const std::string bad400 = with_date(
    "HTTP/1.1 400 Bad Request\r\nDate: @DATE@\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
    "bad request\n");
const std::string not_allowed405 = with_date(
    "HTTP/1.1 405 Method Not Allowed\r\nDate: @DATE@\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n"
    "Allow: GET, HEAD\r\nConnection: close\r\n\r\nmethod not allowed\n");

// Every "Date: " value must look like "Sun, 06 Nov 1994 08:49:37 GMT"; it
// is then replaced by the stand-in.
bool normalize_dates(std::string& s) {
  auto digits = [](std::string_view v) {
    for (char c : v)
      if (c < '0' || c > '9') return false;
    return true;
  };
  auto one_of = [](std::string_view list, std::string_view v) {
    auto at = list.find(v);
    return at != std::string_view::npos && at % 4 == 0;
  };
  for (auto at = s.find("\r\nDate: "); at != std::string::npos; at = s.find("\r\nDate: ", at + 1)) {
    if (s.size() < at + 8 + 29) return false;
    std::string_view d = std::string_view(s).substr(at + 8, 29);
    bool shape = one_of("Mon Tue Wed Thu Fri Sat Sun", d.substr(0, 3)) && d.substr(3, 2) == ", " &&
                 digits(d.substr(5, 2)) && d[7] == ' ' &&
                 one_of("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", d.substr(8, 3)) && d[11] == ' ' &&
                 digits(d.substr(12, 4)) && d[16] == ' ' && digits(d.substr(17, 2)) && d[19] == ':' &&
                 digits(d.substr(20, 2)) && d[22] == ':' && digits(d.substr(23, 2)) && d.substr(25) == " GMT";
    if (!shape) return false;
    s.replace(at + 8, 29, date_stand_in);
  }
  return true;
}

std::string printable(std::string_view s) {
  std::string r;
  for (char c : s) {
    if (c == '\r') r += "\\r";
    else if (c == '\n') r += "\\n\n    ";
    else if (static_cast<unsigned char>(c) < 0x20) r += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    else r += c;
  }
  return r;
}

class client {
 public:
  explicit client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto at = net::address::loopback(port);
    connected_ = ::connect(fd_, at.data(), at.size()) == 0;
  }
  ~client() { ::close(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  bool send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(std::size_t(n));
    }
    return connected_;
  }
  /// Reads exactly `expected`'s length (or up to end of stream) and
  /// compares; `then_eof`: the server must then close.
  bool expect(std::string_view what, std::string_view expected, bool then_eof) {
    std::string got(expected.size(), '\0');
    std::size_t have = 0;
    while (have < got.size()) {
      ssize_t r = ::recv(fd_, got.data() + have, got.size() - have, 0);
      if (r <= 0) break;
      have += std::size_t(r);
    }
    got.resize(have);
    if (!normalize_dates(got) || got != expected) {
      fmt::print(stderr, "{}: wrong answer\n  got:\n    {}\n  want:\n    {}\n", what, printable(got), printable(expected));
      return false;
    }
    if (then_eof) {
      char c;
      ssize_t r = ::recv(fd_, &c, 1, 0);
      if (r != 0) {
        fmt::print(stderr, "{}: the server did not close after its answer (recv: {})\n", what, r);
        return false;
      }
    }
    return true;
  }

 private:
  int fd_;
  bool connected_ = false;
};

int self_test(std::uint16_t port) {
  int failed = 0, checks = 0;
  auto check = [&](bool ok) { ++checks; failed += ok ? 0 : 1; };
  const std::string get = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  {
    client c(port);
    c.send(get);
    check(c.expect("one GET", ok200, false));
    // A pipelined pair in one send: both answers, in order.
    c.send("GET /a HTTP/1.1\r\nHost: localhost\r\nUser-Agent: self-test\r\nAccept: */*\r\n\r\n"
           "GET /b?x=1 HTTP/1.1\r\nhost: localhost\r\n\r\n");
    check(c.expect("pipelined pair", ok200 + ok200, false));
    // A head cut over three sends (two reads at least), bare LFs, a HEAD.
    c.send("HEAD /split HTTP/1.1\r\nHo");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    c.send("st: localhost\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    c.send("\n");
    check(c.expect("HEAD in pieces", head200, false));
    // Connection: close; what follows it is not answered.
    c.send("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" + get);
    check(c.expect("Connection: close", ok200_close, true));
  }
  {
    // A good request then a malformed one in the same send.
    client c(port);
    c.send(get + "GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n");
    check(c.expect("good then malformed", ok200 + bad400, true));
  }
  {
    client c(port);
    c.send("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(10'000, 'a') + "\r\n\r\n");
    check(c.expect("oversized head", bad400, true));
  }
  {
    client c(port);
    c.send("GET / HTTP/1.1\r\n\r\n");
    check(c.expect("HTTP/1.1 without Host", bad400, true));
  }
  {
    client c(port);
    c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    check(c.expect("HTTP/1.0 keep-alive", ok200_keep_alive, false));
    c.send("GET / HTTP/1.0\r\n\r\n");
    check(c.expect("HTTP/1.0", ok200_close, true));
  }
  {
    client c(port);
    c.send("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    check(c.expect("POST", not_allowed405, true));
  }
  if (failed != 0) return fmt::print(stderr, "{} of {} checks failed\n", failed, checks), 1;
  fmt::print("{} checks passed (pipelined, split, keep-alive, close, malformed, oversized)\n", checks);
  return 0;
}

bool parse_unsigned(const char* s, unsigned max, unsigned& out) {
  std::string_view v = s;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out <= max;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  unsigned port = 8080, shards = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--port" && i + 1 < argc && parse_unsigned(argv[i + 1], 65535, port)) ++i;
    else if (a == "--shards" && i + 1 < argc && parse_unsigned(argv[i + 1], 1024, shards)) ++i;
    else return fmt::print(stderr, "usage: {} [--port N] [--shards N] [--quick]\n", argv[0]), 2;
  }

  // Ctrl-C and SIGTERM are taken by sigwait below, not by a shard thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  troupe::config cfg;
  cfg.shards = shards;  // 0: one per CPU of the affinity mask
  if (quick) {
    cfg.spin_before_park = std::chrono::microseconds(0);
    cfg.pinning = troupe::thread_pinning::none;
  }
  troupe::runtime rt{cfg};
  troupe::actors::tcp_server_options options;
  options.at = quick ? net::address::loopback(0) : net::address::any(std::uint16_t(port));
  auto server = troupe::actors::serve_tcp<http_connection>(rt, options);
  if (!server) {
    fmt::print(stderr, "cannot listen on {}: {}\n", options.at.to_string(), server.error().message());
    return 1;
  }
  int status = 0;
  if (quick) {
    status = self_test(server->port());
  } else {
    fmt::print("serving HTTP on port {} ({} shards); Ctrl-C stops\n", server->port(), rt.shards());
    std::fflush(stdout);  // wrk_http.sh reads the port from a file
    int sig = 0;
    sigwait(&stop_signals, &sig);
  }
  rt.stop();
  const auto& c = server->counters();
  fmt::print(stderr, "{} connections accepted, {} refused\n", c.accepted.load(), c.refused.load());
  return status;
}
