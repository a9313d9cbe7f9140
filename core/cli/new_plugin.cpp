// `lorasched new-plugin --kind KIND --name NAME DIR`: writes a minimal working plugin (policy,
// CMakeLists.txt against the installed lorasched package, unit test, experiment next to
// `dlora`) from the templates in core/cli/templates, embedded at build time.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/cli/commands.hpp"
#include "core/cli/scaffold.hpp"
#include "core/common/error.hpp"
#include "core/common/strings.hpp"
#include "core/plugin/loader.hpp"

namespace fs = std::filesystem;

namespace lorasched {

namespace scaffold {

Names names_for(const std::string& kind, const std::string& name, std::string* error) {
  Names n{name, kind, name, ""};
  std::replace(n.ident.begin(), n.ident.end(), '-', '_');
  auto fail = [&](const std::string& why) {
    if (error) *error = why;
    return n;
  };
  if (error) error->clear();
  if (name.empty()) return fail("is empty");
  if (name.size() > 64) return fail("is longer than 64 characters");
  if (!(name[0] >= 'a' && name[0] <= 'z')) return fail("does not start with a lowercase letter");
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return fail(fmt::format("holds '{}': use lowercase letters, digits and '-'", c));
    if (c == '-' && (i + 1 == name.size() || name[i + 1] == '-'))
      return fail("has a '-' that is not between two letters or digits");
  }
  bool upper = true;
  for (char c : name) {
    if (c == '-') {
      upper = true;
      continue;
    }
    n.cls += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return n;
}

std::string render(const std::string& text, const Names& names) {
  const std::pair<std::string, const std::string*> keys[] = {{"@PLUGIN_NAME@", &names.name},
                                                             {"@PLUGIN_KIND@", &names.kind},
                                                             {"@PLUGIN_IDENT@", &names.ident},
                                                             {"@PLUGIN_CLASS@", &names.cls}};
  std::string out;
  out.reserve(text.size() + 256);
  size_t i = 0;
  while (i < text.size()) {
    bool replaced = false;
    if (text[i] == '@')
      for (const auto& [key, value] : keys)
        if (text.compare(i, key.size(), key) == 0) {
          out += *value;
          i += key.size();
          replaced = true;
          break;
        }
    if (!replaced) out += text[i++];
  }
  return out;
}

}  // namespace scaffold

namespace {

const std::vector<std::string> kKinds = {"scheduler", "threshold", "migration", "dispatcher"};

api::PluginKind kind_from(const std::string& kind) {
  if (kind == "threshold") return api::PluginKind::threshold;
  if (kind == "migration") return api::PluginKind::migration;
  if (kind == "dispatcher") return api::PluginKind::dispatcher;
  return api::PluginKind::scheduler;
}

// The install prefix of this binary when it runs from an installed tree (the one holding the
// CMake package), else empty.
fs::path install_prefix() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path prefix = exe.parent_path().parent_path();
  for (const char* lib : {"lib", "lib64"})
    if (fs::exists(prefix / lib / "cmake" / "lorasched" / "loraschedConfig.cmake", ec))
      return prefix;
  return {};
}

}  // namespace

int cmd_new_plugin(const NewPluginOptions& opts) {
  if (std::find(kKinds.begin(), kKinds.end(), opts.kind) == kKinds.end())
    throw InputError(fmt::format("new-plugin: --kind '{}' is not a plugin kind{}: use one of {}",
                                 opts.kind, did_you_mean(opts.kind, kKinds), join(kKinds, ", ")));
  std::string why;
  const scaffold::Names names = scaffold::names_for(opts.kind, opts.name, &why);
  if (!why.empty())
    throw InputError(
        fmt::format("new-plugin: --name '{}' {} (a plugin name is lowercase letters, "
                    "digits and '-', starting with a letter, e.g. my-sched)",
                    opts.name, why));
  if (opts.dir.empty()) throw InputError("new-plugin: give the directory to write the plugin in");

  // A plugin of that kind and name found first (built-in, installed, $LORASCHED_PLUGIN_PATH)
  // would shadow the new one in every experiment: refuse the name.
  PluginRegistry registry(plugin_search_path());
  for (const auto& lib : registry.scan())
    if (lib->info.kind == kind_from(opts.kind) && lib->info.name == opts.name)
      throw InputError(fmt::format(
          "new-plugin: there is a {} plugin '{}' already ({}); experiments would load that one: "
          "pick another name",
          opts.kind, opts.name, lib->path.string()));

  const fs::path dir = opts.dir;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec))
      throw InputError(fmt::format("new-plugin: {} exists and is not a directory", dir.string()));
    if (!fs::is_empty(dir, ec) && !opts.force)
      throw InputError(fmt::format(
          "new-plugin: {} is not empty; give an empty or new directory (or --force to overwrite "
          "the plugin's files in it)",
          dir.string()));
  }
  fs::create_directories(dir, ec);
  if (ec)
    throw InputError(fmt::format("new-plugin: cannot create {}: {}", dir.string(), ec.message()));

  std::vector<std::string> written;
  for (const auto& t : scaffold::template_files()) {
    if (std::string(t.kind) != "*" && t.kind != opts.kind) continue;
    const std::string name = scaffold::render(t.output, names);
    const fs::path path = dir / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << scaffold::render(t.text, names);
    out.close();
    if (!out)
      throw Error(ExitCode::runtime, fmt::format("new-plugin: cannot write {}", path.string()));
    written.push_back(name);
  }

  const fs::path prefix = install_prefix();
  const std::string prefix_text = prefix.empty() ? "<lorasched install prefix>" : prefix.string();
  const std::string exe = prefix.empty() ? "lorasched" : (prefix / "bin" / "lorasched").string();
  fmt::print("wrote the {} plugin '{}' in {}: {}\n\n", opts.kind, opts.name, dir.string(),
             join(written, ", "));
  fmt::print("next, in {}:\n", dir.string());
  fmt::print("  cmake -S . -B build -DCMAKE_PREFIX_PATH={} && cmake --build build\n", prefix_text);
  fmt::print("  ctest --test-dir build --output-on-failure\n");
  fmt::print("  {} plugins --path build --describe {}\n", exe, opts.name);
  fmt::print("  {} run experiment.toml\n", exe);
  if (prefix.empty())
    fmt::print(
        "(this lorasched is not an installed one: `make install PREFIX=<dir>` installs the "
        "headers and the CMake package the build needs)\n");
  return 0;
}

}  // namespace lorasched
