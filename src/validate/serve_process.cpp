#include "validate/serve_process.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"
#include "validate/stages.h"

namespace ilm::validate {

std::string ServeProcess::url() const { return fmt::format("http://{}:{}", host, port); }

std::string tail_lines(const std::filesystem::path& p, int lines) {
  const std::string s = slurp(p);
  size_t pos = s.size();
  int n = 0;
  while (pos > 0) {
    const size_t nl = s.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    if (nl + 1 < s.size() && ++n > lines) {
      pos = nl + 1;
      break;
    }
    pos = nl;
  }
  std::string t = s.substr(pos);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return t;
}

ServeProcess start_serve(const Context& ctx, const std::string& name, const std::vector<std::string>& extra) {
  const Options& o = ctx.opts;
  ServeProcess s;
  s.stdout_log = o.out_dir / fmt::format("{}.stdout.log", name);
  s.stderr_log = o.out_dir / fmt::format("{}.log", name);
  std::error_code ec;
  std::filesystem::remove(s.stdout_log, ec);
  std::filesystem::remove(s.stderr_log, ec);
  s.argv = {o.self_exe.string(), "serve", "--model", o.model_dir.string(), "--host", "127.0.0.1", "--port", "0",
            "--backend", o.backend, "--quant", o.quant, "--precision", std::string(precision_name(o.precision)), "--kv-cache-dtype", o.kv_dtype};
  if (o.threads > 0) {
    s.argv.push_back("--threads");
    s.argv.push_back(std::to_string(o.threads));
  }
  s.argv.insert(s.argv.end(), extra.begin(), extra.end());
  const double t0 = now_seconds();
  s.proc = std::make_unique<Subprocess>(s.argv, s.stdout_log, s.stderr_log);
  const double timeout = ctx.th.get("api.start_timeout_s");
  const std::string marker = "listening on http://";
  while (true) {
    const std::string out = slurp(s.stdout_log);
    const auto at = out.find(marker);
    if (at != std::string::npos) {
      const auto eol = out.find('\n', at);
      if (eol != std::string::npos) {
        const std::string hp = out.substr(at + marker.size(), eol - at - marker.size());
        const auto colon = hp.rfind(':');
        if (colon == std::string::npos) throw Error(fmt::format("serve printed an unexpected address '{}'", hp));
        s.host = hp.substr(0, colon);
        s.port = std::stoi(hp.substr(colon + 1));
        s.startup_seconds = now_seconds() - t0;
        return s;
      }
    }
    if (auto st = s.proc->poll())
      throw Error(fmt::format("`internlm serve` exited with status {} before listening; last lines of {}:\n{}", *st,
                              s.stderr_log.filename().string(), tail_lines(s.stderr_log, 8)));
    if (now_seconds() - t0 > timeout) {
      s.proc->stop(5);
      throw Error(fmt::format("`internlm serve` did not listen within {} s (api.start_timeout_s); last lines of {}:\n{}",
                              timeout, s.stderr_log.filename().string(), tail_lines(s.stderr_log, 8)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace ilm::validate
