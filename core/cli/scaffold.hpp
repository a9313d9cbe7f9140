// `lorasched new-plugin`: the template table (generated at build time from templates/*.in by
// cmake/LoraschedScaffold.cmake) and its rendering.
#pragma once

#include <string>
#include <vector>

namespace lorasched::scaffold {

struct TemplateFile {
  const char* kind;           // "scheduler", ..., or "*" for every kind
  const char* template_name;  // e.g. "scheduler.hpp.in"
  const char* output;         // output file name, itself a template ("@PLUGIN_IDENT@.hpp")
  const char* text;
};

const std::vector<TemplateFile>& template_files();

// The names a template may use.
struct Names {
  std::string name;   // my-sched
  std::string kind;   // scheduler
  std::string ident;  // my_sched
  std::string cls;    // MySched
};

// Names for a plugin name; empty `error` when the name is valid (lowercase letters, digits and
// single '-' between them, starting with a letter, at most 64 characters).
Names names_for(const std::string& kind, const std::string& name, std::string* error);

// Replaces @PLUGIN_NAME@, @PLUGIN_KIND@, @PLUGIN_IDENT@ and @PLUGIN_CLASS@.
std::string render(const std::string& text, const Names& names);

}  // namespace lorasched::scaffold
