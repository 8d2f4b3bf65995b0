#include "core/model/safetensors.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/model_directory.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

// Tensor bytes are copied as they lie in the file, which is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O assumes a little-endian host");

using Json = nlohmann::json;
// Keeps the writer's key order, so the header lists tensors in data order as the reference
// implementation does.
using OrderedJson = nlohmann::ordered_json;

constexpr size_t kHeaderLengthBytes = 8;
// The reference implementation refuses larger headers; so do we, before allocating anything.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";

struct DtypeName {
  const char* name;
  at::ScalarType type;
};

constexpr DtypeName kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

std::string SupportedDtypeNames() {
  std::vector<std::string> names;
  for (const DtypeName& d : kDtypes) names.push_back(d.name);
  return absl::StrJoin(names, ", ");
}

const DtypeName* FindDtype(absl::string_view name) {
  for (const DtypeName& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeName* FindDtype(at::ScalarType type) {
  for (const DtypeName& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

// One header entry, validated field by field, before the offsets are checked as a whole.
struct Entry {
  std::string name;
  const DtypeName* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::Status FileError(absl::string_view source, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", message));
}

absl::Status TensorError(absl::string_view source, absl::string_view tensor,
                         absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": tensor \"", tensor, "\": ", message));
}

uint64_t ReadLittleEndian64(const char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(p[i]);
  return value;
}

void AppendLittleEndian64(uint64_t value, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// A JSON value that is a non-negative integer (nlohmann keeps integers and floats apart).
bool IsCount(const Json& value) {
  return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
}

absl::StatusOr<Entry> ParseEntry(absl::string_view source, const std::string& name,
                                 const Json& value) {
  Entry entry;
  entry.name = name;
  if (!value.is_object()) {
    return TensorError(source, name,
                       absl::StrCat("entry must be an object, got ", value.type_name()));
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(field)) {
      return TensorError(source, name, absl::StrCat("missing field \"", field, "\""));
    }
  }

  const Json& dtype = value["dtype"];
  if (!dtype.is_string()) {
    return TensorError(source, name,
                       absl::StrCat("field \"dtype\" must be a string, got ", dtype.type_name()));
  }
  const std::string& dtype_name = dtype.get_ref<const std::string&>();
  entry.dtype = FindDtype(dtype_name);
  if (entry.dtype == nullptr) {
    return TensorError(source, name,
                       absl::StrCat("unsupported dtype \"", dtype_name,
                                    "\" (supported: ", SupportedDtypeNames(), ")"));
  }

  const Json& shape = value["shape"];
  if (!shape.is_array()) {
    return TensorError(source, name,
                       absl::StrCat("field \"shape\" must be an array, got ", shape.type_name()));
  }
  for (const Json& dim : shape) {
    if (dim.is_number_integer() && !dim.is_number_unsigned() && dim.get<int64_t>() < 0) {
      return TensorError(
          source, name,
          absl::StrCat("negative dimension ", dim.get<int64_t>(), " in shape ", shape.dump()));
    }
    if (!IsCount(dim) ||
        dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return TensorError(
          source, name,
          absl::StrCat("field \"shape\" must hold non-negative integers, got ", shape.dump()));
    }
    entry.shape.push_back(dim.get<int64_t>());
  }

  const Json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !IsCount(offsets[0]) || !IsCount(offsets[1])) {
    return TensorError(source, name,
                       absl::StrCat("field \"data_offsets\" must be [begin, end] with "
                                    "non-negative integers, got ",
                                    offsets.dump()));
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.begin > entry.end) {
    return TensorError(
        source, name, absl::StrCat("data_offsets begin ", entry.begin, " is past end ", entry.end));
  }

  // The element count can overflow for a hostile shape; the byte count must then mismatch.
  uint64_t bytes = static_cast<uint64_t>(c10::elementSize(entry.dtype->type));
  bool overflow = false;
  for (int64_t dim : entry.shape) {
    overflow = overflow || __builtin_mul_overflow(bytes, static_cast<uint64_t>(dim), &bytes);
  }
  if (overflow || bytes != entry.end - entry.begin) {
    return TensorError(source, name,
                       absl::StrCat("shape ", shape.dump(), " of ", dtype_name, " needs ",
                                    overflow ? std::string("more than 2^64") : absl::StrCat(bytes),
                                    " bytes but data_offsets [", entry.begin, ", ", entry.end,
                                    "] hold ", entry.end - entry.begin));
  }
  return entry;
}

absl::Status CheckMetadata(absl::string_view source, const Json& metadata) {
  if (!metadata.is_object()) {
    return FileError(
        source, absl::StrCat("\"__metadata__\" must be an object, got ", metadata.type_name()));
  }
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) {
      return FileError(source, absl::StrCat("\"__metadata__\" value \"", key,
                                            "\" must be a string, got ", value.type_name()));
    }
  }
  return absl::OkStatus();
}

// The spec requires the data to be indexed exactly: sorted by offset, each tensor starts
// where the previous one ended and the last one ends at the end of the file.
absl::Status CheckCoverage(absl::string_view source, std::vector<Entry>* entries,
                           uint64_t data_size) {
  std::sort(entries->begin(), entries->end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t expected = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : *entries) {
    if (entry.end > data_size) {
      return TensorError(source, entry.name,
                         absl::StrCat("data_offsets [", entry.begin, ", ", entry.end,
                                      "] run past the end of the data (", data_size, " bytes)"));
    }
    if (entry.begin < expected) {
      return TensorError(
          source, entry.name,
          absl::StrCat("data_offsets [", entry.begin, ", ", entry.end, "] overlap tensor \"",
                       previous->name, "\" [", previous->begin, ", ", previous->end, "]"));
    }
    if (entry.begin > expected) {
      return TensorError(
          source, entry.name,
          absl::StrCat("data_offsets [", entry.begin, ", ", entry.end, "] leave a gap: bytes [",
                       expected, ", ", entry.begin, ") of the data belong to no tensor"));
    }
    expected = entry.end;
    previous = &entry;
  }
  if (expected != data_size) {
    return FileError(source, absl::StrCat("bytes [", expected, ", ", data_size,
                                          ") of the data belong to no tensor"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TensorMap> ParseUnguarded(absl::string_view bytes, absl::string_view source) {
  if (bytes.size() < kHeaderLengthBytes) {
    return FileError(source, absl::StrCat("file is ", bytes.size(),
                                          " bytes, too short for the 8-byte header length"));
  }
  const uint64_t header_size = ReadLittleEndian64(bytes.data());
  const uint64_t available = bytes.size() - kHeaderLengthBytes;
  if (header_size > available) {
    return FileError(source,
                     absl::StrCat("header length ", header_size, " runs past the end of the file (",
                                  bytes.size(), " bytes, ", available, " after the length)"));
  }
  if (header_size > kMaxHeaderBytes) {
    return FileError(source, absl::StrCat("header length ", header_size, " exceeds the limit of ",
                                          kMaxHeaderBytes, " bytes"));
  }
  absl::string_view header_text = bytes.substr(kHeaderLengthBytes, header_size);
  Json header = Json::parse(header_text.begin(), header_text.end(), /*cb=*/nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded()) return FileError(source, "header is not valid JSON");
  if (!header.is_object()) {
    return FileError(source,
                     absl::StrCat("header must be a JSON object, got ", header.type_name()));
  }

  std::vector<Entry> entries;
  entries.reserve(header.size());
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      RETURN_IF_ERROR(CheckMetadata(source, value));
      continue;
    }
    ASSIGN_OR_RETURN(Entry entry, ParseEntry(source, name, value));
    entries.push_back(std::move(entry));
  }
  const char* data = bytes.data() + kHeaderLengthBytes + header_size;
  const uint64_t data_size = available - header_size;
  RETURN_IF_ERROR(CheckCoverage(source, &entries, data_size));

  TensorMap tensors;
  for (const Entry& entry : entries) {
    // A fresh tensor and a memcpy, not from_blob: the file's bytes need not be aligned for
    // the element type, and the result must outlive `bytes`.
    at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(entry.dtype->type));
    if (entry.end > entry.begin) {
      std::memcpy(tensor.data_ptr(), data + entry.begin, entry.end - entry.begin);
    }
    tensors.emplace(entry.name, std::move(tensor));
  }
  return tensors;
}

// A plain file name, so that an index cannot point outside the model directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos;
}

absl::StatusOr<TensorMap> ReadShardedWeights(const std::filesystem::path& dir,
                                             const std::string& index_path) {
  ASSIGN_OR_RETURN(std::string index_text, ReadFileToString(index_path));
  Json index = Json::parse(index_text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return FileError(index_path, "not a JSON object");
  }
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    return FileError(index_path, "missing object field \"weight_map\"");
  }
  // tensor name -> shard, and shard -> tensor names, both sorted for stable errors.
  std::map<std::string, std::string> shard_of;
  std::map<std::string, std::vector<std::string>> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string() || !IsPlainFileName(shard.get<std::string>())) {
      return FileError(index_path, absl::StrCat("tensor \"", name, "\": shard ", shard.dump(),
                                                " must be a file name inside the directory"));
    }
    shard_of[name] = shard.get<std::string>();
    shards[shard.get<std::string>()].push_back(name);
  }

  TensorMap tensors;
  std::map<std::string, std::string> found_in;
  for (const auto& [shard, unused_names] : shards) {
    const std::string shard_path = (dir / shard).string();
    ASSIGN_OR_RETURN(TensorMap shard_tensors, ReadSafetensors(shard_path));
    for (auto& [name, tensor] : shard_tensors) {
      auto found = found_in.find(name);
      if (found != found_in.end()) {
        return FileError(index_path, absl::StrCat("tensor \"", name, "\" is in two shards: ",
                                                  found->second, " and ", shard));
      }
      auto listed = shard_of.find(name);
      if (listed == shard_of.end()) {
        return FileError(index_path, absl::StrCat("tensor \"", name, "\" is in shard ", shard,
                                                  " but not in the weight_map"));
      }
      if (listed->second != shard) {
        return FileError(index_path,
                         absl::StrCat("tensor \"", name, "\" is in shard ", shard,
                                      " but the weight_map places it in ", listed->second));
      }
      found_in.emplace(name, shard);
      tensors.emplace(name, std::move(tensor));
    }
  }
  for (const auto& [name, shard] : shard_of) {
    if (found_in.count(name) == 0) {
      return FileError(index_path, absl::StrCat("tensor \"", name, "\" is listed in shard ", shard,
                                                " but that shard does not hold it"));
    }
  }
  return tensors;
}

absl::StatusOr<std::string> SerializeUnguarded(const TensorMap& tensors) {
  struct Item {
    const std::string* name;
    const DtypeName* dtype;
    at::Tensor tensor;  // CPU, contiguous
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (name == kMetadataKey) {
      return absl::InvalidArgumentError("cannot save a tensor named \"__metadata__\"");
    }
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" is undefined"));
    }
    const DtypeName* dtype = FindDtype(tensor.scalar_type());
    if (dtype == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\": dtype ", c10::toString(tensor.scalar_type()),
                       " cannot be saved (supported: ", SupportedDtypeNames(), ")"));
    }
    items.push_back({&name, dtype, tensor.to(at::kCPU).contiguous()});
  }
  // Largest elements first keeps every tensor aligned to its element size; std::map already
  // ordered the names and stable_sort keeps that order within a size.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return c10::elementSize(a.dtype->type) > c10::elementSize(b.dtype->type);
  });

  OrderedJson header = OrderedJson::object();
  header[kMetadataKey] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const Item& item : items) {
    const uint64_t size = item.tensor.nbytes();
    OrderedJson entry = OrderedJson::object();
    entry["dtype"] = item.dtype->name;
    entry["shape"] = item.tensor.sizes().vec();
    entry["data_offsets"] = {offset, offset + size};
    header[*item.name] = std::move(entry);
    offset += size;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(kHeaderLengthBytes + header_text.size() + offset);
  AppendLittleEndian64(header_text.size(), &out);
  out += header_text;
  for (const Item& item : items) {
    out.append(static_cast<const char*>(item.tensor.data_ptr()), item.tensor.nbytes());
  }
  return out;
}

}  // namespace

absl::StatusOr<TensorMap> ParseSafetensors(absl::string_view bytes, absl::string_view source) {
  try {
    return ParseUnguarded(bytes, source);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(source, ": ", e.what_without_backtrace()));
  } catch (const Json::exception& e) {
    // Unreachable while every access above checks types first; kept so that none escapes.
    return FileError(source, e.what());
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(source, ": out of memory"));
  }
}

absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return ParseSafetensors(bytes, path);
}

absl::StatusOr<TensorMap> ReadModelWeights(const std::string& dir) {
  const std::filesystem::path root(dir);
  const std::filesystem::path single = root / kModelWeightsFile;
  const std::filesystem::path index = root / kModelWeightsIndexFile;
  std::error_code error;
  if (std::filesystem::exists(single, error)) return ReadSafetensors(single.string());
  if (std::filesystem::exists(index, error)) {
    try {
      return ReadShardedWeights(root, index.string());
    } catch (const Json::exception& e) {
      return FileError(index.string(), e.what());
    }
  }
  return absl::NotFoundError(
      absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json in the directory"));
}

absl::StatusOr<std::string> SerializeSafetensors(const TensorMap& tensors) {
  try {
    return SerializeUnguarded(tensors);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("cannot serialise tensors: ", e.what_without_backtrace()));
  } catch (const OrderedJson::exception& e) {
    // A tensor name that is not valid UTF-8 cannot go into the JSON header.
    return absl::InvalidArgumentError(absl::StrCat("cannot serialise tensors: ", e.what()));
  }
}

absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors) {
  ASSIGN_OR_RETURN(std::string bytes, SerializeSafetensors(tensors));
  return WriteFileAtomically(path, bytes);
}

}  // namespace verdict
