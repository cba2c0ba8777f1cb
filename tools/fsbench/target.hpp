// One place a benchmark workload runs: a directory reached with ordinary syscalls (the backing
// directory, a FUSE mount) or the libvirtiofs API on a device. Each operation is the same
// file-system work on every target, so results can stand side by side.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "virtiofs/client.hpp"

namespace virtiofs::bench {

class Target {
 public:
  virtual ~Target() = default;
  // Setup and teardown of the work area (not timed).
  virtual void create_files(const std::vector<std::string>& names) = 0;
  virtual void remove_files(const std::vector<std::string>& names) = 0;
  // Timed operations; each returns false on an error.
  virtual bool stat_one(const std::string& name, size_t count) = 0;
  // `count` GETATTRs of one file, each a round trip to the server (the multiqueue rows): a
  // directory target stat(2)s it (stat_one); the library resolves the name once and calls
  // Client::getattr on the inode, whose layer caches nothing, where Client::stat(path) may be
  // answered from the path cache.
  virtual bool getattr_repeat(const std::string& name, size_t count) { return stat_one(name, count); }
  // Looks up each name once (a cold stat: one LOOKUP each), with `depth` in flight.
  virtual bool stat_each(const std::vector<std::string>& names, unsigned depth) = 0;
  virtual bool open_close(const std::string& name, size_t count) = 0;
  virtual bool create_unlink(const std::string& prefix, size_t count) = 0;
  virtual bool write_sequential(const std::string& name, size_t mib) = 0;
  virtual bool read_sequential(const std::string& name, size_t mib) = 0;
  // Reads random 4 KiB blocks of a file of `mib` MiB for about `seconds`; returns reads done.
  virtual size_t read_random_4k(const std::string& name, size_t mib, double seconds) = 0;
  // A tree `name`/d<i>/f<j> of `dirs` directories with `files` empty files each (not timed).
  virtual void make_tree(const std::string& name, size_t dirs, size_t files) = 0;
  virtual void remove_tree(const std::string& name, size_t dirs, size_t files) = 0;
  // Walks the tree as `find -ls` does: reads each directory, stats each entry, descends into
  // the directories; returns the entries seen (0 on an error).
  virtual size_t walk_tree(const std::string& name) = 0;

  // Before a "cold" row: writes back and drops the kernel's caches (bench::drop_caches); the
  // library target empties its own path cache as well.
  virtual void drop_caches();

  // Processes whose CPU time counts with this target's (--cpu): its servers.
  std::vector<int> cpu_pids;
};

// A directory (a mount or the backing directory).
std::unique_ptr<Target> directory_target(const std::string& dir);
// How the library target runs stat_each:
enum class Api {
  kDefault,   // depth 1: blocking calls (as a program calls stat); deeper: callbacks
  kBlocking,  // depth 1: blocking Client::lookup in the directory + forget; deeper: callbacks
  kCallback,  // callbacks at every depth, each starting the next call
  kAsio,      // virtiofs/asio.hpp: `depth` C++20 coroutines, co_await async_lookup
  kAsioReap,  // the same with Options::app_reaps_completions and a CompletionReaper on the
              // io_context: the library's callbacks run on the coroutines' thread
  kAsioInline,  // coroutines on system_executor: resumed inline on the library's completion
                // thread, as the callbacks run (the Asio layer's own cost)
};
// The libvirtiofs API on the vhost-user backend at socket_path (poll_us: Options::poll_us, the
// library's default when not given). stat_one, stat_each at depth 1 with Api::kDefault,
// open_close and create_unlink go through the path API (Client::stat, open_file, File::close,
// unlink), as an application does; deeper stat_each and the other apis LOOKUP in the directory.
std::unique_ptr<Target> library_target(const std::string& socket_path,
                                       std::optional<unsigned> poll_us, Api api);

// stat_each through virtiofs/asio.hpp (asio_target.cpp): looks up each name in dir and forgets
// it, with `depth` coroutines on an io_context run by this thread (reap: the client was
// connected with app_reaps_completions, and a CompletionReaper runs on that io_context).
bool asio_stat_each(Client& client, Inode dir, const std::vector<std::string>& names,
                    unsigned depth, bool reap);
// The same with the coroutines on system_executor (Api::kAsioInline).
bool asio_inline_stat_each(Client& client, Inode dir, const std::vector<std::string>& names,
                           unsigned depth);

// Writes back and drops the kernel's caches (needs root), so the next access goes to the device.
void drop_caches();

}  // namespace virtiofs::bench
