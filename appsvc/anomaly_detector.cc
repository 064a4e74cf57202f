#include "appsvc/anomaly_detector.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace contoso::appsvc {

const char* AnomalyName(Direction d) {
  switch (d) {
    case Direction::kHot:
      return "drying-too-hot";
    case Direction::kCold:
      return "drying-too-cold";
    case Direction::kNone:
      break;
  }
  return "";
}

double DryingAnomalyDetector::OwnBaseline(
    const records::DeviceRecord& record) const {
  const auto& h = record.normal_cycle_means();
  if (h.size() < options_.own_history_min) return options_.baseline_c;
  double sum = 0;
  for (double v : h) sum += v;
  return sum / h.size();
}

Direction DryingAnomalyDetector::Classify(double mean,
                                          const records::DeviceRecord& record,
                                          std::string* why) const {
  const double model_delta = mean - options_.baseline_c;
  if (model_delta > options_.model_tolerance_c) {
    *why = absl::StrFormat("%.1f C is %.1f C above the model baseline %.1f C",
                           mean, model_delta, options_.baseline_c);
    return Direction::kHot;
  }
  if (model_delta < -options_.model_tolerance_c) {
    *why = absl::StrFormat("%.1f C is %.1f C below the model baseline %.1f C",
                           mean, -model_delta, options_.baseline_c);
    return Direction::kCold;
  }
  if (record.normal_cycle_means_size() >= options_.own_history_min) {
    const double own = OwnBaseline(record);
    const double own_delta = mean - own;
    if (own_delta > options_.own_tolerance_c) {
      *why = absl::StrFormat(
          "%.1f C is %.1f C above this dishwasher's own mean %.1f C", mean,
          own_delta, own);
      return Direction::kHot;
    }
    if (own_delta < -options_.own_tolerance_c) {
      *why = absl::StrFormat(
          "%.1f C is %.1f C below this dishwasher's own mean %.1f C", mean,
          -own_delta, own);
      return Direction::kCold;
    }
  }
  *why = absl::StrFormat("%.1f C is normal", mean);
  return Direction::kNone;
}

CycleVerdict DryingAnomalyDetector::ObserveCycle(
    double drying_mean_c, records::DeviceRecord* record) const {
  CycleVerdict v;
  v.cycle = Classify(drying_mean_c, *record, &v.explanation);
  switch (v.cycle) {
    case Direction::kHot:
      record->set_consecutive_hot(record->consecutive_hot() + 1);
      record->set_consecutive_cold(0);
      record->set_consecutive_normal(0);
      break;
    case Direction::kCold:
      record->set_consecutive_cold(record->consecutive_cold() + 1);
      record->set_consecutive_hot(0);
      record->set_consecutive_normal(0);
      break;
    case Direction::kNone: {
      record->set_consecutive_normal(record->consecutive_normal() + 1);
      record->set_consecutive_hot(0);
      record->set_consecutive_cold(0);
      auto* h = record->mutable_normal_cycle_means();
      h->Add(drying_mean_c);
      while (h->size() > options_.own_history_max) h->erase(h->begin());
      break;
    }
  }
  auto is_open = [&](Direction d) {
    const auto& open = record->open_anomalies();
    return std::find(open.begin(), open.end(), AnomalyName(d)) != open.end();
  };
  if (v.cycle == Direction::kHot &&
      record->consecutive_hot() >= options_.consecutive &&
      !is_open(Direction::kHot)) {
    v.raised = Direction::kHot;
  } else if (v.cycle == Direction::kCold &&
             record->consecutive_cold() >= options_.consecutive &&
             !is_open(Direction::kCold)) {
    v.raised = Direction::kCold;
  }
  if (v.raised != Direction::kNone) {
    record->add_open_anomalies(AnomalyName(v.raised));
  }
  if (v.cycle == Direction::kNone &&
      record->consecutive_normal() >= options_.consecutive &&
      record->open_anomalies_size() > 0) {
    record->clear_open_anomalies();
    v.cleared = true;
  }
  return v;
}

}  // namespace contoso::appsvc
