#include "appsvc/contoso_cloud.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace contoso::appsvc {
namespace {

constexpr char kDevices[] = "devices";
constexpr char kSamples[] = "samples";
constexpr char kEvents[] = "events";
constexpr char kCustomers[] = "customers";
constexpr char kShops[] = "shops";

std::string Be64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

std::string SampleKey(absl::string_view device, uint64_t seq) {
  return absl::StrCat(device, "/", Be64(seq));
}

using Ranges = google::protobuf::RepeatedPtrField<records::SeqRange>;

// IsStored: `seq` lies in one of the sorted disjoint `ranges`.
bool IsStored(const Ranges& ranges, uint64_t seq) {
  auto it = std::upper_bound(
      ranges.begin(), ranges.end(), seq,
      [](uint64_t v, const records::SeqRange& r) { return v < r.lo(); });
  if (it == ranges.begin()) return false;
  --it;
  return seq <= it->hi();
}

// AddSorted merges the ascending, not yet stored `seqs` into `ranges`.
Ranges AddSorted(const Ranges& ranges, const std::vector<uint64_t>& seqs) {
  std::vector<std::pair<uint64_t, uint64_t>> all;
  all.reserve(ranges.size() + seqs.size());
  for (const auto& r : ranges) all.emplace_back(r.lo(), r.hi());
  // Collapse the new sequences into runs first.
  for (size_t i = 0; i < seqs.size();) {
    size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    all.emplace_back(seqs[i], seqs[j]);
    i = j + 1;
  }
  std::sort(all.begin(), all.end());
  Ranges out;
  for (const auto& [lo, hi] : all) {
    if (out.size() > 0) {
      records::SeqRange* last = out.Mutable(out.size() - 1);
      if (last->hi() != UINT64_MAX && lo <= last->hi() + 1) {
        last->set_hi(std::max(last->hi(), hi));
        continue;
      }
    }
    records::SeqRange* r = out.Add();
    r->set_lo(lo);
    r->set_hi(hi);
  }
  return out;
}

// CountChunkSamples adds to `*n` the samples in a stored records::SampleChunk
// without parsing them: each is one length-delimited field 1, counted and
// skipped (the end check of a load run counts every stored reading, and a
// full parse allocated each sample). False when the bytes are not a
// well-formed message (a length past the end, a bad tag or wire type).
bool CountChunkSamples(absl::string_view value, uint64_t* n) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(value.data()),
      static_cast<int>(value.size()));
  uint64_t count = 0;
  for (;;) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) break;  // the end, or a malformed tag (checked below)
    if (tag == WireFormatLite::MakeTag(
                   1, WireFormatLite::WIRETYPE_LENGTH_DELIMITED)) {
      uint32_t length = 0;
      if (!in.ReadVarint32(&length) || !in.Skip(static_cast<int>(length))) {
        return false;
      }
      ++count;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;  // includes an end-group tag with no group
    }
  }
  if (in.CurrentPosition() != static_cast<int>(value.size())) return false;
  *n += count;
  return true;
}

template <typename T>
void AppendBounded(google::protobuf::RepeatedPtrField<T>* list, T value) {
  list->Add(std::move(value));
  while (list->size() > kMaxHistory) list->erase(list->begin());
}

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list,
              absl::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

// Earliest and latest times a sample may carry: 2000-01-01 .. 2100-01-01.
constexpr int64_t kMinSampleMs = 946684800000;
constexpr int64_t kMaxSampleMs = 4102444800000;

absl::Status Bound(const char* field, int index, double v, double lo,
                   double hi) {
  if (!std::isfinite(v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "samples[%d].%s = %g is outside [%g, %g]; nothing from this batch "
        "was stored",
        index, field, v, lo, hi));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> ColumnFamilies() {
  return {kDevices, kSamples, kEvents, kCustomers, kShops};
}

absl::Status ValidateDeviceId(absl::string_view id) {
  if (id.size() != 64 || !std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return absl::InvalidArgumentError(
        "device_id must be 64 lowercase hex digits (hex SHA-256 of the "
        "device public key)");
  }
  return absl::OkStatus();
}

absl::Status ValidateSample(const v1::Telemetry& s, int index) {
  // Fast path: exactly the checks below, without building a Status per
  // field (a batch is checked sample by sample, nearly always all valid).
  // Anything outside the bounds (NaN included) takes the path below, which
  // names the first field that is wrong.
  const auto within = [](double v, double lo, double hi) {
    return std::isfinite(v) && v >= lo && v <= hi;
  };
  if (s.time_unix_ms() >= kMinSampleMs && s.time_unix_ms() <= kMaxSampleMs &&
      within(s.water_temperature_c(), -20, 120) &&
      within(s.drying_temperature_c(), -20, 150) &&
      within(s.rinse_agent_level_pct(), 0, 100) &&
      v1::Telemetry::CycleState_IsValid(s.cycle_state())) {
    return absl::OkStatus();
  }
  if (s.time_unix_ms() < kMinSampleMs || s.time_unix_ms() > kMaxSampleMs) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "samples[%d].time_unix_ms = %d is outside years 2000..2100; nothing "
        "from this batch was stored",
        index, s.time_unix_ms()));
  }
  if (auto st = Bound("water_temperature_c", index, s.water_temperature_c(),
                      -20, 120);
      !st.ok())
    return st;
  if (auto st = Bound("drying_temperature_c", index, s.drying_temperature_c(),
                      -20, 150);
      !st.ok())
    return st;
  if (auto st = Bound("rinse_agent_level_pct", index, s.rinse_agent_level_pct(),
                      0, 100);
      !st.ok())
    return st;
  if (!v1::Telemetry::CycleState_IsValid(s.cycle_state())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "samples[%d].cycle_state = %d is not a known cycle state; nothing "
        "from this batch was stored",
        index, static_cast<int>(s.cycle_state())));
  }
  return absl::OkStatus();
}

ContosoCloud::ContosoCloud(sphere::store::Store* store, DurableWriter* writer,
                           sphere::Clock* clock, CloudOptions options)
    : store_(store),
      writer_(writer),
      clock_(clock),
      options_(std::move(options)),
      detector_(options_.detector) {}

size_t ContosoCloud::StripeOf(absl::string_view device_id) const {
  return absl::Hash<absl::string_view>()(device_id) % device_locks_.size();
}

absl::Mutex& ContosoCloud::LockFor(absl::string_view device_id) {
  return device_locks_[StripeOf(device_id)];
}

absl::Status ContosoCloud::LoadSeed(const SeedData& seed) {
  sphere::store::WriteBatch b;
  for (const records::Customer& c : seed.customers) {
    if (auto s = ValidateDeviceId(c.device_id()); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("seed customer \"", c.name(), "\": ", s.message()));
    }
    b.Put(kCustomers, c.device_id(), c.SerializeAsString());
  }
  absl::MutexLock l(&shops_mu_);
  for (const records::Shop& shop : seed.shops) {
    if (shop.id().empty() || shop.id().size() > kMaxIdBytes) {
      return absl::InvalidArgumentError("seed shop id must be 1..64 bytes");
    }
    auto existing = store_->Get(kShops, shop.id());
    if (existing.ok()) continue;  // keep live inventory
    if (!absl::IsNotFound(existing.status())) return existing.status();
    b.Put(kShops, shop.id(), shop.SerializeAsString());
  }
  if (b.empty()) return absl::OkStatus();  // nothing new to store
  return writer_->Commit(std::move(b));
}

absl::StatusOr<records::DeviceRecord> ContosoCloud::LoadRecord(
    const std::string& device_id, bool* found) {
  records::DeviceRecord rec;
  auto raw = store_->Get(kDevices, device_id);
  if (raw.ok()) {
    if (!rec.ParseFromString(*raw)) {
      return absl::DataLossError(
          absl::StrCat("device record ", device_id, " is corrupt"));
    }
    if (found) *found = true;
    return rec;
  }
  if (!absl::IsNotFound(raw.status())) return raw.status();
  if (found) *found = false;
  rec.set_device_id(device_id);
  return rec;
}

std::string ContosoCloud::NextId(records::DeviceRecord* rec,
                                 absl::string_view prefix) {
  rec->set_next_id(rec->next_id() + 1);
  return absl::StrCat(prefix, "-", rec->device_id().substr(0, 8), "-",
                      rec->next_id());
}

void ContosoCloud::AddEntry(Effects* fx, absl::string_view kind,
                            std::string summary) {
  v1::TimelineEntry e;
  e.set_time_unix_ms(absl::ToUnixMillis(clock_->Now()));
  e.set_source("contoso");
  e.set_kind(std::string(kind));
  e.set_summary(std::move(summary));
  fx->entries.push_back(std::move(e));
}

void ContosoCloud::Notify(records::DeviceRecord* rec, const std::string& text,
                          Effects* fx) {
  auto customer = GetCustomer(rec->device_id());
  std::string line =
      customer.ok()
          ? absl::StrCat("to ", customer->name(), " <", customer->email(),
                         ">: ", text)
          : absl::StrCat("no customer on file for this dishwasher: ", text);
  AppendBounded(rec->mutable_notifications(), line);
  AddEntry(fx, "notification", line);
}

void ContosoCloud::QueueDiagnostics(records::DeviceRecord* rec, Direction d,
                                    const std::string& why, Effects* fx) {
  records::PendingCommand* p = rec->add_pending();
  p->mutable_command()->set_command_id(NextId(rec, "cmd"));
  p->mutable_command()->set_kind(v1::Command::RUN_DIAGNOSTICS);
  p->mutable_command()->set_issued_unix_ms(absl::ToUnixMillis(clock_->Now()));
  p->set_reason(AnomalyName(d));
  const std::string line =
      absl::StrCat(AnomalyName(d), ": ", detector_.options().consecutive,
                   " consecutive cycles; last ", why);
  AppendBounded(rec->mutable_anomalies(), line);
  AddEntry(fx, "anomaly", line);
  AddEntry(fx, "diagnostics",
           absl::StrCat("remote diagnostics requested (",
                        p->command().command_id(), ")"));
  fx->actions.push_back("diagnostics-requested");
}

void ContosoCloud::FinishCycle(records::DeviceRecord* rec, Effects* fx) {
  if (!rec->has_current_cycle()) return;
  if (rec->current_drying_count() > 0) {
    const double mean = rec->current_drying_sum() / rec->current_drying_count();
    rec->add_cycle_drying_means(mean);
    while (rec->cycle_drying_means_size() > kMaxHistory) {
      rec->mutable_cycle_drying_means()->erase(
          rec->mutable_cycle_drying_means()->begin());
    }
    rec->set_cycles_completed(rec->cycles_completed() + 1);
    CycleVerdict v = detector_.ObserveCycle(mean, rec);
    AddEntry(
        fx, "telemetry",
        absl::StrFormat(
            "cycle %d: drying mean %.1f C, peak %.1f C (%s)",
            rec->current_cycle_id(), mean, rec->current_drying_peak(),
            v.cycle == Direction::kNone ? "normal" : AnomalyName(v.cycle)));
    if (v.raised != Direction::kNone) {
      QueueDiagnostics(rec, v.raised, v.explanation, fx);
    }
    if (v.cleared) {
      AddEntry(fx, "anomaly", "drying temperature back to normal");
    }
  }
  rec->set_has_current_cycle(false);
  rec->set_current_drying_sum(0);
  rec->set_current_drying_count(0);
  rec->set_current_drying_peak(0);
}

absl::Status ContosoCloud::Commit(const records::DeviceRecord& rec,
                                  const Effects& fx,
                                  sphere::store::WriteBatch extra) {
  AppendRecord(rec, fx, &extra);
  return writer_->Commit(std::move(extra));
}

void ContosoCloud::AppendRecord(const records::DeviceRecord& rec,
                                const Effects& fx,
                                sphere::store::WriteBatch* batch) {
  sphere::store::WriteBatch& extra = *batch;
  records::DeviceRecord copy = rec;
  for (const v1::TimelineEntry& e : fx.entries) {
    copy.set_next_id(copy.next_id() + 1);
    extra.Put(kEvents,
              absl::StrCat(rec.device_id(), "/", Be64(e.time_unix_ms()),
                           Be64(copy.next_id())),
              e.SerializeAsString());
  }
  extra.Put(kDevices, rec.device_id(), copy.SerializeAsString());
}

absl::StatusOr<v1::ReportTelemetryResponse> ContosoCloud::ReportTelemetry(
    const std::string& device_id, const v1::ReportTelemetryRequest& req) {
  if (auto s = ValidateTelemetry(req); !s.ok()) return s;
  absl::MutexLock l(&LockFor(device_id));
  sphere::store::WriteBatch batch;
  absl::StatusOr<v1::ReportTelemetryResponse> resp =
      PrepareTelemetry(device_id, req, &batch);
  if (!resp.ok()) return resp.status();
  if (resp->accepted() > 0) {
    if (auto s = writer_->Commit(std::move(batch)); !s.ok()) return s;
  }
  return resp;
}

std::vector<absl::StatusOr<v1::ReportTelemetryResponse>>
ContosoCloud::ReportTelemetryMany(const std::vector<TelemetryItem>& items) {
  std::vector<absl::StatusOr<v1::ReportTelemetryResponse>> out(
      items.size(), absl::InternalError("not processed"));
  // Limits and shape first, per item; a device named twice is refused at
  // its second appearance (its samples belong in one batch).
  std::vector<size_t> valid;
  absl::flat_hash_set<absl::string_view> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    if (auto s = ValidateTelemetry(*items[i].request); !s.ok()) {
      out[i] = s;
    } else if (!seen.insert(items[i].device_id).second) {
      out[i] = absl::InvalidArgumentError(
          "device appears twice in one telemetry batch; send its samples "
          "as one item (nothing from this item was stored)");
    } else {
      valid.push_back(i);
    }
  }
  // Lock every device's stripe, in stripe order (no deadlock with other
  // callers), from read to durable commit, as ReportTelemetry does.
  std::vector<size_t> stripes;
  for (size_t i : valid) stripes.push_back(StripeOf(items[i].device_id));
  std::sort(stripes.begin(), stripes.end());
  stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
  for (size_t k : stripes) device_locks_[k].Lock();
  sphere::store::WriteBatch batch;
  bool writes = false;
  for (size_t i : valid) {
    // A refused item adds nothing to the batch: PrepareTelemetry appends
    // only once the item is accepted.
    out[i] = PrepareTelemetry(items[i].device_id, *items[i].request, &batch);
    if (out[i].ok() && out[i]->accepted() > 0) writes = true;
  }
  absl::Status committed =
      writes ? writer_->Commit(std::move(batch)) : absl::OkStatus();
  for (auto it = stripes.rbegin(); it != stripes.rend(); ++it) {
    device_locks_[*it].Unlock();
  }
  if (!committed.ok()) {
    for (size_t i : valid) {
      if (out[i].ok() && out[i]->accepted() > 0) out[i] = committed;
    }
  }
  return out;
}

absl::Status ContosoCloud::ValidateTelemetry(
    const v1::ReportTelemetryRequest& req) {
  if (req.samples_size() == 0) {
    return absl::InvalidArgumentError("a telemetry batch needs 1 sample");
  }
  if (req.samples_size() > kMaxBatchSamples) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "batch of %d samples is over the limit of %d; send smaller batches "
        "(nothing was stored)",
        req.samples_size(), kMaxBatchSamples));
  }
  for (int i = 0; i < req.samples_size(); ++i) {
    if (auto s = ValidateSample(req.samples(i), i); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ReportTelemetryResponse> ContosoCloud::PrepareTelemetry(
    const std::string& device_id, const v1::ReportTelemetryRequest& req,
    sphere::store::WriteBatch* out) {
  absl::StatusOr<records::DeviceRecord> loaded = LoadRecord(device_id, nullptr);
  if (!loaded.ok()) return loaded.status();
  records::DeviceRecord rec = std::move(*loaded);

  // Order by sequence so the analysis sees samples in device order.
  // A device sends in order, so the batch usually is already sorted.
  std::vector<const v1::Telemetry*> order;
  order.reserve(req.samples_size());
  for (const v1::Telemetry& s : req.samples()) order.push_back(&s);
  const auto by_sequence = [](const v1::Telemetry* a, const v1::Telemetry* b) {
    return a->sequence() < b->sequence();
  };
  if (!std::is_sorted(order.begin(), order.end(), by_sequence)) {
    std::stable_sort(order.begin(), order.end(), by_sequence);
  }
  sphere::store::WriteBatch batch;
  Effects fx;
  v1::ReportTelemetryResponse resp;
  // Which samples are new: not repeated in this batch, not stored before.
  std::vector<const v1::Telemetry*> fresh;
  std::vector<uint64_t> fresh_seqs;
  fresh.reserve(order.size());
  fresh_seqs.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const uint64_t seq = order[i]->sequence();
    if ((i > 0 && order[i - 1]->sequence() == seq) ||
        IsStored(rec.stored(), seq)) {
      resp.set_duplicates(resp.duplicates() + 1);
      continue;
    }
    fresh.push_back(order[i]);
    fresh_seqs.push_back(seq);
  }
  if (!fresh.empty()) {
    Ranges merged = AddSorted(rec.stored(), fresh_seqs);
    if (merged.size() > kMaxSequenceRanges) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "this batch would leave more than %d gaps in the device's sample "
          "sequence numbers; resend the missing samples first (nothing from "
          "this batch was stored)",
          kMaxSequenceRanges));
    }
    *rec.mutable_stored() = std::move(merged);
    // A records::SampleChunk in wire format, written directly (field 1,
    // length-delimited, per sample) to spare a copy of every sample.
    // Each sample's size is computed once (AppendToString would compute
    // it again) and the sample written into the reserved space.
    std::vector<size_t> sizes(fresh.size());
    size_t total = 0;
    for (size_t i = 0; i < fresh.size(); ++i) {
      sizes[i] = fresh[i]->ByteSizeLong();
      total += 1 + 10 + sizes[i];  // tag, length (at most 10), sample
    }
    std::string chunk(total, '\0');
    uint8_t* p = reinterpret_cast<uint8_t*>(&chunk[0]);
    for (size_t i = 0; i < fresh.size(); ++i) {
      *p++ = 0x0a;
      for (uint64_t v = sizes[i];; v >>= 7) {
        if (v < 0x80) {
          *p++ = static_cast<uint8_t>(v);
          break;
        }
        *p++ = static_cast<uint8_t>((v & 0x7f) | 0x80);
      }
      p = fresh[i]->SerializeWithCachedSizesToArray(p);
    }
    chunk.resize(p - reinterpret_cast<uint8_t*>(&chunk[0]));
    batch.Put(kSamples, SampleKey(device_id, fresh_seqs.front()), chunk);
    resp.set_accepted(fresh.size());
  }
  const v1::Telemetry* latest = nullptr;
  for (const v1::Telemetry* s : fresh) {
    const uint64_t seq = s->sequence();
    if (!rec.has_samples() || seq > rec.max_sequence()) {
      rec.set_max_sequence(seq);
      rec.set_has_samples(true);
      latest = s;
    }
    // Cycle analysis (late samples of an earlier cycle are stored only).
    if (rec.has_current_cycle() && s->cycle_id() < rec.current_cycle_id()) {
      continue;
    }
    if (rec.has_current_cycle() && s->cycle_id() > rec.current_cycle_id()) {
      FinishCycle(&rec, &fx);
    }
    if (s->cycle_state() == v1::Telemetry::IDLE ||
        s->cycle_state() == v1::Telemetry::CYCLE_STATE_UNSPECIFIED) {
      continue;
    }
    if (!rec.has_current_cycle()) {
      if (s->cycle_id() < rec.current_cycle_id() ||
          (s->cycle_id() == rec.current_cycle_id() &&
           rec.cycles_completed() > 0)) {
        continue;  // a cycle already analysed
      }
      rec.set_has_current_cycle(true);
      rec.set_current_cycle_id(s->cycle_id());
    }
    if (s->cycle_state() == v1::Telemetry::DRYING) {
      rec.set_current_drying_sum(rec.current_drying_sum() +
                                 s->drying_temperature_c());
      rec.set_current_drying_count(rec.current_drying_count() + 1);
      rec.set_current_drying_peak(
          std::max(rec.current_drying_peak(), s->drying_temperature_c()));
    } else if (s->cycle_state() == v1::Telemetry::DONE) {
      FinishCycle(&rec, &fx);
    }
  }
  if (resp.accepted() > 0) {
    rec.set_samples_stored(rec.samples_stored() + resp.accepted());
    rec.set_last_seen_unix_ms(absl::ToUnixMillis(clock_->Now()));
    if (latest != nullptr) {
      const double level = latest->rinse_agent_level_pct();
      rec.set_rinse_agent_level_pct(level);
      if (level < options_.rinse_low_pct && rec.open_reorder_offer().empty()) {
        const std::string offer = NextId(&rec, "offer");
        rec.set_open_reorder_offer(offer);
        AppendBounded(rec.mutable_reorder_offers(), offer);
        Notify(&rec,
               absl::StrFormat("rinse agent at %.0f%%: reorder DW100 rinse "
                               "agent with one click (offer %s)",
                               level, offer),
               &fx);
        AddEntry(&fx, "order", absl::StrCat("reorder offered (", offer, ")"));
        fx.actions.push_back("reorder-offered");
      } else if (level >= options_.rinse_refill_pct &&
                 !rec.open_reorder_offer().empty()) {
        rec.clear_open_reorder_offer();
      }
    }
    AppendRecord(rec, fx, &batch);
    out->Append(std::move(batch));
  }
  for (const std::string& a : fx.actions) resp.add_actions(a);
  for (const records::PendingCommand& p : rec.pending()) {
    *resp.add_commands() = p.command();
  }
  return resp;
}

absl::StatusOr<v1::PollCommandsResponse> ContosoCloud::PollCommands(
    const std::string& device_id) {
  absl::MutexLock l(&LockFor(device_id));
  absl::StatusOr<records::DeviceRecord> rec = LoadRecord(device_id, nullptr);
  if (!rec.ok()) return rec.status();
  v1::PollCommandsResponse resp;
  for (const records::PendingCommand& p : rec->pending()) {
    *resp.add_commands() = p.command();
  }
  return resp;
}

absl::Status ContosoCloud::CompleteCommand(
    const std::string& device_id, const v1::CompleteCommandRequest& req) {
  if (req.command_id().empty() || req.command_id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError("command_id must be 1..64 bytes");
  }
  const v1::DiagnosticsResult& d = req.diagnostics();
  if (d.findings_size() > kMaxFindings) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "at most %d findings per diagnostics result", kMaxFindings));
  }
  for (const std::string& f : d.findings()) {
    if (f.size() > kMaxFindingBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("a finding is at most %d bytes", kMaxFindingBytes));
    }
  }
  if (d.suspected_part().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError("suspected_part is at most 64 bytes");
  }
  absl::MutexLock l(&LockFor(device_id));
  absl::StatusOr<records::DeviceRecord> loaded = LoadRecord(device_id, nullptr);
  if (!loaded.ok()) return loaded.status();
  records::DeviceRecord rec = std::move(*loaded);
  auto it = std::find_if(rec.pending().begin(), rec.pending().end(),
                         [&](const records::PendingCommand& p) {
                           return p.command().command_id() == req.command_id();
                         });
  if (it == rec.pending().end()) {
    if (Contains(rec.completed_commands(), req.command_id())) {
      return absl::OkStatus();  // answered before: idempotent
    }
    return absl::NotFoundError(absl::StrCat(
        "no pending command ", req.command_id(), " for this device"));
  }
  const std::string reason = it->reason();
  rec.mutable_pending()->erase(it);
  AppendBounded(rec.mutable_completed_commands(), req.command_id());
  Effects fx;
  std::string findings;
  for (const std::string& f : d.findings()) {
    absl::StrAppend(&findings, findings.empty() ? "" : "; ", f);
  }
  const std::string result_line =
      d.healthy()
          ? absl::StrCat(req.command_id(), ": healthy")
          : absl::StrCat(
                req.command_id(),
                ": fault: ", findings.empty() ? "(no findings)" : findings,
                d.suspected_part().empty()
                    ? ""
                    : absl::StrCat(" (part ", d.suspected_part(), ")"));
  AppendBounded(rec.mutable_diagnostics(), result_line);
  AddEntry(&fx, "diagnostics",
           absl::StrCat("diagnostics result ", result_line));
  sphere::store::WriteBatch extra;
  if (d.healthy()) {
    Notify(&rec,
           absl::StrCat("we noticed unusual drying temperatures (", reason,
                        "); remote diagnostics found no fault"),
           &fx);
    return Commit(rec, fx, std::move(extra));
  }
  auto customer = GetCustomer(device_id);
  const bool warranty = customer.ok() && customer->warranty_until_unix_ms() >
                                             absl::ToUnixMillis(clock_->Now());
  if (!warranty) {
    Notify(&rec,
           absl::StrCat("remote diagnostics found a fault (", findings,
                        "); your dishwasher is out of warranty: book a paid "
                        "repair with your local shop"),
           &fx);
    return Commit(rec, fx, std::move(extra));
  }
  const std::string part = d.suspected_part().empty()
                               ? options_.default_heater_part
                               : d.suspected_part();
  absl::MutexLock shops(&shops_mu_);
  std::string reservation;
  auto shop = GetShop(customer->shop_id());
  if (!shop.ok()) {
    reservation = absl::StrCat(part, " backordered: shop \"",
                               customer->shop_id(), "\" is unknown");
  } else {
    auto& inv = *shop->mutable_inventory();
    if (inv[part] > 0) {
      inv[part] -= 1;
      reservation = absl::StrCat(part, " reserved at ", shop->name(), " (",
                                 shop->id(), ")");
    } else {
      reservation = absl::StrCat(part, " backordered at ", shop->name(), " (",
                                 shop->id(), "): none in stock");
    }
    extra.Put(kShops, shop->id(), shop->SerializeAsString());
  }
  const std::string rid = NextId(&rec, "res");
  AppendBounded(rec.mutable_reservations(),
                absl::StrCat(rid, " ", reservation));
  AddEntry(&fx, "reservation", absl::StrCat(rid, " ", reservation));
  Notify(&rec,
         absl::StrCat("remote diagnostics found a fault (", findings,
                      "); under warranty: replacement part ", reservation,
                      "; the shop will contact you"),
         &fx);
  return Commit(rec, fx, std::move(extra));
}

absl::StatusOr<v1::ListDevicesResponse> ContosoCloud::ListDevices(
    const v1::ListDevicesRequest& req) {
  uint32_t page = req.page_size() == 0 ? 100 : req.page_size();
  page = std::min(page, kMaxPageSize);
  if (!req.page_token().empty()) {
    if (auto s = ValidateDeviceId(req.page_token()); !s.ok()) {
      return absl::InvalidArgumentError("page_token is not one this returned");
    }
  }
  v1::ListDevicesResponse resp;
  absl::Status parse = absl::OkStatus();
  auto s = store_->Scan(
      kDevices, "",
      [&](absl::string_view key, absl::string_view value) {
        if (!req.page_token().empty() && key <= req.page_token()) return true;
        if (static_cast<uint32_t>(resp.devices_size()) == page) {
          resp.set_next_page_token(
              resp.devices(resp.devices_size() - 1).device_id());
          return false;
        }
        records::DeviceRecord rec;
        if (!rec.ParseFromArray(value.data(), value.size())) {
          parse = absl::DataLossError("corrupt device record");
          return false;
        }
        v1::DeviceSummary* d = resp.add_devices();
        d->set_device_id(rec.device_id());
        d->set_state(rec.open_anomalies_size() > 0       ? "anomaly"
                     : !rec.open_reorder_offer().empty() ? "rinse-low"
                                                         : "ok");
        for (const auto& a : rec.open_anomalies()) d->add_open_anomalies(a);
        d->set_last_seen_unix_ms(rec.last_seen_unix_ms());
        d->set_rinse_agent_level_pct(rec.rinse_agent_level_pct());
        return true;
      },
      req.page_token());
  if (!s.ok()) return s;
  if (!parse.ok()) return parse;
  return resp;
}

absl::StatusOr<records::DeviceRecord> ContosoCloud::GetDeviceRecord(
    const std::string& device_id) {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  bool found = false;
  auto rec = LoadRecord(device_id, &found);
  if (!rec.ok()) return rec.status();
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("device ", device_id, " has never reported telemetry"));
  }
  return rec;
}

absl::StatusOr<records::Customer> ContosoCloud::GetCustomer(
    const std::string& device_id) {
  auto raw = store_->Get(kCustomers, device_id);
  if (!raw.ok()) return raw.status();
  records::Customer c;
  if (!c.ParseFromString(*raw)) return absl::DataLossError("corrupt customer");
  return c;
}

absl::StatusOr<records::Shop> ContosoCloud::GetShop(const std::string& id) {
  auto raw = store_->Get(kShops, id);
  if (!raw.ok()) return raw.status();
  records::Shop s;
  if (!s.ParseFromString(*raw)) return absl::DataLossError("corrupt shop");
  return s;
}

absl::StatusOr<uint64_t> ContosoCloud::CountSamples(
    const std::string& device_id) {
  uint64_t n = 0;
  bool corrupt = false;
  auto s =
      store_->Scan(kSamples, absl::StrCat(device_id, "/"),
                   [&](absl::string_view, absl::string_view value) {
                     if (!CountChunkSamples(value, &n)) {
                       corrupt = true;
                       return false;
                     }
                     return true;
                   });
  if (!s.ok()) return s;
  if (corrupt) return absl::DataLossError("corrupt sample chunk");
  return n;
}

absl::StatusOr<v1::DeviceInsights> ContosoCloud::GetDeviceInsights(
    const std::string& device_id) {
  auto rec = GetDeviceRecord(device_id);
  if (!rec.ok()) return rec.status();
  v1::DeviceInsights out;
  out.set_device_id(device_id);
  for (const auto& a : rec->anomalies()) out.add_anomalies(a);
  for (const auto& a : rec->notifications()) out.add_notifications(a);
  for (const auto& a : rec->reservations()) out.add_reservations(a);
  for (const auto& a : rec->reorder_offers()) out.add_reorder_offers(a);
  for (const auto& a : rec->diagnostics()) out.add_diagnostics(a);
  for (const auto& a : rec->orders()) out.add_orders(a);
  for (const auto& a : rec->service_requests()) out.add_service_requests(a);
  auto customer = GetCustomer(device_id);
  out.set_under_warranty(customer.ok() &&
                         customer->warranty_until_unix_ms() >
                             absl::ToUnixMillis(clock_->Now()));
  return out;
}

absl::StatusOr<v1::Timeline> ContosoCloud::ContosoTimeline(
    const std::string& device_id) {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  std::vector<v1::TimelineEntry> entries;
  absl::Status parse = absl::OkStatus();
  auto s = store_->Scan(kEvents, absl::StrCat(device_id, "/"),
                        [&](absl::string_view, absl::string_view value) {
                          v1::TimelineEntry e;
                          if (!e.ParseFromArray(value.data(), value.size())) {
                            parse = absl::DataLossError("corrupt event");
                            return false;
                          }
                          entries.push_back(std::move(e));
                          return true;
                        });
  if (!s.ok()) return s;
  if (!parse.ok()) return parse;
  v1::Timeline t;
  t.set_device_id(device_id);
  const size_t skip = entries.size() > kMaxTimelineEntries
                          ? entries.size() - kMaxTimelineEntries
                          : 0;
  for (size_t i = skip; i < entries.size(); ++i) {
    *t.add_entries() = std::move(entries[i]);
  }
  return t;
}

absl::StatusOr<v1::RequestServiceResponse> ContosoCloud::RequestService(
    const v1::RequestServiceRequest& req) {
  if (auto s = ValidateDeviceId(req.device_id()); !s.ok()) return s;
  if (req.description().empty() ||
      req.description().size() > kMaxDescriptionBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "description must be 1..%d bytes", kMaxDescriptionBytes));
  }
  absl::MutexLock l(&LockFor(req.device_id()));
  bool found = false;
  auto loaded = LoadRecord(req.device_id(), &found);
  if (!loaded.ok()) return loaded.status();
  if (!found && absl::IsNotFound(GetCustomer(req.device_id()).status())) {
    return absl::NotFoundError(absl::StrCat(
        "device ", req.device_id(), " is not a known Contoso dishwasher"));
  }
  records::DeviceRecord rec = std::move(*loaded);
  Effects fx;
  v1::RequestServiceResponse resp;
  resp.set_request_id(NextId(&rec, "svc"));
  const std::string line =
      absl::StrCat(resp.request_id(), ": ", req.description());
  AppendBounded(rec.mutable_service_requests(), line);
  AddEntry(&fx, "service-request", line);
  if (auto s = Commit(rec, fx, {}); !s.ok()) return s;
  return resp;
}

absl::StatusOr<v1::PlaceOrderResponse> ContosoCloud::PlaceOrder(
    const v1::PlaceOrderRequest& req) {
  if (auto s = ValidateDeviceId(req.device_id()); !s.ok()) return s;
  if (req.offer_id().empty() || req.offer_id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError("offer_id must be 1..64 bytes");
  }
  absl::MutexLock l(&LockFor(req.device_id()));
  auto loaded = GetDeviceRecord(req.device_id());
  if (!loaded.ok()) return loaded.status();
  records::DeviceRecord rec = std::move(*loaded);
  if (!Contains(rec.reorder_offers(), req.offer_id())) {
    return absl::NotFoundError(absl::StrCat("no reorder offer ", req.offer_id(),
                                            " for this dishwasher"));
  }
  // One order per offer: a repeated PlaceOrder returns the same order.
  const std::string suffix = absl::StrCat(" for offer ", req.offer_id());
  for (const std::string& o : rec.orders()) {
    if (absl::EndsWith(o, suffix)) {
      v1::PlaceOrderResponse resp;
      resp.set_order_id(o.substr(0, o.find(' ')));
      return resp;
    }
  }
  Effects fx;
  v1::PlaceOrderResponse resp;
  resp.set_order_id(NextId(&rec, "order"));
  const std::string line =
      absl::StrCat(resp.order_id(), " DW100 rinse agent", suffix);
  AppendBounded(rec.mutable_orders(), line);
  AddEntry(&fx, "order", absl::StrCat("order placed: ", line));
  if (auto s = Commit(rec, fx, {}); !s.ok()) return s;
  return resp;
}

}  // namespace contoso::appsvc
