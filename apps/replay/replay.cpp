// vxlate-replay: replays a text trace of virtio-iommu requests against one
// vxlate::engine::Device and prints one line per request.
//
//   vxlate-replay [FILE]        (stdin when FILE is absent or "-")
//
// Format: one item per line; '#' starts a comment; blank lines are skipped;
// numbers are decimal or 0x-hex and must fit their wire field (u32 or u64).
//   set page_size_mask M | input_range START END | domain_range START END |
//       endpoints FIRST LAST | bypass 0|1 | probe_size N | resv clear |
//       resv EP|* START END msi|reserved
//   attach DOMAIN ENDPOINT [bypass]      detach DOMAIN ENDPOINT
//   map DOMAIN VIRT_START VIRT_END PHYS_START FLAGS   (FLAGS: letters r w m, or a number)
//   unmap DOMAIN VIRT_START VIRT_END     probe ENDPOINT
//   raw HEX...                           (the readable part as hex bytes, spaces allowed)
// Each request is encoded into its little-endian wire struct and handed to
// Device::handle() with a writable part of the size the driver would give: 4 bytes
// (the tail), or probe_size + 4 for PROBE (`raw` sizes it by the type byte; 4 for
// an unknown or missing type). Output per request: the tail status name
// (vxlate::to_string), or NONE when the used length is 0; an OK PROBE appends
// " resv_mem <msi|reserved> <start> <end>" per RESV_MEM property, in order.
// `set` prints nothing.
//   translate ENDPOINT IOVA LEN r|w|rw   prints "OK GPA+LEN [GPA+LEN ...]" (guest-
//       physical segments, contiguous ones merged) or "FAULT domain|mapping";
//       the tool translates as a data-plane reader would (online around the call).
//   events                               prints "EVENTS N" and the N fault events
//       queued since the last `events`, each "reason:r|w|rw:ENDPOINT:ADDRESS".
//
// Settings apply to a fresh device. The tool keeps an engine::Config; the first
// request after any `set` (re)creates the Device from it, so the state built by
// earlier requests (domains, attachments, mappings) is reset whenever settings
// change after requests. The Device constructor validates the settings then, so a
// config it refuses is reported on that request's line.
//
// The tool also holds the device to the wire contract of the Decisions table: the
// writable part is poisoned before handle(), and a used length of 0 must leave it
// untouched; any other used length must be the full writable size with tail.reserved
// zeroed; an OK PROBE must lay out whole properties and zero the unused bytes.
//
// Exit status: 0 after the whole trace; 2 for a malformed line ("line N: why" on
// stderr), settings the device rejects included, or bad usage; 1 when the input
// cannot be read or the device breaks the wire contract.
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vxlate/common/le.h"
#include "vxlate/common/range.h"
#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/engine/device.h"
#include "vxlate/engine/wire.h"

namespace {

namespace eng = vxlate::engine;
using vxlate::Status;
using Fields = std::span<const std::string_view>;

// Largest probe_size the tool sizes a writable part for. The config field is a
// le32, but the tool allocates the whole part per PROBE; 1 MiB holds over 40000
// RESV_MEM properties (24 bytes each), far beyond any real device.
constexpr uint32_t kMaxProbeSize = uint32_t{1} << 20;
// Per-reader IOTLB entries of the replay device: the tool has no data-plane
// reader, so the smallest cache the IOTLB accepts will do.
constexpr size_t kIotlbEntries = vxlate::iotlb::kWays;
// Fill byte of the writable part before handle(), so that "writes nothing" and
// "unused bytes are zeroed" are observable.
constexpr uint8_t kPoison = 0xa5;

// A malformed line; `why` is the message after "line N: ".
struct LineError {
  std::string why;
};
// The device broke the wire contract; `why` follows "line N: device broke the wire contract: ".
struct ContractError {
  std::string why;
};

std::string hex(uint64_t v) {
  char buf[2 + 16 + 1];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Splits a line into whitespace-separated fields, dropping a '#' comment.
std::vector<std::string_view> split(std::string_view line) {
  if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
  constexpr std::string_view kSpace = " \t\r\v\f";
  std::vector<std::string_view> out;
  size_t pos = line.find_first_not_of(kSpace);
  while (pos != std::string_view::npos) {
    size_t end = line.find_first_of(kSpace, pos);
    if (end == std::string_view::npos) end = line.size();
    out.push_back(line.substr(pos, end - pos));
    pos = line.find_first_not_of(kSpace, end);
  }
  return out;
}

// A decimal or 0x-hex number that fits `bits` bits; `name` names the field in errors.
uint64_t parse_number(std::string_view tok, std::string_view name, unsigned bits) {
  std::string_view digits = tok;
  int base = 10;
  if (tok.size() >= 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t v = 0;
  const char* end = digits.data() + digits.size();
  auto [ptr, ec] = std::from_chars(digits.data(), end, v, base);
  if (digits.empty() || ptr != end)
    throw LineError{std::string(name) + ": '" + std::string(tok) + "' is not a number"};
  if (ec == std::errc::result_out_of_range || (bits < 64 && (v >> bits) != 0))
    throw LineError{std::string(name) + ": " + std::string(tok) + " does not fit " +
                    std::to_string(bits) + " bits"};
  return v;
}

uint32_t parse_u32(std::string_view tok, std::string_view name) {
  return static_cast<uint32_t>(parse_number(tok, name, 32));
}
uint64_t parse_u64(std::string_view tok, std::string_view name) {
  return parse_number(tok, name, 64);
}

// MAP flags: a number (any le32, unknown bits included, for the device to judge)
// or a non-empty set of the letters r (READ), w (WRITE), m (MMIO).
uint32_t parse_map_flags(std::string_view tok) {
  if (tok[0] >= '0' && tok[0] <= '9') return parse_u32(tok, "FLAGS");
  uint32_t flags = 0;
  for (char c : tok) {
    uint32_t bit = 0;
    switch (c) {
      case 'r': bit = eng::kMapFlagRead; break;
      case 'w': bit = eng::kMapFlagWrite; break;
      case 'm': bit = eng::kMapFlagMmio; break;
    }
    if (bit == 0)
      throw LineError{"FLAGS: '" + std::string(tok) +
                      "' is neither a number nor letters from r, w, m"};
    if (flags & bit)
      throw LineError{"FLAGS: '" + std::string(1, c) + "' given twice in '" + std::string(tok) +
                      "'"};
    flags |= bit;
  }
  return flags;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A request layout as its readable part.
template <typename T>
std::vector<uint8_t> encoded(const T& req) {
  std::vector<uint8_t> b(sizeof(T));
  vxlate::encode(std::span<uint8_t>(b), req);
  return b;
}

// Whether a readable part (a `raw` one may be shorter than its head) starts with
// a head of type `type`.
bool has_type(std::span<const uint8_t> readable, uint8_t type) {
  constexpr size_t kTypeOffset = offsetof(eng::wire::ReqHead, type);
  return readable.size() > kTypeOffset && readable[kTypeOffset] == type;
}

class Replay {
 public:
  explicit Replay(std::ostream& out) : out_(out) {}

  // Runs one line (already split, non-empty). Throws LineError or ContractError.
  void run(size_t line_no, Fields fields);

 private:
  struct Command {
    std::string_view name;
    std::string_view usage;  // the fields after the name
    size_t min_fields;
    size_t max_fields;
    void (Replay::*fn)(Fields);
  };
  static const Command kCommands[];
  static const Command kSettings[];

  static void check_count(const Command& c, std::string_view prefix, Fields f);

  void set(Fields f);
  void set_page_size_mask(Fields f) { cfg_.page_size_mask = parse_u64(f[0], "M"); }
  void set_input_range(Fields f) {
    cfg_.input_start = parse_u64(f[0], "START");
    cfg_.input_last = parse_u64(f[1], "END");
  }
  void set_domain_range(Fields f) {
    cfg_.domain_start = parse_u32(f[0], "START");
    cfg_.domain_last = parse_u32(f[1], "END");
  }
  void set_endpoints(Fields f) {
    cfg_.endpoint_first = parse_u32(f[0], "FIRST");
    cfg_.endpoint_last = parse_u32(f[1], "LAST");
  }
  void set_bypass(Fields f);
  void set_probe_size(Fields f);
  void set_resv(Fields f);

  void attach(Fields f);
  void detach(Fields f);
  void map(Fields f);
  void unmap(Fields f);
  void probe(Fields f);
  void raw(Fields f);
  void translate(Fields f);
  void events(Fields f);

  size_t probe_writable_size() const { return size_t{cfg_.probe_size} + eng::kTailSize; }
  eng::Device& device();
  void submit(std::span<const uint8_t> readable, size_t writable_size);
  std::string probe_properties(std::span<const uint8_t> props);

  std::ostream& out_;
  size_t line_no_ = 0;
  std::string_view cmd_;
  eng::Config cfg_;
  size_t cfg_line_ = 0;  // last line that changed cfg_; 0 = defaults
  bool cfg_changed_ = true;
  vxlate::Rcu rcu_{1};  // declared before dev_, so it outlives every Device
  std::unique_ptr<eng::Device> dev_;
  static constexpr uint32_t kNoReader = UINT32_MAX;
  static constexpr size_t kMaxSegments = 1024;  // per translate line
  uint32_t reader_ = kNoReader;
};

constexpr size_t kAny = SIZE_MAX;

const Replay::Command Replay::kCommands[] = {
    {"set", "SETTING VALUE...", 1, kAny, &Replay::set},
    {"attach", "DOMAIN ENDPOINT [bypass]", 2, 3, &Replay::attach},
    {"detach", "DOMAIN ENDPOINT", 2, 2, &Replay::detach},
    {"map", "DOMAIN VIRT_START VIRT_END PHYS_START FLAGS", 5, 5, &Replay::map},
    {"unmap", "DOMAIN VIRT_START VIRT_END", 3, 3, &Replay::unmap},
    {"probe", "ENDPOINT", 1, 1, &Replay::probe},
    {"raw", "HEX...", 0, kAny, &Replay::raw},
    {"translate", "ENDPOINT IOVA LEN r|w|rw", 4, 4, &Replay::translate},
    {"events", "nothing", 0, 0, &Replay::events},
};

const Replay::Command Replay::kSettings[] = {
    {"page_size_mask", "M", 1, 1, &Replay::set_page_size_mask},
    {"input_range", "START END", 2, 2, &Replay::set_input_range},
    {"domain_range", "START END", 2, 2, &Replay::set_domain_range},
    {"endpoints", "FIRST LAST", 2, 2, &Replay::set_endpoints},
    {"bypass", "0|1", 1, 1, &Replay::set_bypass},
    {"probe_size", "N", 1, 1, &Replay::set_probe_size},
    {"resv", "clear | EP|* START END msi|reserved", 1, 4, &Replay::set_resv},
};

void Replay::check_count(const Command& c, std::string_view prefix, Fields f) {
  if (f.size() >= c.min_fields && f.size() <= c.max_fields) return;
  throw LineError{std::string(prefix) + std::string(c.name) + ": expected " + std::string(c.usage) +
                  ", got " + std::to_string(f.size()) + (f.size() == 1 ? " field" : " fields")};
}

void Replay::run(size_t line_no, Fields fields) {
  line_no_ = line_no;
  cmd_ = fields[0];
  for (const Command& c : kCommands) {
    if (c.name != cmd_) continue;
    Fields args = fields.subspan(1);
    check_count(c, "", args);
    (this->*c.fn)(args);
    return;
  }
  throw LineError{"unknown command '" + std::string(cmd_) + "'"};
}

void Replay::translate(Fields f) {
  const uint32_t ep = parse_u32(f[0], "ENDPOINT");
  const uint64_t iova = parse_u64(f[1], "IOVA");
  const uint64_t len = parse_u64(f[2], "LEN");
  uint8_t access = 0;
  if (f[3] == "r")
    access = vxlate::pagetable::kPermRead;
  else if (f[3] == "w")
    access = vxlate::pagetable::kPermWrite;
  else if (f[3] == "rw")
    access = vxlate::pagetable::kPermReadWrite;
  else
    throw LineError{"translate: access must be r, w or rw, got '" + std::string(f[3]) + "'"};
  uint64_t last = 0;
  if (!vxlate::range_last(iova, len, &last)) throw LineError{"translate: LEN must be > 0 and IOVA+LEN must not wrap"};
  eng::Device& dev = device();
  const eng::Config& cfg = dev.config();
  if (ep < cfg.endpoint_first || ep > cfg.endpoint_last)
    throw LineError{"translate: ENDPOINT " + std::to_string(ep) + " is outside the device's endpoints " +
                    std::to_string(cfg.endpoint_first) + ".." + std::to_string(cfg.endpoint_last)};
  if (reader_ == kNoReader) reader_ = rcu_.register_reader();
  std::vector<eng::Segment> segs(kMaxSegments);
  size_t n = 0;
  eng::FaultEvent fault{};
  // Online only around the call: handle() waits for every online reader.
  dev.iotlb().online(reader_);
  const vxlate::Status st = dev.iova_to_gpa(reader_, vxlate::EndpointId{ep}, iova, len, access, segs, &n, &fault);
  dev.iotlb().offline(reader_);
  if (st == vxlate::Status::kFault) {
    out_ << "FAULT " << (fault.reason == eng::kFaultReasonDomain ? "domain" : "mapping") << "\n";
    return;
  }
  if (st != vxlate::Status::kOk) throw LineError{"translate: more than " + std::to_string(kMaxSegments) + " segments"};
  out_ << "OK";
  for (size_t i = 0; i < n; ++i) out_ << " " << hex(segs[i].addr) << "+" << hex(segs[i].len);
  out_ << "\n";
}

void Replay::events(Fields) {
  std::vector<eng::FaultEvent> ev(eng::kFaultRingSize);
  const size_t n = device().drain_events(ev);
  out_ << "EVENTS " << n;
  for (size_t i = 0; i < n; ++i) {
    const eng::FaultEvent& e = ev[i];
    const char* reason = e.reason == eng::kFaultReasonDomain ? "domain" : e.reason == eng::kFaultReasonMapping ? "mapping" : "unknown";
    const bool r = e.flags & eng::kFaultFlagRead, w = e.flags & eng::kFaultFlagWrite;
    out_ << " " << reason << ":" << (r && w ? "rw" : w ? "w" : "r") << ":" << e.endpoint << ":" << hex(e.address);
  }
  out_ << "\n";
}

void Replay::set(Fields f) {
  for (const Command& s : kSettings) {
    if (s.name != f[0]) continue;
    Fields args = f.subspan(1);
    check_count(s, "set ", args);
    (this->*s.fn)(args);
    cfg_changed_ = true;
    cfg_line_ = line_no_;
    return;
  }
  throw LineError{"set: unknown setting '" + std::string(f[0]) + "'"};
}

void Replay::set_bypass(Fields f) {
  // virtio-iommu config: the bypass byte takes the values 0 and 1 only.
  if (f[0] != "0" && f[0] != "1")
    throw LineError{"set bypass: expected 0 or 1, got '" + std::string(f[0]) + "'"};
  cfg_.bypass = f[0] == "1" ? 1 : 0;
}

void Replay::set_probe_size(Fields f) {
  uint32_t n = parse_u32(f[0], "N");
  if (n > kMaxProbeSize)
    throw LineError{"set probe_size: " + std::to_string(n) + " is above the tool's limit of " +
                    std::to_string(kMaxProbeSize)};
  cfg_.probe_size = n;
}

void Replay::set_resv(Fields f) {
  if (f.size() == 1 && f[0] == "clear") {
    cfg_.resv.clear();
    return;
  }
  if (f.size() != 4)
    throw LineError{"set resv: expected clear | EP|* START END msi|reserved, got " +
                    std::to_string(f.size()) + (f.size() == 1 ? " field" : " fields")};
  eng::ResvRegion r{};
  r.all_endpoints = f[0] == "*";
  r.endpoint = r.all_endpoints ? 0 : parse_u32(f[0], "EP");
  r.start = parse_u64(f[1], "START");
  r.last = parse_u64(f[2], "END");
  if (f[3] == "msi")
    r.subtype = eng::kResvMemMsi;
  else if (f[3] == "reserved")
    r.subtype = eng::kResvMemReserved;
  else
    throw LineError{"set resv: expected msi or reserved, got '" + std::string(f[3]) + "'"};
  cfg_.resv.push_back(r);
}

void Replay::attach(Fields f) {
  uint32_t flags = 0;
  if (f.size() == 3) {
    if (f[2] != "bypass")
      throw LineError{"attach: third field must be 'bypass', got '" + std::string(f[2]) + "'"};
    flags = eng::kAttachFlagBypass;
  }
  const uint32_t domain = parse_u32(f[0], "DOMAIN");  // in order: an error names the first bad field
  submit(encoded(eng::wire::attach_req(domain, parse_u32(f[1], "ENDPOINT"), flags)), eng::kTailSize);
}

void Replay::detach(Fields f) {
  const uint32_t domain = parse_u32(f[0], "DOMAIN");
  submit(encoded(eng::wire::detach_req(domain, parse_u32(f[1], "ENDPOINT"))), eng::kTailSize);
}

void Replay::map(Fields f) {
  const uint32_t domain = parse_u32(f[0], "DOMAIN");
  const uint64_t virt_start = parse_u64(f[1], "VIRT_START");
  const uint64_t virt_end = parse_u64(f[2], "VIRT_END");
  const uint64_t phys_start = parse_u64(f[3], "PHYS_START");
  submit(encoded(eng::wire::map_req(domain, virt_start, virt_end, phys_start, parse_map_flags(f[4]))),
         eng::kTailSize);
}

void Replay::unmap(Fields f) {
  const uint32_t domain = parse_u32(f[0], "DOMAIN");
  const uint64_t virt_start = parse_u64(f[1], "VIRT_START");
  submit(encoded(eng::wire::unmap_req(domain, virt_start, parse_u64(f[2], "VIRT_END"))), eng::kTailSize);
}

void Replay::probe(Fields f) {
  submit(encoded(eng::wire::probe_req(parse_u32(f[0], "ENDPOINT"))), probe_writable_size());
}

void Replay::raw(Fields f) {
  std::vector<uint8_t> b;
  for (std::string_view tok : f) {
    if (tok.size() % 2 != 0)
      throw LineError{"raw: '" + std::string(tok) + "' has an odd number of hex digits"};
    for (size_t i = 0; i < tok.size(); i += 2) {
      int hi = hex_digit(tok[i]);
      int lo = hex_digit(tok[i + 1]);
      if (hi < 0 || lo < 0) throw LineError{"raw: '" + std::string(tok) + "' is not hex"};
      b.push_back(static_cast<uint8_t>(hi << 4 | lo));
    }
  }
  submit(b, has_type(b, eng::kReqProbe) ? probe_writable_size() : eng::kTailSize);
}

eng::Device& Replay::device() {
  if (cfg_changed_ || !dev_) {
    dev_.reset();  // the old device and its domains go before the new one exists
    try {
      dev_ = std::make_unique<eng::Device>(cfg_, rcu_, kIotlbEntries);
    } catch (const std::exception& e) {
      std::string where = cfg_line_ == 0
                              ? "default settings"
                              : "settings (last set on line " + std::to_string(cfg_line_) + ")";
      throw LineError{where + " rejected by the device: " + e.what()};
    }
    cfg_changed_ = false;
  }
  return *dev_;
}

void Replay::submit(std::span<const uint8_t> readable, size_t writable_size) {
  eng::Device& dev = device();
  std::vector<uint8_t> writable(writable_size, kPoison);
  uint32_t used = dev.handle(readable, writable);

  if (used == 0) {
    for (uint8_t byte : writable)
      if (byte != kPoison) throw ContractError{"used length 0 but the writable part was written"};
    out_ << "NONE\n";
    return;
  }
  if (used != writable.size())
    throw ContractError{"used length " + std::to_string(used) + ", expected 0 or " +
                        std::to_string(writable.size())};
  const auto tail = vxlate::decode<eng::wire::ReqTail>(std::span<const uint8_t>(writable).last(eng::kTailSize));
  if (tail.reserved[0] != 0 || tail.reserved[1] != 0 || tail.reserved[2] != 0)
    throw ContractError{"tail.reserved is not zeroed"};
  if (tail.status > static_cast<uint8_t>(Status::kNoMem))
    throw ContractError{"unknown status " + std::to_string(tail.status)};
  Status status = static_cast<Status>(tail.status);

  std::string line = vxlate::to_string(status);
  if (status == Status::kOk && has_type(readable, eng::kReqProbe))
    line += probe_properties(
        std::span<const uint8_t>(writable).first(writable.size() - eng::kTailSize));
  out_ << line << '\n';
}

// Decodes an OK PROBE's property list: " resv_mem <subtype> <start> <end>" per
// RESV_MEM property, " prop <type> <length>" for any other type.
std::string Replay::probe_properties(std::span<const uint8_t> props) {
  constexpr size_t kHeadSize = sizeof(eng::wire::ProbeProp);
  std::string s;
  size_t off = 0;
  while (off + kHeadSize <= props.size()) {
    const auto head = vxlate::decode<eng::wire::ProbeProp>(props.subspan(off));
    uint16_t type = head.type.get() & 0xfff;  // bits 0-11; 12-15 reserved
    uint16_t len = head.length.get();
    if (type == eng::kProbeTypeNone) break;
    if (off + kHeadSize + len > props.size())
      throw ContractError{"property at offset " + std::to_string(off) + " runs past probe_size"};
    if (type == eng::kProbeTypeResvMem) {
      if (len + kHeadSize != eng::kResvMemPropSize)
        throw ContractError{"RESV_MEM property of length " + std::to_string(len)};
      const auto resv = vxlate::decode<eng::wire::ProbeResvMem>(props.subspan(off));
      if (resv.subtype != eng::kResvMemMsi && resv.subtype != eng::kResvMemReserved)
        throw ContractError{"RESV_MEM subtype " + std::to_string(resv.subtype)};
      if (resv.reserved[0] != 0 || resv.reserved[1] != 0 || resv.reserved[2] != 0)
        throw ContractError{"RESV_MEM reserved is not zeroed"};
      s += resv.subtype == eng::kResvMemMsi ? " resv_mem msi " : " resv_mem reserved ";
      s += hex(resv.start.get()) + " " + hex(resv.end.get());
    } else {
      s += " prop " + std::to_string(type) + " " + std::to_string(len);
    }
    off += kHeadSize + len;
  }
  // virtio-iommu: the list ends with type 0 (or at probe_size); unused bytes are zeroed.
  for (; off < props.size(); ++off)
    if (props[off] != 0)
      throw ContractError{"probe byte " + std::to_string(off) + " after the list is not zero"};
  return s;
}

int replay(std::istream& in) {
  Replay r(std::cout);
  std::string text;
  size_t line_no = 0;
  while (std::getline(in, text)) {
    ++line_no;
    std::vector<std::string_view> fields = split(text);
    if (fields.empty()) continue;
    try {
      r.run(line_no, fields);
    } catch (const LineError& e) {
      std::cout.flush();
      std::cerr << "line " << line_no << ": " << e.why << '\n';
      return 2;
    } catch (const ContractError& e) {
      std::cout.flush();
      std::cerr << "line " << line_no << ": device broke the wire contract: " << e.why << '\n';
      return 1;
    }
  }
  if (in.bad()) {
    std::cerr << "vxlate-replay: read error after line " << line_no << '\n';
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::ios::sync_with_stdio(false);
    if (argc > 2) {
      std::cerr << "usage: vxlate-replay [FILE]\n";
      return 2;
    }
    std::string_view path = argc == 2 ? argv[1] : "-";
    if (path == "-") return replay(std::cin);
    std::ifstream file{std::string(path)};
    if (!file) {
      std::cerr << "vxlate-replay: cannot open " << path << ": " << std::strerror(errno) << '\n';
      return 1;
    }
    return replay(file);
  } catch (const std::exception& e) {
    std::cerr << "vxlate-replay: " << e.what() << '\n';
    return 1;
  } catch (...) {
    std::cerr << "vxlate-replay: unknown exception\n";
    return 1;
  }
}
