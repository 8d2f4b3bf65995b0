#include "core/train/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace verdict {
namespace {

// The variable's value; NOT_FOUND when unset or empty.
absl::StatusOr<std::string> Env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    return absl::NotFoundError(absl::StrCat(name, " is not set"));
  }
  return std::string(value);
}

absl::StatusOr<int> EnvInt(const char* name, int lo, int hi) {
  absl::StatusOr<std::string> text = Env(name);
  if (!text.ok()) return text.status();
  int value = 0;
  if (!absl::SimpleAtoi(*text, &value) || value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": must be an integer in [", lo, ", ", hi, "], got \"", *text, "\""));
  }
  return value;
}

// A missing variable, said the way a launcher's user needs to hear it.
absl::Status Missing(const absl::Status& status, int64_t world_size) {
  if (status.code() != absl::StatusCode::kNotFound) return status;
  return absl::InvalidArgumentError(absl::StrCat(
      status.message(), ": world_size ", world_size,
      " needs MASTER_ADDR, MASTER_PORT and RANK (as torchrun and PyTorchJob set them)"));
}

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

std::string Seconds(absl::Duration d) { return absl::StrCat(absl::ToDoubleSeconds(d), " s"); }

}  // namespace

absl::StatusOr<RendezvousInfo> RendezvousFromEnvironment(int64_t world_size) {
  RendezvousInfo info;
  absl::StatusOr<int> env_world = EnvInt("WORLD_SIZE", 1, 1 << 16);
  if (env_world.ok()) {
    if (world_size > 1 && *env_world != world_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "WORLD_SIZE: is ", *env_world, " but world_size is configured as ", world_size));
    }
    info.world_size = *env_world;
  } else if (env_world.status().code() == absl::StatusCode::kNotFound) {
    info.world_size = static_cast<int>(world_size);
  } else {
    return env_world.status();
  }
  absl::StatusOr<std::string> addr = Env("MASTER_ADDR");
  if (!addr.ok()) return Missing(addr.status(), info.world_size);
  info.master_addr = *addr;
  absl::StatusOr<int> port = EnvInt("MASTER_PORT", 1, 65535);
  if (!port.ok()) return Missing(port.status(), info.world_size);
  info.port = *port;
  absl::StatusOr<int> rank = EnvInt("RANK", 0, info.world_size - 1);
  if (!rank.ok()) return Missing(rank.status(), info.world_size);
  info.rank = *rank;
  absl::StatusOr<int> local_rank = EnvInt("LOCAL_RANK", 0, 1 << 16);
  if (local_rank.ok()) {
    info.local_rank = *local_rank;
  } else if (local_rank.status().code() != absl::StatusCode::kNotFound) {
    return local_rank.status();
  }
  return info;
}

struct DataParallelGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

DataParallelGroup::DataParallelGroup(std::unique_ptr<Impl> impl, int rank, int world_size)
    : impl_(std::move(impl)), rank_(rank), world_size_(world_size) {}

DataParallelGroup::~DataParallelGroup() = default;

absl::StatusOr<std::unique_ptr<DataParallelGroup>> DataParallelGroup::Connect(
    const RendezvousInfo& info, absl::Duration timeout) {
  const auto timeout_ms = std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout));
  const std::string where = absl::StrCat(info.master_addr, ":", info.port);
  auto impl = std::make_unique<Impl>();
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(info.port);
    options.isServer = info.rank == 0;
    options.numWorkers = info.world_size;
    // Arrival is checked below, key by key, so that the error can name the missing ranks.
    options.waitWorkers = false;
    options.timeout = timeout_ms;
    impl->store = c10::make_intrusive<c10d::TCPStore>(info.master_addr, options);
  } catch (const std::exception& e) {
    return absl::DeadlineExceededError(absl::StrCat(
        "rank ", info.rank, ": cannot ", info.rank == 0 ? "serve" : "reach",
        " the rendezvous store at MASTER_ADDR:MASTER_PORT ", where, " within ", Seconds(timeout),
        ": ", e.what()));
  }
  std::vector<std::string> keys;
  for (int r = 0; r < info.world_size; ++r) keys.push_back(absl::StrCat("verdict/arrived/", r));
  try {
    impl->store->set(keys[info.rank], std::vector<uint8_t>{1});
    impl->store->wait(keys, timeout_ms);
  } catch (const std::exception& e) {
    std::vector<std::string> missing;
    try {
      for (int r = 0; r < info.world_size; ++r) {
        if (!impl->store->check({keys[r]})) missing.push_back(absl::StrCat(r));
      }
    } catch (const std::exception&) {
      // The store itself is gone (rank 0 died): the first error says so.
    }
    if (missing.empty()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "rank ", info.rank, ": rendezvous at ", where, " failed: ", e.what()));
    }
    return absl::DeadlineExceededError(absl::StrCat(
        missing.size() == 1 ? "rank " : "ranks ", absl::StrJoin(missing, ", "), " of ",
        info.world_size, " did not arrive at ", where, " within ", Seconds(timeout)));
  }
  try {
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = timeout_ms;
    if (IsLoopback(info.master_addr)) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("verdict/gloo", impl->store);
    impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, info.rank,
                                                              info.world_size, options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("rank ", info.rank, ": cannot form the Gloo process group: ", e.what()));
  }
  return std::unique_ptr<DataParallelGroup>(
      new DataParallelGroup(std::move(impl), info.rank, info.world_size));
}

absl::Status DataParallelGroup::SumGradients(const std::vector<at::Tensor>& parameters,
                                             int64_t bucket_bytes) {
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  // Buckets of consecutive gradients of one dtype and device, each flattened into one buffer.
  std::vector<std::vector<at::Tensor>> buckets;
  int64_t bytes = 0;
  for (const at::Tensor& g : grads) {
    const bool fits = !buckets.empty() && bytes + g.nbytes() <= static_cast<size_t>(bucket_bytes) &&
                      buckets.back().front().scalar_type() == g.scalar_type() &&
                      buckets.back().front().device() == g.device();
    if (!fits) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(g);
    bytes += static_cast<int64_t>(g.nbytes());
  }
  try {
    std::vector<at::Tensor> flat;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (const auto& bucket : buckets) {
      std::vector<at::Tensor> pieces;
      for (const at::Tensor& g : bucket) pieces.push_back(g.reshape({-1}));
      flat.push_back(torch::cat(pieces));
      std::vector<at::Tensor> one{flat.back()};
      works.push_back(impl_->group->allreduce(one));
    }
    for (size_t b = 0; b < buckets.size(); ++b) {
      works[b]->wait();
      int64_t offset = 0;
      for (at::Tensor& g : buckets[b]) {
        g.copy_(flat[b].slice(0, offset, offset + g.numel()).view_as(g));
        offset += g.numel();
      }
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("rank ", rank_, ": gradient all-reduce failed: ", e.what()));
  }
  return absl::OkStatus();
}

namespace {

absl::Status Reduce(c10d::ProcessGroupGloo& group, int rank, std::vector<double>& values,
                    c10d::ReduceOp op) {
  if (values.empty()) return absl::OkStatus();
  at::Tensor t = torch::from_blob(values.data(), {static_cast<int64_t>(values.size())},
                                  torch::kDouble)
                     .clone();
  try {
    std::vector<at::Tensor> one{t};
    c10d::AllreduceOptions options;
    options.reduceOp = op;
    group.allreduce(one, options)->wait();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("rank ", rank, ": all-reduce failed: ", e.what()));
  }
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + values.size(), values.begin());
  return absl::OkStatus();
}

}  // namespace

absl::Status DataParallelGroup::Sum(std::vector<double>& values) {
  return Reduce(*impl_->group, rank_, values, c10d::ReduceOp::SUM);
}

absl::Status DataParallelGroup::Max(std::vector<double>& values) {
  return Reduce(*impl_->group, rank_, values, c10d::ReduceOp::MAX);
}

absl::Status DataParallelGroup::Broadcast(const std::vector<at::Tensor>& tensors) {
  try {
    torch::NoGradGuard no_grad;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    std::vector<std::vector<at::Tensor>> inputs;
    inputs.reserve(tensors.size());
    for (const at::Tensor& t : tensors) {
      inputs.push_back({t.detach()});
      c10d::BroadcastOptions options;
      options.rootRank = 0;
      works.push_back(impl_->group->broadcast(inputs.back(), options));
    }
    for (auto& work : works) work->wait();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("rank ", rank_, ": broadcast failed: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace verdict
