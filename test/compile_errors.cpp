// Misuse the type system catches: each program below must fail to compile,
// with an error that names the message type and the actor type. The same
// programs with a handled message must compile (so a broken setup cannot make
// the bad ones "fail" for the wrong reason), and every public header must
// compile on its own with -Wall -Wextra -Werror.
//
// argv[1] (from test/Jamfile) is the include directory of the library. The
// compiler is $CXX, else g++. Every compile is started up front, on a few
// threads, and each test case waits for the ones it checks.
#include <troupe/troupe.hpp>

#define BOOST_TEST_MODULE compile_errors
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

// ---- the programs ----------------------------------------------------------

// Shared by every program: an actor with two handlers and a message it
// does not handle.
const char* const prelude = R"(#include <troupe/troupe.hpp>
#include <chrono>
struct add { int n; };
struct get {};
struct bad_message {};
class counter : public troupe::actor<counter> {
  long total_ = 0;
 public:
  void on(const add& m) { total_ += m.n; }
  long on(const get&) { return total_; }
};
struct watch { troupe::ref<counter> target; };
)";

struct program {
  std::string name;
  std::string bad;   // must not compile
  std::string good;  // the same with a handled message: must compile
  std::vector<std::string> must_mention;
};

std::vector<program> programs() {
  return {
      {"ref_send",
       "void f(troupe::ref<counter> c) { c.send(bad_message{}); }\n",
       "void f(troupe::ref<counter> c) { c.send(add{1}); }\n",
       {"bad_message", "counter"}},
      {"ref_try_send",
       "void f(troupe::ref<counter> c) { auto back = c.try_send(bad_message{}); (void)back; }\n",
       "void f(troupe::ref<counter> c) { auto back = c.try_send(add{1}); (void)back; }\n",
       {"bad_message", "counter"}},
      {"runtime_ask",
       "long f(troupe::runtime& rt, troupe::ref<counter> c) {\n"
       "  auto r = rt.ask(c, bad_message{}); (void)r; return 0; }\n",
       "long f(troupe::runtime& rt, troupe::ref<counter> c) { return rt.ask(c, get{}).get(); }\n",
       {"bad_message", "counter"}},
      {"actor_ask",
       "class asker : public troupe::actor<asker> {\n public:\n"
       "  void on(const watch& w) { ask(w.target, bad_message{}).then([](auto) {}); }\n};\n",
       "class asker : public troupe::actor<asker> {\n public:\n"
       "  void on(const watch& w) { ask(w.target, get{}).then([](troupe::result<long>) {}); }\n};\n",
       {"bad_message", "counter"}},
      {"actor_delayed_send",
       "class timed : public troupe::actor<timed> {\n public:\n"
       "  void on(const watch& w) {\n"
       "    delayed_send(std::chrono::milliseconds(1), w.target, bad_message{}); }\n};\n",
       "class timed : public troupe::actor<timed> {\n public:\n"
       "  void on(const watch& w) {\n"
       "    delayed_send(std::chrono::milliseconds(1), w.target, add{1}); }\n};\n",
       {"bad_message", "counter"}},
      {"actor_every",
       "class ticking : public troupe::actor<ticking> {\n public:\n"
       "  void on(const add&) {}\n"
       "  void on_start() { every(std::chrono::milliseconds(1), bad_message{}); }\n};\n",
       "class ticking : public troupe::actor<ticking> {\n public:\n"
       "  void on(const add&) {}\n"
       "  void on_start() { every(std::chrono::milliseconds(1), add{1}); }\n};\n",
       {"bad_message", "ticking"}},
      {"monitor_without_down_handler",
       "class watcher : public troupe::actor<watcher> {\n public:\n"
       "  void on(const watch& w) { monitor(w.target); }\n};\n",
       "class watcher : public troupe::actor<watcher> {\n public:\n"
       "  void on(const watch& w) { monitor(w.target); }\n"
       "  void on(const troupe::down&) {}\n};\n",
       {"down", "watcher"}},
  };
}

// ---- running the compiler --------------------------------------------------

struct outcome {
  int status = -1;  // the compiler's exit status
  std::string output;  // stdout and stderr
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

outcome run_compiler(const std::string& flags, const fs::path& source) {
  const char* cxx = std::getenv("CXX");
  std::string cmd = std::string(cxx && *cxx ? cxx : "g++") + " -std=c++20 -fsyntax-only " + flags +
                    " " + shell_quote(source.string()) + " 2>&1";
  outcome o;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    o.output = "popen failed: " + cmd;
    return o;
  }
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) o.output.append(buf, n);
  int st = ::pclose(p);
  o.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  o.output = "$ " + cmd + "\n" + o.output;
  return o;
}

/// Every compile this module runs, started on first use, on at most as many
/// threads as there are CPUs.
class batch {
 public:
  static batch& get() {
    static batch b;
    return b;
  }

  const fs::path& include_dir() const { return include_; }
  const std::vector<std::string>& headers() const { return headers_; }

  /// The outcome of the job `key` (waits for it).
  const outcome& result(const std::string& key) {
    auto it = results_.find(key);
    if (it == results_.end()) throw std::logic_error("no compile job " + key);
    return it->second.get();
  }

  ~batch() {
    for (auto& t : workers_) t.join();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

 private:
  batch() {
    auto& m = boost::unit_test::framework::master_test_suite();
    if (m.argc < 2) throw std::runtime_error("compile_errors needs the include directory as argv[1]");
    include_ = fs::absolute(m.argv[1]);
    char tmpl[] = "/tmp/troupe-compile-errors-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;

    const std::string inc = "-I" + shell_quote(include_.string());
    // The controls share one translation unit, a namespace each: one
    // compile instead of one per program.
    std::string good = prelude;
    for (const program& p : programs()) {
      add("bad:" + p.name, std::string(prelude) + p.bad, inc);
      good += "namespace good_" + p.name + " {\n" + p.good + "}\n";
    }
    add("good", good, inc);
    // Every public header alone (detail/ included: users get those through
    // the public ones and a missing include there breaks them just the same).
    for (const auto& e : fs::recursive_directory_iterator(include_ / "troupe"))
      if (e.is_regular_file() && e.path().extension() == ".hpp")
        headers_.push_back(fs::relative(e.path(), include_).string());
    std::sort(headers_.begin(), headers_.end());
    for (const std::string& h : headers_)
      add("header:" + h, "#include <" + h + ">\n", "-Wall -Wextra -Werror " + inc);

    unsigned n = std::max(2u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < n; ++i) workers_.emplace_back([this] { work(); });
  }

  void add(const std::string& key, const std::string& text, const std::string& flags) {
    std::string file = key;
    std::replace_if(file.begin(), file.end(), [](char c) { return c == '/' || c == ':' || c == '.'; }, '_');
    fs::path path = dir_ / (file + ".cpp");
    std::ofstream(path) << text;
    std::packaged_task<outcome()> task([flags, path] { return run_compiler(flags, path); });
    results_.emplace(key, task.get_future().share());
    queue_.push_back(std::move(task));
  }

  void work() {
    for (;;) {
      std::packaged_task<outcome()> task;
      {
        std::lock_guard lock(mutex_);
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  fs::path include_;
  fs::path dir_;
  std::vector<std::string> headers_;
  std::map<std::string, std::shared_future<outcome>> results_;
  std::mutex mutex_;
  std::deque<std::packaged_task<outcome()>> queue_;
  std::vector<std::thread> workers_;
};

/// The first line of the output that reports an error.
std::string first_error(const std::string& output) {
  std::size_t at = output.find("error:");
  if (at == std::string::npos) return {};
  std::size_t begin = output.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return output.substr(begin, output.find('\n', at) - begin);
}

void check_rejected(const std::string& name) {
  auto& b = batch::get();
  const outcome& good = b.result("good");
  BOOST_TEST_INFO("control programs (handled messages):\n" << good.output);
  BOOST_TEST_REQUIRE(good.status == 0);

  const outcome& bad = b.result("bad:" + name);
  BOOST_TEST_INFO("bad program " << name << ":\n" << bad.output);
  BOOST_TEST(bad.status != 0);
  BOOST_TEST(bad.output.find("error:") != std::string::npos);
  for (const program& p : programs())
    if (p.name == name)
      for (const std::string& word : p.must_mention) {
        BOOST_TEST_INFO("bad program " << name << " must mention '" << word << "':\n" << bad.output);
        BOOST_TEST(bad.output.find(word) != std::string::npos);
      }
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_control_programs_with_handled_messages_compile) {
  const outcome& o = batch::get().result("good");
  BOOST_TEST_INFO(o.output);
  BOOST_TEST(o.status == 0);
}

BOOST_AUTO_TEST_CASE(ref_send_of_an_unhandled_message_names_the_message_and_the_actor) {
  check_rejected("ref_send");
}

BOOST_AUTO_TEST_CASE(ref_try_send_of_an_unhandled_message_names_the_message_and_the_actor) {
  check_rejected("ref_try_send");
}

BOOST_AUTO_TEST_CASE(runtime_ask_of_an_unhandled_message_names_the_message_and_the_actor) {
  check_rejected("runtime_ask");
}

BOOST_AUTO_TEST_CASE(actor_ask_of_an_unhandled_message_names_the_message_and_the_actor) {
  check_rejected("actor_ask");
}

BOOST_AUTO_TEST_CASE(delayed_send_of_an_unhandled_message_names_the_message_and_the_actor) {
  check_rejected("actor_delayed_send");
}

BOOST_AUTO_TEST_CASE(every_with_an_unhandled_message_names_the_message_and_the_actor) {
  check_rejected("actor_every");
}

BOOST_AUTO_TEST_CASE(monitor_from_an_actor_without_a_down_handler_names_down_and_the_actor) {
  check_rejected("monitor_without_down_handler");
}

// The error a user reads first is troupe's own static_assert, which says what
// is wrong in words, not a substitution failure deep in a template.
BOOST_AUTO_TEST_CASE(the_first_error_of_each_misuse_is_troupes_own_explanation) {
  for (const program& p : programs()) {
    const outcome& o = batch::get().result("bad:" + p.name);
    std::string first = first_error(o.output);
    BOOST_TEST_INFO(p.name << ": first error: " << first << "\nfull output:\n" << o.output);
    BOOST_TEST(first.find("static assertion failed: troupe:") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(every_public_header_compiles_on_its_own_without_warnings) {
  auto& b = batch::get();
  BOOST_TEST_REQUIRE(b.headers().size() >= 10u);  // the glob found the headers
  for (const std::string& h : b.headers()) {
    const outcome& o = b.result("header:" + h);
    BOOST_TEST_INFO(h << ":\n" << o.output);
    BOOST_TEST(o.status == 0);
  }
}
