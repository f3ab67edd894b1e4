#include "blocking_pool.hpp"

#include <troupe/detail/runtime_api.hpp>

#include <pthread.h>

#include <string>

namespace troupe::detail {

namespace {
thread_local const blocking_pool* tl_pool = nullptr;
}  // namespace

bool blocking_pool::on_pool_thread() const noexcept { return tl_pool == this; }

void blocking_pool::push(pending_io* p) {
  in_flight_.fetch_add(1, std::memory_order_seq_cst);
  {
    std::lock_guard lock(mutex_);
    if (threads_.empty())
      for (unsigned i = 0; i < size_; ++i)
        threads_.emplace_back([this, i] {
          std::string name = "troupe-block-" + std::to_string(i);
          pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
          tl_pool = this;
          work();
        });
    queue_.push_back(p);
  }
  cv_.notify_one();
}

void blocking_pool::work() {
  for (;;) {
    pending_io* p;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      p = queue_.front();
      queue_.pop_front();
    }
    p->run_blocking(p);
    jobs_run_.fetch_add(1, std::memory_order_relaxed);
    control_block* owner = p->owner;
    post(owner, p);  // from this thread: the foreign path (a dead letter once stopping)
    owner->release();
    in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void blocking_pool::wait_idle() noexcept {
  while (in_flight_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
}

void blocking_pool::join() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace troupe::detail
