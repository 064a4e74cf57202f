// DryingAnomalyDetector: decides, one completed wash cycle at a time, whether
// a DW100's drying temperature is anomalous (too hot or too cold), against
// both the model's baseline and the device's own history, and raises an
// anomaly only after `consecutive` anomalous cycles in the same direction so
// that one noisy cycle never triggers diagnostics.
//
// A cycle is summarised by the mean drying-air temperature of its DRYING
// samples. It is anomalous when it is more than `model_tolerance_c` from the
// model baseline, or (once the device has `own_history_min` normal cycles)
// more than `own_tolerance_c` from the mean of its own recent normal cycles.
// Only normal cycles feed the device's own baseline, so a failing heater
// cannot teach the detector that failure is normal. An open anomaly closes
// after `consecutive` normal cycles in a row.
//
// The detector is stateless: its state lives in the device's persisted
// record (records::DeviceRecord), so it survives restarts. Pure functions;
// thread-safety is the caller's (one device's record is updated by one
// thread at a time).
//
// Example:
//   DryingAnomalyDetector d(DetectorOptions{});
//   CycleVerdict v = d.ObserveCycle(88.5, &record);
//   if (v.raised != Direction::kNone) QueueDiagnostics(...);
#ifndef SPHERE_APPSVC_ANOMALY_DETECTOR_H_
#define SPHERE_APPSVC_ANOMALY_DETECTOR_H_

#include <string>

#include "appsvc/records.pb.h"

namespace contoso::appsvc {

struct DetectorOptions {
  double baseline_c = 65.0;         // the DW100 model's drying mean
  double model_tolerance_c = 10.0;  // allowed distance from the baseline
  double own_tolerance_c = 6.0;     // allowed distance from own history
  int own_history_min = 5;          // normal cycles before own history counts
  int own_history_max = 20;         // normal cycles kept for own history
  int consecutive = 3;              // anomalous cycles in a row to raise
};

enum class Direction { kNone, kHot, kCold };

// AnomalyName is the stable name of an anomaly ("drying-too-hot",
// "drying-too-cold"; "" for kNone).
const char* AnomalyName(Direction d);

struct CycleVerdict {
  Direction cycle = Direction::kNone;   // how this one cycle looked
  Direction raised = Direction::kNone;  // an anomaly opened by this cycle
  bool cleared = false;                 // open anomalies closed by this cycle
  std::string explanation;              // one line, for the timeline
};

class DryingAnomalyDetector {
 public:
  explicit DryingAnomalyDetector(DetectorOptions options) : options_(options) {}

  // ObserveCycle folds one completed cycle's mean drying temperature into
  // `record` (consecutive counters, own history, open anomalies).
  CycleVerdict ObserveCycle(double drying_mean_c,
                            records::DeviceRecord* record) const;

  // OwnBaseline: the mean of the device's recent normal cycles, or the
  // model baseline while it has fewer than own_history_min.
  double OwnBaseline(const records::DeviceRecord& record) const;

  const DetectorOptions& options() const { return options_; }

 private:
  Direction Classify(double mean, const records::DeviceRecord& record,
                     std::string* why) const;

  const DetectorOptions options_;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_ANOMALY_DETECTOR_H_
