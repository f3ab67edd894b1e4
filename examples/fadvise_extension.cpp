// Extending troupe's I/O with an opcode it does not wrap, through io::raw:
// posix_fadvise as IORING_OP_FADVISE, then a read of the advised range.
//
// io::raw hands you the SQE; what it points to must live until the
// continuation runs. Here the lambda owns everything it needs: the file's
// shared descriptor (so a close cannot free the number under the kernel)
// and plain values. doc/io.md, "submit_raw".
#include <troupe/troupe.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <future>
#include <string>

namespace ext {

/// The extension: an operation a user adds without touching troupe.
inline auto fadvise(const troupe::fs::file& f, std::uint64_t offset, std::uint32_t len, int advice) {
  return troupe::io::raw{[keep = f.share(), fd = f.fd(), offset, len, advice](io_uring_sqe* sqe) {
    io_uring_prep_fadvise(sqe, fd, offset, len, advice);
  }};
}

}  // namespace ext

struct go {
  std::string path;
  std::promise<std::string>* done;
};

class advisor : public troupe::actor<advisor> {
 public:
  void on(go g) {
    submit(troupe::fs::open{g.path}).then([this, g](troupe::io::result<troupe::fs::file> f) {
      if (!f) return g.done->set_value("open: " + f.error().message());
      auto file = std::make_shared<troupe::fs::file>(std::move(*f));
      submit(ext::fadvise(*file, 0, 4096, POSIX_FADV_WILLNEED)).then([this, g, file](troupe::io::result<troupe::io::cqe> c) {
        if (c->res < 0) return g.done->set_value("fadvise: " + std::to_string(-c->res));
        submit(troupe::fs::read(*file, 0, 64)).then([g](troupe::io::result<troupe::io::bytes> r) {
          g.done->set_value(r ? "fadvise ok, read " + std::to_string(r->size()) + " bytes"
                              : "read: " + r.error().message());
        });
      });
    });
  }
};

int main(int argc, char** argv) {
  std::string path = argc > 1 && std::string(argv[1]) != "--quick" ? argv[1] : "/etc/os-release";
  troupe::runtime rt{{.shards = 1}};
  std::promise<std::string> done;
  auto result = done.get_future();
  rt.spawn<advisor>(troupe::pinned{0}).send(go{path, &done});
  std::string what = result.get();
  std::printf("%s: %s\n", path.c_str(), what.c_str());
  rt.stop();
  return what.rfind("fadvise ok", 0) == 0 ? 0 : 1;
}
