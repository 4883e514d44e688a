#include "validate/svg_charts.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace ilm::validate {

namespace {

constexpr double kW = 640, kH = 340, kL = 70, kR = 20, kT = 52, kB = 56;
const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  double map(double v, double a, double b) const {  // to pixel range [a, b]
    double t;
    if (log) {
      const double l = std::log10(std::max(v, 1e-300));
      t = (l - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    } else {
      t = (v - lo) / (hi - lo);
    }
    return a + t * (b - a);
  }
  std::vector<double> ticks() const {
    std::vector<double> t;
    if (log) {
      for (double p = std::floor(std::log10(lo)); p <= std::ceil(std::log10(hi)) + 1e-9; p += 1) {
        const double v = std::pow(10.0, p);
        if (v >= lo * 0.999 && v <= hi * 1.001) t.push_back(v);
      }
      if (t.size() < 2) t = {lo, hi};
      return t;
    }
    const double span = hi - lo;
    const double raw = span / 5;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
      if (raw <= m * mag) {
        step = m * mag;
        break;
      }
    for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
    return t;
  }
};

Axis make_axis(std::vector<double> v, bool log, bool zero) {
  Axis a;
  a.log = log;
  std::vector<double> f;
  for (double x : v)
    if (std::isfinite(x) && (!log || x > 0)) f.push_back(x);
  if (f.empty()) {
    a.lo = log ? 1 : 0;
    a.hi = log ? 10 : 1;
    return a;
  }
  double lo = *std::min_element(f.begin(), f.end()), hi = *std::max_element(f.begin(), f.end());
  if (log) {
    lo = std::pow(10.0, std::floor(std::log10(lo)));
    hi = std::pow(10.0, std::ceil(std::log10(hi)));
    if (hi <= lo) hi = lo * 10;
  } else {
    if (zero) lo = std::min(lo, 0.0);
    if (hi <= lo) hi = lo + (lo == 0 ? 1 : std::fabs(lo));
    hi += (hi - lo) * 0.05;
  }
  a.lo = lo;
  a.hi = hi;
  return a;
}

std::string num_label(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e5 || a < 1e-2) return fmt::format("{:.0e}", v);
  if (a >= 100) return fmt::format("{:.0f}", v);
  if (a >= 10) return fmt::format("{:.1f}", v);
  return fmt::format("{:.2g}", v);
}

std::string header(const std::string& title, const std::string& kind) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" data-chart=\"{}\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\n"
      "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
      kind, kW, kH, kW, kH, xml_escape(title), kW, kH, kW / 2, xml_escape(title));
}

std::string axes(const Axis& x, const Axis& y, const std::string& xl, const std::string& yl, bool x_ticks) {
  std::string s;
  const double x0 = kL, x1 = kW - kR, y0 = kH - kB, y1 = kT;
  for (double t : y.ticks()) {
    const double py = y.map(t, y0, y1);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n", x0, py, x1, py);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"11\">{}</text>\n", x0 - 6, py + 4,
                     num_label(t));
  }
  if (x_ticks)
    for (double t : x.ticks()) {
      const double px = x.map(t, x0, x1);
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n", px, y0, px, y1);
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"11\">{}</text>\n", px, y0 + 16,
                       num_label(t));
    }
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#333\"/>\n", x0, y0, x1);
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#333\"/>\n", x0, y0, y1);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"12\">{}</text>\n", (x0 + x1) / 2,
                   kH - 12, xml_escape(xl));
  s += fmt::format("<text x=\"16\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 16 {:.1f})\">{}</text>\n",
                   (y0 + y1) / 2, (y0 + y1) / 2, xml_escape(yl));
  return s;
}

std::string no_data(const std::string& title, const std::string& kind) {
  return header(title, kind) +
         fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#777\">no data "
                     "(not measured in this run)</text>\n</svg>\n",
                     kW / 2, kH / 2);
}

}  // namespace

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Series cdf_series(std::string name, std::vector<double> samples) {
  Series s;
  s.name = std::move(name);
  std::sort(samples.begin(), samples.end());
  const double n = static_cast<double>(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    s.x.push_back(samples[i]);
    s.y.push_back(static_cast<double>(i + 1) / n);
  }
  return s;
}

std::string svg_line_chart(const LineChart& c) {
  std::vector<double> xs, ys;
  for (const auto& s : c.series) {
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
  }
  if (xs.empty()) return no_data(c.title, "line");
  const Axis x = make_axis(xs, c.log_x, false), y = make_axis(ys, c.log_y, true);
  std::string s = header(c.title, "line") + axes(x, y, c.x_label, c.y_label, true);
  const double x0 = kL, x1 = kW - kR, y0 = kH - kB, y1 = kT;
  for (size_t i = 0; i < c.series.size(); ++i) {
    const auto& se = c.series[i];
    const char* col = kPalette[i % 8];
    std::string d;
    double prev_py = y0;
    for (size_t k = 0; k < se.x.size(); ++k) {
      if (!std::isfinite(se.x[k]) || !std::isfinite(se.y[k])) continue;
      if ((c.log_x && se.x[k] <= 0) || (c.log_y && se.y[k] <= 0)) continue;
      const double px = x.map(se.x[k], x0, x1), py = y.map(se.y[k], y0, y1);
      if (d.empty()) {
        d += c.step ? fmt::format("M{:.1f},{:.1f} L{:.1f},{:.1f}", px, y0, px, py) : fmt::format("M{:.1f},{:.1f}", px, py);
      } else if (c.step) {
        d += fmt::format(" L{:.1f},{:.1f} L{:.1f},{:.1f}", px, prev_py, px, py);
      } else {
        d += fmt::format(" L{:.1f},{:.1f}", px, py);
      }
      prev_py = py;
      if (c.markers && !c.step)
        s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px, py, col);
    }
    if (!d.empty())
      s += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"><title>{}</title></path>\n", d, col,
                       xml_escape(se.name));
    // Legend.
    const double lx = x0 + static_cast<double>(i % 5) * 110, ly = 34 + static_cast<double>(i / 5) * 12;
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"4\" fill=\"{}\"/>", lx, ly - 4, col);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\">{}</text>\n", lx + 16, ly, xml_escape(se.name));
  }
  return s + "</svg>\n";
}

std::string svg_bar_chart(const BarChart& c) {
  if (c.values.empty()) return no_data(c.title, "bar");
  std::vector<double> ys = c.values;
  for (double l : c.limits)
    if (l > 0) ys.push_back(l);
  if (c.log_y) {
    // Exact zeros are drawn at the bottom of a log axis.
    double lo = INFINITY;
    for (double v : ys)
      if (v > 0) lo = std::min(lo, v);
    if (!std::isfinite(lo)) lo = 1e-8;
    ys.push_back(lo / 10);
  }
  const Axis y = make_axis(ys, c.log_y, !c.log_y);
  Axis x;
  std::string s = header(c.title, "bar") + axes(x, y, "", c.y_label, false);
  const double x0 = kL, x1 = kW - kR, y0 = kH - kB, y1 = kT;
  const double slot = (x1 - x0) / static_cast<double>(c.values.size());
  for (size_t i = 0; i < c.values.size(); ++i) {
    const double v = c.values[i];
    const double base = c.log_y ? y0 : y.map(0, y0, y1);
    const double top = std::isfinite(v) && (!c.log_y || v > 0) ? y.map(v, y0, y1) : (std::isfinite(v) ? y0 : y1);
    const double bx = x0 + slot * static_cast<double>(i) + slot * 0.15, bw = slot * 0.7;
    const bool ok = i < c.ok.size() ? c.ok[i] : true;
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{}: {}</title></rect>\n",
                     bx, std::min(top, base), bw, std::max(1.0, std::fabs(base - top)), ok ? "#2ca02c" : "#d62728",
                     xml_escape(c.labels[i]), num_label(v));
    if (i < c.limits.size() && c.limits[i] > 0) {
      const double ly = y.map(c.limits[i], y0, y1);
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#000\" stroke-width=\"2\" "
                       "stroke-dasharray=\"3,2\"><title>limit {}</title></line>\n",
                       bx - 2, ly, bx + bw + 2, ly, num_label(c.limits[i]));
    }
    const double tx = bx + bw / 2, ty = y0 + 8;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"9\" text-anchor=\"end\" transform=\"rotate(-40 {:.1f} {:.1f})\">{}</text>\n",
                     tx, ty, tx, ty, xml_escape(c.labels[i]));
  }
  return s + "</svg>\n";
}

}  // namespace ilm::validate
