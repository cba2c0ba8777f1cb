// A real virtiofsd on a temporary directory, a Client connected to it, and helpers that check
// results on the host directory itself with ordinary syscalls.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "support/virtiofsd.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs::test {

class VirtiofsdTest : public ::testing::Test {
 protected:
  void SetUp() override { start(); }
  void start(Options options = {}, std::vector<std::string> backend_options = {"-o", "xattr"}) {
    backend = std::make_unique<Virtiofsd>(share.path(), backend_options);
    options.socket_path = backend->socket_path();
    client = Client::connect(options);
  }
  void TearDown() override {
    client.reset();
    backend.reset();
  }

  std::string host(const std::string& rel) const { return share / rel; }
  std::string read_host(const std::string& rel) const {
    std::ifstream in(host(rel), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void write_host(const std::string& rel, const std::string& data) const {
    std::ofstream(host(rel), std::ios::binary) << data;
  }
  static std::string random_bytes(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  }

  TempDir share;
  std::unique_ptr<Virtiofsd> backend;
  std::unique_ptr<Client> client;
};

inline std::span<const std::byte> bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace virtiofs::test
