// The code shown in doc/*.md, compiled and run. Each region between
// `// [name]` and `// [end]` is quoted in a doc page after a line
// `<!-- snippet: name -->`; the last test case checks that every quoted
// block matches its region here, so the docs cannot drift from code that
// compiles.
#include <troupe/troupe.hpp>

#define BOOST_TEST_MODULE doc_snippets
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

#include <filesystem>
#include <functional>
#include <thread>
#include <memory>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

using namespace std::chrono_literals;

namespace snippets {

// [counter]
struct add { int n; };
struct get {};

class counter : public troupe::actor<counter> {
  long total_ = 0;

 public:
  void on(const add& m) { total_ += m.n; }
  long on(const get&) { return total_; }  // a return value is the reply
};
// [end]

// [ask-then]
struct report {};

class reporter : public troupe::actor<reporter> {
  troupe::ref<counter> counter_;

 public:
  explicit reporter(troupe::ref<counter> c) : counter_(std::move(c)) {}

  void on(const report&) {
    ask(counter_, get{}, 500ms).then([this](troupe::result<long> total) {
      // Runs later, as a message of this actor, on its shard.
      if (total)
        last_ = *total;
      else
        failed_ = total.error();  // errc::timeout, errc::actor_stopped, ...
    });
  }
  long last_ = -1;
  std::error_code failed_;
};
// [end]

// [monitor]
class guardian : public troupe::actor<guardian> {
 public:
  explicit guardian(troupe::ref<counter> c) { monitor(c); }

  void on(const troupe::down& d) {
    // d.actor: who stopped; d.normal(): stop() or shutdown rather than a
    // failure; d.reason: the exception text of a failure.
    if (!d.normal()) spawn<counter>(troupe::pinned{this_shard()});  // replace it
  }
};
// [end]

// [timers]
struct tick {};
struct reminder {};

class heartbeat : public troupe::actor<heartbeat> {
  troupe::timer_id timer_ = 0;
  int beats_ = 0;

 public:
  void on_start() {
    timer_ = every(10ms, tick{});               // a tick message every 10 ms
    delayed_send(50ms, self(), reminder{});     // one message, 50 ms from now
  }
  void on(const tick&) {
    if (++beats_ == 3) cancel(timer_);
  }
  void on(const reminder&) { stop(); }         // on_stop, then monitors get down
};
// [end]

// [io-logger]
class logger : public troupe::actor<logger> {
  std::shared_ptr<troupe::fs::file> file_;

 public:
  void on_start() {
    submit(troupe::fs::open{"app.log", O_WRONLY | O_CREAT | O_APPEND, 0644})
        .then([this](troupe::io::result<troupe::fs::file> f) {
          if (!f) return stop();  // f.error() is the errno, e.g. EACCES
          file_ = std::make_shared<troupe::fs::file>(std::move(*f));
        });
  }
};
// [end]

// [answer-later]
struct fetch { std::string key; };

class cache_front : public troupe::actor<cache_front> {
  troupe::ref<counter> backend_;

 public:
  explicit cache_front(troupe::ref<counter> b) : backend_(std::move(b)) {}
  // Answers each fetch once the backend has; takes other messages meanwhile.
  troupe::deferred<long> on(const fetch&) {
    ask(backend_, get{}).then([reply = reply_later<long>()](troupe::result<long> r) mutable {
      reply.deliver(r);  // the asker of fetch gets this (a value or an error)
    });
    return {};
  }
};
// [end]

// [expect]
struct start {};

// Waits for a value that comes from outside any actor (a C library's
// callback thread, say): `hand_out` gives the promise to whoever keeps it.
class waiter : public troupe::actor<waiter> {
  std::function<void(troupe::promise<int>)> hand_out_;
  int value_ = 0;

 public:
  explicit waiter(std::function<void(troupe::promise<int>)> h) : hand_out_(std::move(h)) {}
  void on(const start&) {
    hand_out_(expect<int>([this](troupe::result<int> r) {
      value_ = r ? *r : -1;  // a message of this actor, on its shard
    }));
  }
  int on(const get&) const { return value_; }
};
// [end]

}  // namespace snippets

BOOST_AUTO_TEST_CASE(the_counter_snippet_runs) {
  // [main]
  troupe::runtime rt{{.shards = 2}};
  auto c = rt.spawn<snippets::counter>(troupe::pinned{1});
  c.send(snippets::add{5});                  // checked at compile time
  long n = rt.ask(c, snippets::get{}).get();  // blocking only outside actors
  // [end]
  BOOST_TEST(n == 5);
}

BOOST_AUTO_TEST_CASE(the_other_snippets_run) {
  troupe::runtime rt{troupe_test::test_config()};
  auto c = rt.spawn<snippets::counter>(troupe::pinned{1});
  auto r = rt.spawn<snippets::reporter>(troupe::pinned{0}, c);
  r.send(snippets::report{});
  rt.spawn<snippets::guardian>(troupe::pinned{0}, c);
  auto front = rt.spawn<snippets::cache_front>(troupe::pinned{0}, c);
  BOOST_TEST(rt.ask(front, snippets::fetch{"k"}).wait().has_value());
  auto h = rt.spawn<snippets::heartbeat>(troupe::pinned{1});
  BOOST_TEST(troupe_test::eventually([&] { return h.stopped(); }));
  // [backpressure]
  auto bounded = rt.spawn<snippets::counter>(troupe::pinned{1}, troupe::mailbox_capacity{1024});
  if (auto refused = bounded.try_send(snippets::add{1})) {
    // Full: the message is handed back in *refused; retry later or drop it.
  }
  // [end]
  // [placements]
  auto feed   = rt.spawn<snippets::counter>(troupe::pinned{0});               // shard 0, always
  auto book   = rt.spawn<snippets::counter>(troupe::sticky{"EURUSD"});        // one shard per key
  auto pricer = rt.spawn<snippets::counter>(troupe::stealable{});             // where CPUs are idle
  auto batch  = rt.spawn<snippets::counter>(troupe::stealable_preferred{1});  // starts on 1, may move
  // [end]
  for (auto* a : {&feed, &book, &pricer, &batch}) a->send(snippets::add{1});
  BOOST_TEST(rt.ask(pricer, snippets::get{}).get() == 1);
  BOOST_TEST(rt.ask(batch, snippets::get{}).get() == 1);
  std::thread outside;
  auto w = rt.spawn<snippets::waiter>(troupe::pinned{0}, [&outside](troupe::promise<int> p) {
    outside = std::thread([p = std::move(p)]() mutable { p.deliver(42); });
  });
  w.send(snippets::start{});
  BOOST_TEST(troupe_test::eventually([&] { return rt.ask(w, snippets::get{}).get() == 42; }));
  outside.join();
  rt.stop();
  troupe_test::check_quiescent(rt.stats());
}

namespace {

std::map<std::string, std::string> regions(const std::string& source) {
  std::map<std::string, std::string> out;
  std::istringstream in(source);
  std::string line, name, body;
  static const std::regex open(R"(^\s*// \[([a-z-]+)\]\s*$)"), close(R"(^\s*// \[end\]\s*$)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (name.empty() && std::regex_match(line, m, open) && m[1] != "end") {
      name = m[1];
      body.clear();
    } else if (!name.empty() && std::regex_match(line, close)) {
      out[name] = body;
      name.clear();
    } else if (!name.empty()) {
      body += line + "\n";
    }
  }
  return out;
}

// Removes the common leading indentation.
std::string dedent(const std::string& s) {
  std::size_t indent = std::string::npos;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(' ') == std::string::npos) continue;
    indent = std::min(indent, line.find_first_not_of(' '));
  }
  std::string out;
  std::istringstream again(s);
  while (std::getline(again, line)) out += (line.size() >= indent ? line.substr(indent) : line) + "\n";
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_snippet_quoted_in_the_docs_matches_this_file) {
  auto& m = boost::unit_test::framework::master_test_suite();
  BOOST_REQUIRE_MESSAGE(m.argc >= 2, "pass the project root as the first argument");
  std::filesystem::path top = m.argv[1];
  std::ifstream self(top / "test" / "doc_snippets.cpp");
  std::stringstream src;
  src << self.rdbuf();
  auto code = regions(src.str());
  int quoted = 0;
  static const std::regex marker(R"(<!-- snippet: ([a-z-]+) -->\s*```cpp\n([\s\S]*?)```)");
  for (auto& entry : std::filesystem::directory_iterator(top / "doc")) {
    if (entry.path().extension() != ".md") continue;
    std::ifstream f(entry.path());
    std::stringstream doc;
    doc << f.rdbuf();
    std::string text = doc.str();
    for (std::sregex_iterator it(text.begin(), text.end(), marker), end; it != end; ++it) {
      std::string name = (*it)[1];
      ++quoted;
      BOOST_TEST_CONTEXT(entry.path().filename().string() << ": snippet " << name) {
        BOOST_REQUIRE(code.count(name) == 1u);
        BOOST_TEST(dedent(code[name]) == std::string((*it)[2]));
      }
    }
  }
  BOOST_TEST(quoted >= 5);
}
