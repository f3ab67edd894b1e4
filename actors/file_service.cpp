// file_service: requests wait for a descriptor (cached, or opened once for
// every request that needs it meanwhile), then issue their operation and
// answer their promise from its continuation. Everything runs on the
// service's shard; the cache is plain actor state.
#include "file_service.hpp"

#include <troupe/error.hpp>
#include <troupe/whole_file.hpp>

#include <fcntl.h>
#include <linux/openat2.h>

#include <cerrno>
#include <cstring>

namespace troupe::actors {

namespace {
std::error_code errno_code(int e) { return std::error_code(e, std::generic_category()); }
}  // namespace

file_service::file_service(options o) : options_(std::move(o)) {
  if (options_.max_open == 0) throw error("troupe: file_service: max_open must be at least 1");
  if (!options_.root.empty()) {
    // O_PATH: a handle to resolve beneath, the directory is not read. A root
    // that cannot be opened fails the service as it starts (its monitors get
    // `down` with this message).
    int fd = ::open(options_.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      throw error("troupe: file_service: cannot open root '" + options_.root + "': " + std::strerror(errno));
    root_ = fs::file(fd);
  }
}

file_service::file_service() : file_service(options{}) {}

file_service::~file_service() = default;  // cached descriptors close with the last holder

fs::open file_service::open_op(const std::string& path, int flags, mode_t mode) const {
  if (!root_) return fs::open{path, flags, mode};
  return fs::open{path, flags, mode, root_.fd(), RESOLVE_BENEATH};
}

void file_service::opened(const std::string& k, io::result<fs::file> f) {
  auto it = cache_.find(k);
  if (it == cache_.end()) return;  // forgotten while it opened: the descriptor closes here
  std::vector<std::unique_ptr<waiter>> waiting = std::move(it->second.waiting);
  if (!f) {
    cache_.erase(it);
    for (auto& w : waiting) w->ready(nullptr, f.error());
    return;
  }
  ++counters_.opens;
  entry& e = it->second;
  e.file = std::make_shared<fs::file>(std::move(*f));
  e.opening = false;
  lru_.push_front(k);
  e.lru = lru_.begin();
  counters_.open_now = lru_.size();
  shared_file file = e.file;  // the entry may go below
  for (auto& w : waiting) w->ready(file, std::error_code());
  if (e.stale) close_entry(it);
  evict_beyond_limit();
}

void file_service::touch(entry& e, const std::string& k) {
  if (e.lru != lru_.begin()) {
    lru_.erase(e.lru);
    lru_.push_front(k);
    e.lru = lru_.begin();
  }
}

void file_service::evict_beyond_limit() {
  while (lru_.size() > options_.max_open) {
    ++counters_.evictions;
    close_entry(cache_.find(lru_.back()));
  }
}

void file_service::close_entry(std::unordered_map<std::string, entry>::iterator it) {
  entry& e = it->second;
  lru_.erase(e.lru);
  shared_file f = std::move(e.file);
  cache_.erase(it);
  counters_.open_now = lru_.size();
  // Close through the ring when nothing else holds it; otherwise the last
  // request holding it closes it.
  if (f.use_count() == 1 && f->sole_owner()) submit(fs::close{std::move(*f)}).then([](io::result<void>) {});
}

void file_service::forget_path(const std::string& path) {
  for (access a : {access::read_only, access::write_only}) {
    auto it = cache_.find(key(path, a));
    if (it == cache_.end()) continue;
    // One being opened serves the requests that wait for it, then closes.
    if (it->second.opening) it->second.stale = true;
    else close_entry(it);
  }
}

deferred<io::bytes> file_service::on(read r) {
  ++counters_.reads;
  auto reply = reply_later<io::bytes>();
  if (r.length > options_.max_read) {
    answer(reply, io::result<io::bytes>(errno_code(EINVAL)));
    return {};
  }
  std::string path = r.path;
  with_file(path, access::read_only,
            [this, r = std::move(r), reply = std::move(reply)](shared_file f, std::error_code ec) mutable {
              if (ec) return answer(reply, io::result<io::bytes>(ec));
              submit(fs::read(*f, r.offset, r.length))
                  .then([this, reply = std::move(reply)](io::result<io::bytes> b) mutable {
                    answer(reply, std::move(b));
                  });
            });
  return {};
}

deferred<std::size_t> file_service::on(write w) {
  ++counters_.writes;
  auto reply = reply_later<std::size_t>();
  std::string path = w.path;
  with_file(path, access::write_only,
            [this, w = std::move(w), reply = std::move(reply)](shared_file f, std::error_code ec) mutable {
              if (ec) return answer(reply, io::result<std::size_t>(ec));
              write_all(std::move(f), w.offset, std::move(w.data), 0, std::move(reply));
            });
  return {};
}

void file_service::write_all(shared_file f, std::uint64_t offset, io::bytes data, std::size_t before,
                             promise<std::size_t> reply) {
  const fs::file& file = *f;
  submit(fs::write(file, offset, std::move(data)))
      .then([this, f = std::move(f), offset, before, reply = std::move(reply)](io::result<fs::written> r) mutable {
        if (!r) return answer(reply, io::result<std::size_t>(r.error()));
        std::size_t done = before + r->bytes;
        if (r->bytes == r->buffer.size()) return answer(reply, io::result<std::size_t>(done));
        if (r->bytes == 0) return answer(reply, io::result<std::size_t>(errno_code(EIO)));  // no progress
        // A short write (a full disk, a signal): the rest, from where it stopped.
        io::bytes rest(r->buffer.begin() + static_cast<std::ptrdiff_t>(r->bytes), r->buffer.end());
        write_all(std::move(f), offset + r->bytes, std::move(rest), done, std::move(reply));
      });
}

deferred<fs::metadata> file_service::on(const stat& s) {
  ++counters_.stats;
  auto reply = reply_later<fs::metadata>();
  if (!root_) {
    submit(fs::stat{s.path}).then([this, reply = std::move(reply)](io::result<fs::metadata> m) mutable {
      answer(reply, std::move(m));
    });
    return {};
  }
  // statx has no RESOLVE_BENEATH: resolve with openat2 (O_PATH), then statx
  // the descriptor.
  submit(open_op(s.path, O_PATH, 0)).then([this, reply = std::move(reply)](io::result<fs::file> f) mutable {
    if (!f) return answer(reply, io::result<fs::metadata>(f.error()));
    auto held = std::make_shared<fs::file>(std::move(*f));
    submit(fs::stat::of(*held)).then([this, held, reply = std::move(reply)](io::result<fs::metadata> m) mutable {
      answer(reply, std::move(m));
    });
  });
  return {};
}

deferred<io::bytes> file_service::on(const read_all& r) {
  ++counters_.whole_reads;
  auto reply = reply_later<io::bytes>();
  fs::read_file(*this, open_op(r.path, O_RDONLY, 0))
      .then([this, reply = std::move(reply)](io::result<io::bytes> b) mutable {
        if (b && b->size() > options_.max_read) return answer(reply, io::result<io::bytes>(errno_code(EFBIG)));
        answer(reply, std::move(b));
      });
  return {};
}

namespace {
// write_file works by path (a temporary file, a rename): beneath a root,
// only relative paths without ".." components.
bool stays_beneath(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (path.compare(start, end - start, "..") == 0) return false;
    start = end + 1;
  }
  return true;
}
}  // namespace

deferred<void> file_service::on(replace r) {
  ++counters_.replaces;
  auto reply = reply_later<void>();
  if (root_ && !stays_beneath(r.path)) {
    answer(reply, io::result<void>(errno_code(EXDEV)));
    return {};
  }
  // The cached descriptors would keep pointing at the replaced file.
  forget_path(r.path);
  std::string path = root_ ? options_.root + "/" + r.path : r.path;
  fs::write_file(*this, std::move(path), std::move(r.data), options_.create_mode)
      .then([this, reply = std::move(reply)](io::result<void> done) mutable { answer(reply, std::move(done)); });
  return {};
}

deferred<void> file_service::on(const sync& s) {
  ++counters_.syncs;
  auto reply = reply_later<void>();
  auto it = cache_.find(key(s.path, access::write_only));
  if (it == cache_.end() || it->second.opening) {
    // Nothing written through a descriptor the service still holds. (One
    // evicted meanwhile was closed; close does not sync, so sync the path.)
    submit(open_op(s.path, O_WRONLY, 0)).then([this, reply = std::move(reply)](io::result<fs::file> f) mutable {
      if (!f) return answer(reply, io::result<void>(f.error()));
      auto held = std::make_shared<fs::file>(std::move(*f));
      submit(fs::fsync(*held, fs::sync_scope::data_only)).then([this, held, reply = std::move(reply)](io::result<void> r) mutable {
        answer(reply, std::move(r));
      });
    });
    return {};
  }
  shared_file f = it->second.file;
  const fs::file& file = *f;
  submit(fs::fsync(file, fs::sync_scope::data_only)).then([this, f, reply = std::move(reply)](io::result<void> r) mutable {
    answer(reply, std::move(r));
  });
  return {};
}

void file_service::on(const forget& f) { forget_path(f.path); }

}  // namespace troupe::actors
