#include <dirent.h>
#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <algorithm>
#include <optional>
#include <random>

#include "target.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs::bench {

namespace {

class LibraryTarget final : public Target {
 public:
  LibraryTarget(const std::string& socket_path, std::optional<unsigned> poll_us, Api api,
                std::string subdir)
      : subdir_(std::move(subdir)), api_(api) {
    Options o;
    o.socket_path = socket_path;
    if (poll_us) o.poll_us = *poll_us;  // else the library's default wait
    o.app_reaps_completions = api == Api::kAsioReap;
    o.registered_memory_bytes = 2 << 20;  // I/O buffers in device memory: no copies
    fs_ = Client::connect(o);
    block_ = fs_->allocate_buffer(1 << 20);
    fs_->mkdir(subdir_);
    Entry e;
    if (auto ec = fs_->resolve(subdir_, e)) throw std::system_error(ec, "resolve " + subdir_);
    dir_ = e.inode;
  }
  ~LibraryTarget() override {
    block_ = IoBuffer();  // back to the pool before the client goes
    fs_->forget(dir_, 1);
    fs_->rmdir(subdir_);
  }

  void create_files(const std::vector<std::string>& names) override {
    for (auto& n : names) {
      Created c;
      if (fs_->create(dir_, n, O_WRONLY, 0644, c)) continue;
      fs_->release(c.entry.inode, c.file.fh);
      fs_->forget(c.entry.inode, 1);
    }
  }
  void remove_files(const std::vector<std::string>& names) override {
    for (auto& n : names) fs_->unlink(path(n));
  }
  // The path rows do what an application does: a path per call, as the directory targets'
  // syscalls do (whatever the library caches between calls counts).
  bool stat_one(const std::string& name, size_t count) override {
    const std::string p = path(name);
    Attr a;
    for (size_t i = 0; i < count; ++i)
      if (fs_->stat(p, a)) return false;
    return true;
  }
  bool getattr_repeat(const std::string& name, size_t count) override {
    Entry e;
    if (fs_->lookup(dir_, name, e)) return false;
    Attr a;
    bool ok = true;
    for (size_t i = 0; i < count && ok; ++i) ok = !fs_->getattr(e.inode, a);
    fs_->forget(e.inode, 1);
    return ok;
  }
  // Empties the library's path cache too, so "cold" is cold for it as well: first, so that
  // the host entries its references pinned go with the kernel's drop. Its FORGETs are sent
  // asynchronously (batched); a few may still reach virtiofsd in the next row's time.
  void drop_caches() override {
    fs_->drop_caches();
    bench::drop_caches();
  }
  bool stat_each(const std::vector<std::string>& names, unsigned depth) override {
    if (api_ == Api::kAsioInline) return asio_inline_stat_each(*fs_, dir_, names, depth);
    if (api_ == Api::kAsio || api_ == Api::kAsioReap)
      return asio_stat_each(*fs_, dir_, names, depth, api_ == Api::kAsioReap);
    if (depth == 1 && api_ == Api::kBlocking) {
      // Blocking LOOKUPs in the directory: the same work as the callback and asio rows.
      Entry e;
      for (const auto& n : names) {
        if (fs_->lookup(dir_, n, e)) return false;
        fs_->forget(e.inode, 1);
      }
      return true;
    }
    if (depth == 1 && api_ == Api::kDefault) {
      // One at a time, the way a program calls stat(path).
      Attr a;
      for (const auto& n : names)
        if (fs_->stat(path(n), a)) return false;
      return true;
    }
    // Deeper: LOOKUPs in the directory, `depth` in flight (there is no asynchronous path API).
    // Callbacks may run on this thread (a failed session answers at once): never submit while
    // holding the lock they take.
    std::mutex mu;
    std::condition_variable cv;
    std::atomic<size_t> next{0};
    size_t finished = 0;
    bool ok = true;
    std::function<void(std::error_code, Entry)> on_entry;
    auto start_next = [&] {
      if (const size_t i = next.fetch_add(1); i < names.size()) fs_->lookup(dir_, names[i], on_entry);
    };
    // The next call starts before this one counts as finished: after the last count this
    // function's locals may be gone.
    on_entry = [&](std::error_code ec, Entry e) {
      if (!ec) fs_->forget(e.inode, 1);
      start_next();
      std::lock_guard lock(mu);
      ok &= !ec;
      if (++finished == names.size()) cv.notify_all();
    };
    for (unsigned i = 0; i < depth; ++i) start_next();
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return finished == names.size(); });
    return ok;
  }
  bool open_close(const std::string& name, size_t count) override {
    const std::string p = path(name);
    for (size_t i = 0; i < count; ++i) {
      File f;
      if (fs_->open_file(p, O_RDONLY, f) || f.close()) return false;
    }
    return true;
  }
  bool create_unlink(const std::string& prefix, size_t count) override {
    for (size_t i = 0; i < count; ++i) {
      const std::string p = path(prefix + std::to_string(i));
      File f;
      if (fs_->open_file(p, O_CREAT | O_EXCL | O_WRONLY, f, 0644) || f.close() || fs_->unlink(p))
        return false;
    }
    return true;
  }
  bool write_sequential(const std::string& name, size_t mib) override {
    File f;
    if (fs_->open_file(path(name), O_CREAT | O_WRONLY | O_TRUNC, f)) return false;
    std::fill_n(block_.data(), block_.size(), std::byte{'v'});
    size_t n;
    for (size_t i = 0; i < mib; ++i)
      if (f.pwrite(i << 20, block_.span(), n)) return false;
    return !fs_->fsync(f.inode(), f.handle()) && !f.close();
  }
  bool read_sequential(const std::string& name, size_t mib) override {
    File f;
    if (fs_->open_file(path(name), O_RDONLY, f)) return false;
    size_t n = 0, total = 0;
    for (size_t i = 0; i < mib; ++i, total += n)
      if (f.pread(i << 20, block_.span(), n)) return false;
    return total == mib << 20;
  }
  size_t read_random_4k(const std::string& name, size_t mib, double seconds) override {
    File f;
    if (fs_->open_file(path(name), O_RDONLY, f)) return 0;
    const std::span<std::byte> buf = block_.span().first(4096);
    std::mt19937_64 rng(42);
    const uint64_t blocks = (mib << 20) / 4096;
    size_t done = 0, n;
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      for (int i = 0; i < 16; ++i, ++done)
        if (fs_->read(f.inode(), f.handle(), (rng() % blocks) * 4096, buf, n) || n != 4096) return 0;
    }
    return done;
  }
  void make_tree(const std::string& name, size_t dirs, size_t files) override {
    fs_->mkdir(path(name));
    for (size_t d = 0; d < dirs; ++d) {
      const std::string dir = path(name) + "/d" + std::to_string(d);
      fs_->mkdir(dir);
      Entry e;
      if (fs_->resolve(dir, e)) continue;
      for (size_t f = 0; f < files; ++f) {
        Created c;
        if (fs_->create(e.inode, "f" + std::to_string(f), O_WRONLY, 0644, c)) continue;
        fs_->release(c.entry.inode, c.file.fh);
        fs_->forget(c.entry.inode, 1);
      }
      fs_->forget(e.inode, 1);
    }
  }
  void remove_tree(const std::string& name, size_t dirs, size_t files) override {
    for (size_t d = 0; d < dirs; ++d) {
      const std::string dir = path(name) + "/d" + std::to_string(d);
      for (size_t f = 0; f < files; ++f) fs_->unlink(dir + "/f" + std::to_string(f));
      fs_->rmdir(dir);
    }
    fs_->rmdir(path(name));
  }
  size_t walk_tree(const std::string& name) override {
    Entry e;
    if (fs_->resolve(path(name), e)) return 0;
    const size_t seen = walk(e.inode);
    fs_->forget(e.inode, 1);
    return seen;
  }

 private:
  // Entries below dir through READDIRPLUS (each entry's attributes come with it, as the kernel
  // asks for them); 0 when something failed.
  size_t walk(Inode dir) {
    OpenFile d;
    if (fs_->opendir(dir, d)) return 0;
    size_t seen = 0;
    bool ok = true;
    std::vector<std::pair<DirEntry, Entry>> batch;
    for (uint64_t offset = 0; ok;) {
      if (fs_->readdirplus(dir, d.fh, offset, batch)) { ok = false; break; }
      if (batch.empty()) break;
      for (auto& [de, entry] : batch) {
        offset = de.offset;
        if (entry.inode == 0) continue;  // "." and "..": no reference
        if (ok && de.name != "." && de.name != "..") {
          ++seen;
          if (de.type == DT_DIR) {
            const size_t below = walk(entry.inode);
            ok = below != 0;
            seen += below;
          }
        }
        fs_->forget(entry.inode, 1);
      }
    }
    fs_->releasedir(dir, d.fh);
    return ok ? seen : 0;
  }

  std::string path(const std::string& name) const { return subdir_ + "/" + name; }
  std::unique_ptr<Client> fs_;
  IoBuffer block_;
  std::string subdir_;
  Api api_;
  Inode dir_ = 0;
};

}  // namespace

std::unique_ptr<Target> library_target(const std::string& socket_path,
                                       std::optional<unsigned> poll_us, Api api) {
  return std::make_unique<LibraryTarget>(socket_path, poll_us, api, ".fsbench-library");
}

}  // namespace virtiofs::bench
