#include "core/common/log.hpp"

#include <memory>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace lorasched::log {

namespace {

spdlog::logger& logger() {
  static const std::shared_ptr<spdlog::logger> instance = [] {
    auto l = std::make_shared<spdlog::logger>("lorasched",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%l: %v");  // "warning: <message>", like the CLI's other messages
    l->set_level(spdlog::level::warn);
    l->flush_on(spdlog::level::warn);  // interleave correctly with the CLI's own output
    return l;
  }();
  return *instance;
}

}  // namespace

struct Capture::Sink : spdlog::sinks::base_sink<std::mutex> {
  std::vector<std::string> messages;
  void sink_it_(const spdlog::details::log_msg& msg) override {
    messages.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}
  std::vector<std::string> snapshot() {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages;
  }
};

void warn(std::string_view message) { logger().warn("{}", message); }

void set_quiet(bool quiet) { logger().set_level(quiet ? spdlog::level::off : spdlog::level::warn); }

Capture::Capture() {
  auto sink = std::make_shared<Sink>();
  sink_ = sink.get();
  logger().sinks().push_back(std::move(sink));
}

Capture::~Capture() {
  auto& sinks = logger().sinks();
  std::erase_if(sinks, [this](const spdlog::sink_ptr& s) { return s.get() == sink_; });
}

std::vector<std::string> Capture::messages() const { return sink_->snapshot(); }

}  // namespace lorasched::log
