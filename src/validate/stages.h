#pragma once
// One function per stage; each fills a StageResult (checks + raw data) from the Context.
#include "validate/validate.h"

namespace ilm::validate {

void stage_environment(Context& ctx, StageResult& r);
void stage_model(Context& ctx, StageResult& r);
void stage_operators(Context& ctx, StageResult& r);
void stage_precision(Context& ctx, StageResult& r);
void stage_inference(Context& ctx, StageResult& r);
void stage_api(Context& ctx, StageResult& r);
void stage_performance(Context& ctx, StageResult& r);

// Figures shared by stages (sysinfo.cpp).
struct MemoryInfo {
  double total_bytes = 0, available_bytes = 0;
};
MemoryInfo memory_info();                                  // /proc/meminfo
double free_disk_bytes(const std::filesystem::path& dir);  // statvfs of the nearest existing parent
std::string cpu_model_name();                              // /proc/cpuinfo "model name"
std::string os_description();                              // /etc/os-release PRETTY_NAME + uname
double now_seconds();                                      // steady clock

}  // namespace ilm::validate

namespace ilm::validate {
// The checkpoint on `backend` (the chosen one is wrapped by the fault injector when
// INTERNLM_FAULT_INJECT is set). Throws ilm::Error.
std::unique_ptr<LoadedModel> load_model(const Context& ctx, const std::string& backend);
// Weights per format from the tensor index (environment.cpp).
nlohmann::json checkpoint_footprint(const CheckpointInfo& info);
double weights_in_format(const nlohmann::json& footprint, const std::string& quant);
// The built-in multilingual tokenizer sample (model_check.cpp).
const std::vector<std::string>& tokenizer_samples();
}  // namespace ilm::validate
