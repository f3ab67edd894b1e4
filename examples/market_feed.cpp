// A tiny market-data pipeline (the first flagship; examples/checksum.cpp is
// the current one).
//
// - `feed` (pinned to shard 0) ticks on a periodic timer and publishes a
//   quote per symbol to that symbol's `book`;
// - each `book` is placed by `sticky{symbol}`, so a symbol always lands on
//   the same shard; it keeps the last price and the traded volume;
// - `auditor` (pinned to shard 1) monitors the feed. When the feed stops
//   after its last tick, the auditor gets `down`, asks every book for a
//   summary (ask/reply across shards), prints them and stops the runtime.
// main() waits for the runtime and prints the per-shard stats.
#include <troupe/troupe.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

using namespace std::chrono_literals;

struct quote {
  double price;
  std::uint32_t size;
};
struct summary_request {};
struct summary {
  std::string symbol;
  double last;
  std::uint64_t volume;
  std::uint64_t quotes;
};

class book : public troupe::actor<book> {
  std::string symbol_;
  double last_ = 0;
  std::uint64_t volume_ = 0, quotes_ = 0;

 public:
  explicit book(std::string symbol) : symbol_(std::move(symbol)) {}
  void on(const quote& q) {
    last_ = q.price;
    volume_ += q.size;
    ++quotes_;
  }
  summary on(const summary_request&) { return {symbol_, last_, volume_, quotes_}; }
};

struct tick {};

class feed : public troupe::actor<feed> {
  std::vector<troupe::ref<book>> books_;
  int ticks_left_;
  std::uint64_t seed_ = 42;

  double next_price(double base) {  // a small deterministic random walk
    seed_ = seed_ * 6364136223846793005ull + 1442695040888963407ull;
    return base + double(seed_ >> 40) / double(1 << 24);
  }

 public:
  feed(std::vector<troupe::ref<book>> books, int ticks) : books_(std::move(books)), ticks_left_(ticks) {}
  void on_start() { every(1ms, tick{}); }
  void on(const tick&) {
    for (std::size_t i = 0; i < books_.size(); ++i)
      books_[i].send(quote{next_price(100.0 + 10.0 * double(i)), std::uint32_t(100 + i)});
    if (--ticks_left_ == 0) stop();  // the auditor's monitor hears of it
  }
};

class auditor : public troupe::actor<auditor> {
  std::vector<troupe::ref<book>> books_;
  std::size_t answers_ = 0;

 public:
  auditor(troupe::ref<feed> f, std::vector<troupe::ref<book>> books) : books_(std::move(books)) {
    monitor(f);
  }
  void on(const troupe::down& d) {
    fmt::print("{} stopped ({}); asking {} books for their summary\n", fmt::format("{}", d.actor),
               d.normal() ? "normally" : d.reason, books_.size());
    for (auto& b : books_)
      ask(b, summary_request{}, 1s).then([this, b](troupe::result<summary> r) {
        if (r)
          fmt::print("  {:<5} on {:<10} last {:8.3f}  volume {:>7}  quotes {:>4}\n", r->symbol,
                     fmt::format("{}", b), r->last, r->volume, r->quotes);
        else
          fmt::print("  {} did not answer: {}\n", fmt::format("{}", b), r.error().message());
        if (++answers_ == books_.size()) system().stop();
      });
  }
};

int main() {
  troupe::config cfg;
  cfg.shards = 2;
  troupe::runtime rt{cfg};

  std::vector<troupe::ref<book>> books;
  for (const char* s : {"AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META"})
    books.push_back(rt.spawn<book>(troupe::sticky{std::string_view(s)}, std::string(s)));
  auto f = rt.spawn<feed>(troupe::pinned{0}, books, 200);
  rt.spawn<auditor>(troupe::pinned{1}, f, books);

  rt.wait();  // until the auditor stops the runtime
  auto st = rt.stats();
  fmt::print("\n{}", st.text());
  fmt::print("sent {} = processed {} + dead letters {}\n", st.sent(), st.processed(), st.dead_letters());
  return st.sent() == st.processed() + st.dead_letters() ? 0 : 1;
}
