// Helpers the core/model tests share for the golden fixtures (tests/data/golden/<family>:
// a Hugging Face directory and cases.json with token ids and float64 expected rewards).
#ifndef VERDICT_TESTS_CORE_MODEL_GOLDEN_FIXTURES_H_
#define VERDICT_TESTS_CORE_MODEL_GOLDEN_FIXTURES_H_

#include <torch/torch.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/model/reward_model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace verdict::testing {

inline nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Rows of equal length (a JSON array of arrays of ids) as a [rows, length] int64 tensor.
inline torch::Tensor ToTensor(const nlohmann::json& rows) {
  std::vector<int64_t> flat;
  for (const auto& row : rows) {
    for (const auto& v : row) flat.push_back(v.get<int64_t>());
  }
  return torch::tensor(flat, torch::kLong).view({static_cast<int64_t>(rows.size()), -1});
}

// The model, or nullptr after a test failure naming why it did not load.
inline std::unique_ptr<RewardModel> LoadOrDie(const std::string& dir,
                                              const ModelOptions& options = {}) {
  auto model = LoadRewardModel(dir, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(model).value() : nullptr;
}

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_CORE_MODEL_GOLDEN_FIXTURES_H_
