#include "core/train/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>

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

// The overlapped gradient sum's state: buckets, the hooks on the gradient accumulators, and
// what the armed backward has delivered so far.
class GradientBuckets {
 public:
  GradientBuckets(c10d::ProcessGroupGloo& group, int rank) : group_(group), rank_(rank) {}
  ~GradientBuckets() {
    for (auto& [accumulator, key] : hooks_) accumulator->del_post_hook(key);
  }

  void Build(const std::vector<at::Tensor>& parameters, int64_t bucket_bytes,
             int64_t first_bucket_bytes) {
    for (size_t i = parameters.size(); i-- > 0;) {
      const at::Tensor& p = parameters[i];
      if (!p.requires_grad()) continue;
      const int64_t cap = buckets_.size() <= 1 ? first_bucket_bytes : bucket_bytes;
      const bool fits = !buckets_.empty() &&
                        buckets_.back().bytes + static_cast<int64_t>(p.nbytes()) <= cap &&
                        buckets_.back().flat.scalar_type() == p.scalar_type() &&
                        buckets_.back().flat.device() == p.device();
      if (!fits) {
        if (!buckets_.empty()) Allocate(buckets_.back());
        buckets_.emplace_back();
        buckets_.back().flat = at::empty({0}, p.options().requires_grad(false));
      }
      Bucket& bucket = buckets_.back();
      Slot slot;
      slot.param = p;
      slot.bucket = buckets_.size() - 1;
      slot.offset = bucket.numel;
      bucket.numel += p.numel();
      bucket.bytes += static_cast<int64_t>(p.nbytes());
      bucket.slots.push_back(slots_.size());
      slots_.push_back(slot);
    }
    if (!buckets_.empty()) Allocate(buckets_.back());
    for (size_t s = 0; s < slots_.size(); ++s) {
      std::shared_ptr<torch::autograd::Node> accumulator =
          torch::autograd::impl::grad_accumulator(slots_[s].param);
      if (accumulator == nullptr) {
        throw std::invalid_argument("a parameter that requires gradients is not a leaf tensor");
      }
      // Held here: the variable keeps only a weak reference, and a new accumulator (without the
      // hook) would be made for the next graph once the last one's was freed.
      const uintptr_t key = accumulator->add_post_hook(
          std::make_unique<torch::autograd::utils::LambdaPostHook>(
              [this, s](const torch::autograd::variable_list& outputs,
                        const torch::autograd::variable_list&) {
                Ready(s);
                return outputs;
              }));
      hooks_.emplace_back(std::move(accumulator), key);
    }
  }

  void Arm() {
    std::lock_guard<std::mutex> lock(mu_);
    for (Slot& slot : slots_) slot.ready = false;
    for (Bucket& bucket : buckets_) {
      bucket.pending = bucket.slots.size();
      bucket.work.reset();
    }
    next_launch_ = 0;
    error_.clear();
    armed_ = true;
  }

  int buckets() const { return static_cast<int>(buckets_.size()); }
  int started_in_backward() const { return started_in_backward_; }

  absl::Status Finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!armed_) return absl::FailedPreconditionError("FinishGradientSum without ArmGradientSum");
      started_in_backward_ = static_cast<int>(next_launch_);
      for (size_t s = 0; s < slots_.size(); ++s) {
        if (!slots_[s].ready) ReadyLocked(s);
      }
      armed_ = false;
      if (!error_.empty()) return absl::UnavailableError(error_);
    }
    try {
      torch::NoGradGuard no_grad;
      for (Bucket& bucket : buckets_) {
        bucket.work->wait();
        for (size_t s : bucket.slots) {
          Slot& slot = slots_[s];
          at::Tensor sum = bucket.flat.slice(0, slot.offset, slot.offset + slot.param.numel())
                               .view_as(slot.param);
          if (slot.param.grad().defined()) {
            slot.param.mutable_grad().copy_(sum);
          } else {
            slot.param.mutable_grad() = sum.clone();
          }
        }
      }
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("rank ", rank_, ": gradient all-reduce failed: ", e.what()));
    }
    return absl::OkStatus();
  }

 private:
  struct Slot {
    at::Tensor param;
    size_t bucket = 0;
    int64_t offset = 0;  // in the bucket's flat buffer, in elements
    bool ready = false;
  };
  struct Bucket {
    std::vector<size_t> slots;
    int64_t numel = 0;
    int64_t bytes = 0;
    at::Tensor flat;
    size_t pending = 0;  // slots not yet ready in the armed backward
    c10::intrusive_ptr<c10d::Work> work;
  };

  static void Allocate(Bucket& bucket) {
    bucket.flat = at::zeros({bucket.numel}, bucket.flat.options());
  }

  // On autograd's thread, once the parameter's gradient is accumulated.
  void Ready(size_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!armed_ || slots_[s].ready) return;
    ReadyLocked(s);
  }

  void ReadyLocked(size_t s) {
    Slot& slot = slots_[s];
    Bucket& bucket = buckets_[slot.bucket];
    {
      torch::NoGradGuard no_grad;
      at::Tensor piece = bucket.flat.slice(0, slot.offset, slot.offset + slot.param.numel());
      if (slot.param.grad().defined()) {
        piece.copy_(slot.param.grad().reshape({-1}));
      } else {
        piece.zero_();
      }
    }
    slot.ready = true;
    --bucket.pending;
    // Started strictly in index order, so that every rank issues the same sequence.
    while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
      Bucket& next = buckets_[next_launch_++];
      try {
        std::vector<at::Tensor> one{next.flat};
        next.work = group_.allreduce(one);
      } catch (const std::exception& e) {
        if (error_.empty()) {
          error_ = absl::StrCat("rank ", rank_, ": gradient all-reduce failed: ", e.what());
        }
        next.work.reset();
      }
    }
  }

  c10d::ProcessGroupGloo& group_;
  const int rank_;
  std::vector<Slot> slots_;  // reverse parameter order
  std::vector<Bucket> buckets_;
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
  std::mutex mu_;  // guards the ready state below and the buckets' pending counts and works
  bool armed_ = false;
  size_t next_launch_ = 0;
  std::string error_;
  int started_in_backward_ = 0;  // by the last Finish
};

struct DataParallelGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::unique_ptr<GradientBuckets> buckets;  // declared last: unhooked before the group goes
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

absl::Status DataParallelGroup::AttachGradientHooks(const std::vector<at::Tensor>& parameters,
                                                    int64_t bucket_bytes,
                                                    int64_t first_bucket_bytes) {
  impl_->buckets.reset();
  auto buckets = std::make_unique<GradientBuckets>(*impl_->group, rank_);
  try {
    buckets->Build(parameters, bucket_bytes, first_bucket_bytes);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot hook the gradient accumulators: ", e.what()));
  }
  impl_->buckets = std::move(buckets);
  return absl::OkStatus();
}

void DataParallelGroup::ArmGradientSum() {
  if (impl_->buckets) impl_->buckets->Arm();
}

absl::Status DataParallelGroup::FinishGradientSum() {
  if (!impl_->buckets) return absl::FailedPreconditionError("no gradient hooks attached");
  return impl_->buckets->Finish();
}

int DataParallelGroup::gradient_buckets() const {
  return impl_->buckets ? impl_->buckets->buckets() : 0;
}

int DataParallelGroup::gradient_buckets_started_in_backward() const {
  return impl_->buckets ? impl_->buckets->started_in_backward() : 0;
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
