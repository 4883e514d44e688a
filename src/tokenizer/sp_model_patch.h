#pragma once
// Editing a serialized sentencepiece ModelProto without its generated protobuf classes (Debian
// ships no sentencepiece_model.pb.h). Only the wire format is used:
//   ModelProto     field 1: repeated SentencePiece (length-delimited), in id order
//   SentencePiece  field 1: piece (string), 2: score (fixed32 float), 3: type (varint enum)
// Every other byte is copied unchanged.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ilm {

// sentencepiece's SentencePiece.Type values.
enum class SpPieceType : int { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct SpPieceInfo {
  std::string piece;
  float score = 0.0f;
  int type = static_cast<int>(SpPieceType::kNormal);  // the proto default when absent
};

// Returns `model_proto` with the piece string of each id in `renames` (key: id = index of the
// SentencePiece entry) replaced by the mapped string; score, type and all other fields are kept.
// Throws ilm::Error on a malformed proto or an id that is not in it.
std::string rename_sp_pieces(std::string_view model_proto, const std::map<int32_t, std::string>& renames);

// The pieces of a serialized ModelProto, in id order.
std::vector<SpPieceInfo> list_sp_pieces(std::string_view model_proto);

}  // namespace ilm
