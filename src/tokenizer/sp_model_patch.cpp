#include "tokenizer/sp_model_patch.h"

#include <cstring>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {

namespace {

constexpr uint32_t kWireVarint = 0, kWireFixed64 = 1, kWireLen = 2, kWireFixed32 = 5;

// A cursor over protobuf wire data that throws ilm::Error on truncation or unsupported wire types.
class WireReader {
 public:
  WireReader(std::string_view data, const char* what) : data_(data), what_(what) {}
  bool done() const { return pos_ >= data_.size(); }
  size_t pos() const { return pos_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated varint");
      const auto b = static_cast<uint8_t>(data_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("varint longer than 10 bytes");
  }

  // Skips the value of a field with wire type `wt`; returns its payload (for length-delimited
  // fields, the bytes without the length prefix; otherwise the raw value bytes).
  std::string_view value(uint32_t wt) {
    switch (wt) {
      case kWireVarint: {
        const size_t start = pos_;
        varint();
        return data_.substr(start, pos_ - start);
      }
      case kWireFixed64: return take(8);
      case kWireFixed32: return take(4);
      case kWireLen: {
        const uint64_t n = varint();
        if (n > data_.size() - pos_) fail("length-delimited field runs past the end");
        return take(static_cast<size_t>(n));
      }
      default: fail(fmt::format("unsupported wire type {}", wt));
    }
  }

  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(fmt::format("malformed sentencepiece model ({}): {} at byte {}", what_, msg, pos_));
  }

 private:
  std::string_view take(size_t n) {
    if (n > data_.size() - pos_) fail("truncated field");
    const std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  std::string_view data_;
  const char* what_;
  size_t pos_ = 0;
};

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Re-encodes one SentencePiece message with field 1 (piece) replaced.
std::string rename_piece_message(std::string_view msg, const std::string& new_piece, int32_t id) {
  WireReader r(msg, "SentencePiece");
  std::string out;
  out.reserve(msg.size() + new_piece.size());
  bool replaced = false;
  while (!r.done()) {
    const size_t field_start = r.pos();
    const uint64_t tag = r.varint();
    const auto wt = static_cast<uint32_t>(tag & 7);
    const size_t value_start = r.pos();
    r.value(wt);
    if ((tag >> 3) == 1 && wt == kWireLen) {
      out.append(msg.substr(field_start, value_start - field_start));  // the tag, as it was
      put_varint(out, new_piece.size());
      out.append(new_piece);
      replaced = true;
    } else {
      out.append(msg.substr(field_start, r.pos() - field_start));
    }
  }
  if (!replaced) throw Error(fmt::format("malformed sentencepiece model: piece {} has no piece string", id));
  return out;
}

}  // namespace

std::string rename_sp_pieces(std::string_view model_proto, const std::map<int32_t, std::string>& renames) {
  WireReader r(model_proto, "ModelProto");
  std::string out;
  out.reserve(model_proto.size() + 256);
  int32_t index = 0;
  size_t done = 0;
  while (!r.done()) {
    const size_t field_start = r.pos();
    const uint64_t tag = r.varint();
    const auto wt = static_cast<uint32_t>(tag & 7);
    const size_t value_start = r.pos();
    const std::string_view payload = r.value(wt);
    if ((tag >> 3) == 1 && wt == kWireLen) {
      const auto it = renames.find(index);
      if (it != renames.end()) {
        const std::string msg = rename_piece_message(payload, it->second, index);
        out.append(model_proto.substr(field_start, value_start - field_start));  // the tag
        put_varint(out, msg.size());
        out.append(msg);
        ++done;
      } else {
        out.append(model_proto.substr(field_start, r.pos() - field_start));
      }
      ++index;
    } else {
      out.append(model_proto.substr(field_start, r.pos() - field_start));
    }
  }
  if (done != renames.size()) {
    for (const auto& [id, piece] : renames)
      if (id < 0 || id >= index)
        throw Error(fmt::format("cannot rename sentencepiece piece {} to \"{}\": the model has {} pieces", id,
                                piece, index));
  }
  return out;
}

std::vector<SpPieceInfo> list_sp_pieces(std::string_view model_proto) {
  WireReader r(model_proto, "ModelProto");
  std::vector<SpPieceInfo> pieces;
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const auto wt = static_cast<uint32_t>(tag & 7);
    const std::string_view payload = r.value(wt);
    if ((tag >> 3) != 1 || wt != kWireLen) continue;
    SpPieceInfo info;
    WireReader m(payload, "SentencePiece");
    while (!m.done()) {
      const uint64_t t = m.varint();
      const auto w = static_cast<uint32_t>(t & 7);
      const std::string_view v = m.value(w);
      switch (t >> 3) {
        case 1:
          if (w == kWireLen) info.piece = std::string(v);
          break;
        case 2:
          if (w == kWireFixed32) std::memcpy(&info.score, v.data(), 4);  // little-endian host assumed
          break;
        case 3:
          if (w == kWireVarint) info.type = static_cast<int>(WireReader(v, "SentencePiece.type").varint());
          break;
        default: break;
      }
    }
    pieces.push_back(std::move(info));
  }
  return pieces;
}

}  // namespace ilm
