// Finds, loads and instantiates policy plugins (shared libraries, Boost.DLL), refusing a
// missing file, a missing symbol or another API version with a message naming the file.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/common/error.hpp"
#include "lorasched/plugin/api.hpp"

namespace boost::dll {
class shared_library;
}

namespace lorasched {

// One plugin library, opened and checked.
struct PluginLibrary {
  std::filesystem::path path;
  api::PluginInfo info;
  std::shared_ptr<boost::dll::shared_library> lib;
  api::CreateFn* create = nullptr;
};

// A policy object together with the library that made it: the library stays loaded as
// long as the object lives, and the object is destroyed first.
template <class T>
class PluginInstance {
 public:
  PluginInstance() = default;
  PluginInstance(std::shared_ptr<const PluginLibrary> lib, T* obj)
      : lib_(std::move(lib)), obj_(obj) {}
  PluginInstance(PluginInstance&&) noexcept = default;
  PluginInstance& operator=(PluginInstance&& o) noexcept {
    obj_.reset();
    lib_ = std::move(o.lib_);
    obj_ = std::move(o.obj_);
    return *this;
  }
  ~PluginInstance() { obj_.reset(); }

  T* get() const { return obj_.get(); }
  T* operator->() const { return obj_.get(); }
  T& operator*() const { return *obj_; }
  explicit operator bool() const { return obj_ != nullptr; }
  const PluginLibrary& library() const { return *lib_; }
  // "scheduler 'dlora' (/path/liblorasched-scheduler-dlora.so)", for error messages.
  std::string describe() const;

 private:
  std::shared_ptr<const PluginLibrary> lib_;  // declared first: destroyed after obj_
  std::unique_ptr<T> obj_;
};

// The directories searched, in order: the build tree's plugin dir (left out when the
// executable runs from an install tree), the install tree's (relative to the executable),
// each entry of $LORASCHED_PLUGIN_PATH (colon separated), then `extra` (from the experiment
// file).
std::vector<std::filesystem::path> plugin_search_path(
    const std::vector<std::filesystem::path>& extra = {});

class PluginRegistry {
 public:
  explicit PluginRegistry(std::vector<std::filesystem::path> search_path);

  // Opens and checks one library file. Throws PluginError naming the file: missing file,
  // not loadable, missing symbol, wrong API version, info that throws.
  static std::shared_ptr<const PluginLibrary> open(const std::filesystem::path& file);

  // The plugin of that kind and name: `name` is a plugin name ("dlora") looked up in the
  // search path, or a path to a library file (contains '/' or ends in ".so"). Throws
  // PluginError with the places searched and a "did you mean" when not found.
  std::shared_ptr<const PluginLibrary> find(api::PluginKind kind, const std::string& name);

  // Every loadable plugin in the search path (first one wins for a kind+name), and the
  // problems met while scanning (libraries that could not be opened), for `plugins`.
  std::vector<std::shared_ptr<const PluginLibrary>> scan();
  const std::vector<std::string>& scan_problems() const { return problems_; }
  const std::vector<std::filesystem::path>& search_path() const { return search_path_; }

 private:
  std::vector<std::filesystem::path> search_path_;
  std::map<std::filesystem::path, std::shared_ptr<const PluginLibrary>> cache_;
  std::vector<std::string> problems_;
};

// A plugin's factory refused its parameters (std::invalid_argument): bad input, exit 2.
class PluginArgumentError : public InputError {
 public:
  using InputError::InputError;
};

// Creates the policy object. Throws PluginError naming the plugin and file if the
// factory fails, or if the library is of another kind than T.
template <class T>
PluginInstance<T> instantiate(const std::shared_ptr<const PluginLibrary>& lib,
                              const api::CreateArgs& args);

// Kind of each interface, for instantiate<T>.
template <class T>
constexpr api::PluginKind plugin_kind_of() {
  return api::kind_of<T>();
}

std::string describe_plugin(const PluginLibrary& lib);

template <class T>
std::string PluginInstance<T>::describe() const {
  return lib_ ? describe_plugin(*lib_) : std::string("<no plugin>");
}

template <class T>
PluginInstance<T> instantiate(const std::shared_ptr<const PluginLibrary>& lib,
                              const api::CreateArgs& args) {
  if (lib->info.kind != plugin_kind_of<T>())
    throw PluginError(describe_plugin(*lib) + " is a " + api::to_string(lib->info.kind) +
                      " plugin, but a " + api::to_string(plugin_kind_of<T>()) + " was asked for");
  std::string error;
  void* p = lib->create(args, &error);
  const std::string prefix = api::kInvalidArgumentPrefix;
  if (p == nullptr && error.rfind(prefix, 0) == 0)
    throw PluginArgumentError(error.substr(prefix.size()));
  if (p == nullptr)
    throw PluginError(describe_plugin(*lib) +
                      " failed at creation: " + (error.empty() ? "no reason given" : error));
  return PluginInstance<T>(lib, static_cast<T*>(p));
}

}  // namespace lorasched
