// qlib-calibrate: streams .npy batches into a qlib calibrator and writes the result.
//
//   qlib-calibrate --method minmax|percentile|mse|kl|kl-modelopt|kl-ort|ifmr|hfmg|arq
//                  [--bits N] [--mode symmetric|asymmetric] [--bins N] [--percentile P]
//                  [--per-channel AXIS] [--format json|trt-cache|amct-record] [-o FILE]
//                  NAME=FILE.npy [NAME=FILE.npy ...]
//
// Several files with the same NAME are successive batches of one tensor (in command-line
// order); tensors are written in the order of their first appearance. Exit status: 0 done,
// 2 bad input (one line on stderr naming the file, tensor or option), 1 internal error.
// The contract is stable: other programs rely on it (see README.md).
#include <qlib/calibrator.hpp>
#include <qlib/io/amct_record.hpp>
#include <qlib/io/npy.hpp>
#include <qlib/io/results_json.hpp>
#include <qlib/io/trt_cache.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

const char* const usage =
    "usage: qlib-calibrate --method minmax|percentile|mse|kl|kl-modelopt|kl-ort|ifmr|hfmg|arq\n"
    "                      [--bits N] [--mode symmetric|asymmetric] [--bins N] [--percentile P]\n"
    "                      [--per-channel AXIS] [--format json|trt-cache|amct-record] [-o FILE]\n"
    "                      NAME=FILE.npy [NAME=FILE.npy ...]\n";

struct bad_input {
  std::string message;
};

struct tensor_files {
  std::string name;
  std::vector<std::string> files;
};

struct arguments {
  qlib::calibrator_options options;
  bool have_method = false;
  std::string format = "json";
  std::string output;  // empty: stdout
  std::vector<tensor_files> tensors;
};

long parse_integer(const std::string& option, const std::string& text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    throw bad_input{"option " + option + ": '" + text + "' is not an integer in [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]"};
  return v;
}

double parse_real(const std::string& option, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw bad_input{"option " + option + ": '" + text + "' is not a number"};
  return v;
}

arguments parse_arguments(int argc, char** argv) {
  arguments a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw bad_input{"option " + arg + " needs a value"};
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (arg == "--method") {
      const qlib::status s = qlib::parse_calib_method(value(), &a.options.method);
      if (!s.ok()) throw bad_input{"option --method: " + s.message()};
      a.have_method = true;
    } else if (arg == "--bits") {
      a.options.bits = static_cast<int>(parse_integer(arg, value(), 2, 16));
    } else if (arg == "--mode") {
      const std::string m = value();
      if (m == "symmetric") {
        a.options.scheme = qlib::qscheme::symmetric;
      } else if (m == "asymmetric") {
        a.options.scheme = qlib::qscheme::affine;
      } else {
        throw bad_input{"option --mode: '" + m + "' is not symmetric or asymmetric"};
      }
    } else if (arg == "--bins") {
      a.options.bins = static_cast<std::uint32_t>(parse_integer(arg, value(), 1, 1L << 24));
    } else if (arg == "--percentile") {
      a.options.percentile = parse_real(arg, value());
    } else if (arg == "--per-channel") {
      a.options.axis = static_cast<int>(parse_integer(arg, value(), -8, 7));
    } else if (arg == "--format") {
      a.format = value();
      if (a.format != "json" && a.format != "trt-cache" && a.format != "amct-record")
        throw bad_input{"option --format: '" + a.format + "' is not json, trt-cache or amct-record"};
    } else if (arg == "-o" || arg == "--output") {
      a.output = value();
    } else if (!arg.empty() && arg[0] == '-') {
      throw bad_input{"unknown option " + arg};
    } else {
      const std::size_t eq = arg.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size())
        throw bad_input{"argument '" + arg + "' is not NAME=FILE.npy"};
      const std::string name = arg.substr(0, eq), file = arg.substr(eq + 1);
      tensor_files* t = nullptr;
      for (auto& existing : a.tensors)
        if (existing.name == name) t = &existing;
      if (!t) {
        a.tensors.push_back({name, {}});
        t = &a.tensors.back();
      }
      t->files.push_back(file);
    }
  }
  if (!a.have_method) throw bad_input{"option --method is required"};
  if (a.tensors.empty()) throw bad_input{"no NAME=FILE.npy inputs given"};
  const qlib::status s = qlib::check_calibrator_options(a.options);
  if (!s.ok()) throw bad_input{s.message()};
  return a;
}

// Observes every batch of one tensor. Errors name the tensor and the file.
qlib::calib_result<float> calibrate(const arguments& a, const tensor_files& t) {
  qlib::calibrator_options o = a.options;
  o.name = t.name;
  qlib::calibrator c(o);
  for (const std::string& file : t.files) {
    qlib::npy_array<float> batch;
    qlib::status s = qlib::try_read_npy_file(file, &batch);
    if (!s.ok()) throw bad_input{"tensor '" + t.name + "': " + s.message()};
    try {
      c.update(qlib::tensor_view<const float>(batch.data.data(), batch.header.shape, t.name.c_str()));
    } catch (const qlib::error& e) {
      if (e.code() == qlib::errc::internal) throw;
      throw bad_input{std::string(e.what()) + " (file " + file + ")"};
    }
  }
  return c.compute();
}

std::string render(const arguments& a, const std::vector<qlib::result_entry>& results) {
  if (a.format == "json") return qlib::write_results_json(results);
  if (a.format == "trt-cache") {
    qlib::trt_cache cache;
    cache.header = qlib::trt_cache_default_header;
    for (const auto& r : results) {
      if (r.result.per_channel() || r.result.spec.scheme != qlib::qscheme::symmetric)
        throw bad_input{"tensor '" + r.name + "': format trt-cache holds symmetric per-tensor scales only"};
      cache.add_result(r.name, r.result);
    }
    return qlib::write_trt_cache(cache);
  }
  qlib::amct_record record;  // amct-record
  for (const auto& r : results) {
    qlib::amct_record_entry e;
    e.key = r.name;
    if (a.options.method == qlib::calib_method::arq) {
      e.has_data = false;
      e.scale_w = r.result.scale;
      e.offset_w = r.result.zero_point;
    } else {
      if (r.result.per_channel())
        throw bad_input{"tensor '" + r.name + "': format amct-record holds one data scale per layer"};
      e.scale_d = r.result.scale[0];
      e.offset_d = r.result.zero_point[0];
    }
    record.records.push_back(e);
  }
  return qlib::write_amct_record(record);
}

void write_output(const std::string& path, const std::string& text) {
  if (path.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw bad_input{"output " + path + ": cannot open for writing: " + std::strerror(errno)};
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) throw bad_input{"output " + path + ": write failed"};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const arguments a = parse_arguments(argc, argv);
    std::vector<qlib::result_entry> results;
    for (const tensor_files& t : a.tensors) results.push_back({t.name, qlib::to_string(a.options.method), calibrate(a, t)});
    write_output(a.output, render(a, results));
    return 0;
  } catch (const bad_input& e) {
    std::fprintf(stderr, "qlib-calibrate: %s\n", e.message.c_str());
    return 2;
  } catch (const qlib::error& e) {
    std::fprintf(stderr, "qlib-calibrate: %s\n", e.what());
    return e.code() == qlib::errc::internal ? 1 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qlib-calibrate: internal error: %s\n", e.what());
    return 1;
  }
}
