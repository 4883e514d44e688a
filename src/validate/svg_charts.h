#pragma once
// Small, dependency-free SVG charts for the HTML report (inline, so the file opens offline).
#include <string>
#include <string_view>
#include <vector>

namespace ilm::validate {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct LineChart {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  bool step = false;     // a step function (CDFs)
  bool markers = true;   // a dot per point
  std::vector<Series> series;
};

struct BarChart {
  std::string title, y_label;
  bool log_y = true;
  std::vector<std::string> labels;
  std::vector<double> values;
  std::vector<double> limits;  // a tick per bar (<= 0: none)
  std::vector<bool> ok;        // colour per bar
};

std::string svg_line_chart(const LineChart& c);
std::string svg_bar_chart(const BarChart& c);
std::string xml_escape(std::string_view s);
// The empirical CDF of `samples` (sorted copy): x = values, y = i / n.
Series cdf_series(std::string name, std::vector<double> samples);

}  // namespace ilm::validate
