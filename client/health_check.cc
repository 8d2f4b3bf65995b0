#include "client/health_check.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include <future>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/output.h"

namespace verdict::client {
namespace {

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";

void AppendVarint(uint64_t value, std::string& out) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

// Reads a varint at `pos`, advancing it; false if the bytes end first.
bool ReadVarint(absl::string_view bytes, size_t& pos, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && pos < bytes.size(); shift += 7) {
    const auto byte = static_cast<unsigned char>(bytes[pos++]);
    value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

std::string ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

std::string EncodeHealthCheckRequest(absl::string_view service) {
  std::string bytes;
  if (service.empty()) return bytes;         // proto3 leaves an empty string off the wire
  bytes += static_cast<char>((1 << 3) | 2);  // field 1, length-delimited
  AppendVarint(service.size(), bytes);
  bytes.append(service.data(), service.size());
  return bytes;
}

absl::StatusOr<ServingStatus> DecodeHealthCheckResponse(absl::string_view bytes) {
  uint64_t status = 0;  // absent field: UNKNOWN
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint64_t key;
    if (!ReadVarint(bytes, pos, key)) break;
    const int wire_type = static_cast<int>(key & 7);
    uint64_t value;
    if (wire_type == 0) {
      if (!ReadVarint(bytes, pos, value)) break;
      if ((key >> 3) == 1) status = value;
    } else if (wire_type == 2) {
      if (!ReadVarint(bytes, pos, value) || value > bytes.size() - pos) break;
      pos += value;
    } else if (wire_type == 1 && pos + 8 <= bytes.size()) {
      pos += 8;
    } else if (wire_type == 5 && pos + 4 <= bytes.size()) {
      pos += 4;
    } else {
      break;
    }
    if (pos == bytes.size()) return static_cast<ServingStatus>(status > 3 ? 0 : status);
  }
  if (bytes.empty()) return ServingStatus::kUnknown;
  return absl::InvalidArgumentError("malformed grpc.health.v1.HealthCheckResponse");
}

absl::StatusOr<ServingStatus> CheckHealth(Connection& connection, absl::string_view service) {
  const std::string encoded = EncodeHealthCheckRequest(service);
  grpc::Slice slice(encoded);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::GenericStub stub(connection.channel());
  std::unique_ptr<grpc::ClientContext> context = connection.NewContext();
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), kCheckMethod, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return FromGrpc(status);
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("unreadable health response");
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return DecodeHealthCheckResponse(bytes);
}

}  // namespace verdict::client
