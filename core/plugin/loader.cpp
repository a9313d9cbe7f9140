#include "core/plugin/loader.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <cstdlib>
#include <fstream>

#include "core/common/strings.hpp"

namespace fs = std::filesystem;

namespace lorasched {

namespace {

constexpr const char* kPrefix = "liblorasched-";

bool looks_like_path(const std::string& name) {
  return name.find('/') != std::string::npos || ends_with(name, ".so");
}

std::string file_name_for(api::PluginKind kind, const std::string& name) {
  return fmt::format("{}{}-{}.so", kPrefix, api::to_string(kind), name);
}

// Why `file` could not be loaded, in words: Boost.DLL reports every dlopen failure as
// "Bad file descriptor", which says nothing about a text file named like a plugin, a truncated
// build or a library for another machine.
std::string load_failure(const fs::path& file, const boost::system::error_code& ec) {
  // dlopen's own message, still pending: Boost.DLL does not clear it after a failed load.
  const char* dl = ::dlerror();
  const std::string dl_message = dl != nullptr ? dl : "";
  std::error_code fec;
  if (fs::is_directory(file, fec)) return "it is a directory, not a shared library";
  char magic[4] = {};
  std::ifstream in(file, std::ios::binary);
  in.read(magic, sizeof magic);
  if (!in) return "not a shared library: the file is shorter than an ELF header";
  if (!(magic[0] == '\x7f' && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F'))
    return "not a shared library (no ELF header; a text file, or a build that did not finish?)";
  if (!dl_message.empty()) {
    // dlopen's message starts with the path: keep only what follows it.
    const std::string prefix = file.string() + ": ";
    return dl_message.starts_with(prefix) ? dl_message.substr(prefix.size()) : dl_message;
  }
  return ec.message();
}

}  // namespace

std::string describe_plugin(const PluginLibrary& lib) {
  return fmt::format("{} '{}' ({})", api::to_string(lib.info.kind), lib.info.name,
                     lib.path.string());
}

std::vector<fs::path> plugin_search_path(const std::vector<fs::path>& extra) {
  std::vector<fs::path> dirs;
  boost::dll::fs::error_code ec;
  fs::path exe = boost::dll::program_location(ec).string();
  fs::path installed;
  if (!ec) installed = exe.parent_path().parent_path() / LORASCHED_PLUGIN_INSTALL_SUBDIR;
  // A binary in an install tree uses that tree's plugins, not those of the build it came from.
  std::error_code fec;
  if (installed.empty() || !fs::is_directory(installed, fec))
    dirs.emplace_back(LORASCHED_PLUGIN_BUILD_DIR);
  if (!installed.empty()) dirs.push_back(installed);
  if (const char* env = std::getenv("LORASCHED_PLUGIN_PATH")) {
    std::string s(env);
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      if (end > start) dirs.emplace_back(s.substr(start, end - start));
      start = end + 1;
    }
  }
  for (const auto& d : extra) dirs.push_back(d);
  return dirs;
}

PluginRegistry::PluginRegistry(std::vector<fs::path> search_path)
    : search_path_(std::move(search_path)) {}

std::shared_ptr<const PluginLibrary> PluginRegistry::open(const fs::path& file) {
  if (!fs::exists(file))
    throw PluginError(fmt::format("plugin file {} does not exist", file.string()));
  auto lib = std::make_shared<boost::dll::shared_library>();
  boost::system::error_code ec;
  lib->load(boost::dll::fs::path(file.string()), boost::dll::load_mode::rtld_now, ec);
  if (ec)
    throw PluginError(
        fmt::format("plugin {} could not be loaded: {}", file.string(), load_failure(file, ec)));
  for (const char* sym :
       {"lorasched_plugin_api_version", "lorasched_plugin_info", "lorasched_plugin_create"}) {
    if (!lib->has(sym))
      throw PluginError(fmt::format(
          "plugin {} does not export '{}': is it a lorasched plugin built with LORASCHED_PLUGIN?",
          file.string(), sym));
  }
  const int version = lib->get_alias<api::ApiVersionFn>("lorasched_plugin_api_version")();
  if (version != api::kApiVersion)
    throw PluginError(fmt::format(
        "plugin {} was built for plugin API version {}, but this lorasched needs version {}: "
        "rebuild it against this lorasched's headers",
        file.string(), version, api::kApiVersion));
  auto out = std::make_shared<PluginLibrary>();
  out->path = fs::absolute(file);
  try {
    out->info = lib->get_alias<api::InfoFn>("lorasched_plugin_info")();
  } catch (const std::exception& e) {
    throw PluginError(fmt::format("plugin {}: its info record threw: {}", file.string(), e.what()));
  }
  if (out->info.name.empty())
    throw PluginError(fmt::format("plugin {} has an empty name", file.string()));
  out->create = &lib->get_alias<api::CreateFn>("lorasched_plugin_create");
  out->lib = std::move(lib);
  return out;
}

std::shared_ptr<const PluginLibrary> PluginRegistry::find(api::PluginKind kind,
                                                          const std::string& name) {
  if (looks_like_path(name)) {
    fs::path p = fs::absolute(name);
    auto it = cache_.find(p);
    if (it != cache_.end()) return it->second;
    auto lib = open(p);
    cache_[p] = lib;
    return lib;
  }
  const std::string file = file_name_for(kind, name);
  for (const auto& dir : search_path_) {
    fs::path p = dir / file;
    std::error_code ec;
    if (!fs::exists(p, ec)) continue;
    p = fs::absolute(p);
    auto it = cache_.find(p);
    if (it != cache_.end()) return it->second;
    auto lib = open(p);
    if (lib->info.name != name || lib->info.kind != kind)
      throw PluginError(
          fmt::format("plugin {} calls itself {} '{}', but its file name says {} '{}'", p.string(),
                      api::to_string(lib->info.kind), lib->info.name, api::to_string(kind), name));
    cache_[p] = lib;
    return lib;
  }
  std::vector<std::string> known;
  for (const auto& lib : scan())
    if (lib->info.kind == kind) known.push_back(lib->info.name);
  std::vector<std::string> dirs;
  for (const auto& d : search_path_) dirs.push_back(d.string());
  throw PluginError(fmt::format("no {} plugin '{}'{} (looked for {} in: {}; known: {})",
                                api::to_string(kind), name, did_you_mean(name, known), file,
                                join(dirs, ", "), known.empty() ? "none" : join(known, ", ")));
}

std::vector<std::shared_ptr<const PluginLibrary>> PluginRegistry::scan() {
  problems_.clear();
  std::vector<std::shared_ptr<const PluginLibrary>> out;
  std::map<std::pair<int, std::string>, bool> seen;
  for (const auto& dir : search_path_) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string fname = e.path().filename().string();
      if (fname.rfind(kPrefix, 0) == 0 && ends_with(fname, ".so")) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      fs::path p = fs::absolute(f);
      std::shared_ptr<const PluginLibrary> lib;
      auto it = cache_.find(p);
      if (it != cache_.end()) {
        lib = it->second;
      } else {
        try {
          lib = open(p);
          cache_[p] = lib;
        } catch (const Error& e) {
          problems_.push_back(e.what());
          continue;
        }
      }
      auto key = std::make_pair(static_cast<int>(lib->info.kind), lib->info.name);
      if (seen[key]) continue;
      seen[key] = true;
      out.push_back(lib);
    }
  }
  return out;
}

}  // namespace lorasched
