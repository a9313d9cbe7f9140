// LORASCHED_PLUGIN(Class, info_function): export one policy class from a plugin library.
//
// Exports three Boost.DLL aliases: lorasched_plugin_api_version (int(), plain data, read
// first so a version mismatch is caught before any C++ type crosses the boundary),
// lorasched_plugin_info (PluginInfo()) and lorasched_plugin_create (CreateFn). Class must
// derive from one of Scheduler, Threshold, Migration, Dispatcher and have a constructor
// taking `const lorasched::api::CreateArgs&`; info_function returns its PluginInfo (name,
// summary, parameter specs; the kind and version are filled in here).
#pragma once

#include <boost/config.hpp>
#include <boost/dll/alias.hpp>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "lorasched/plugin/policies.hpp"

namespace lorasched::api {

using ApiVersionFn = int();
using InfoFn = PluginInfo();
// Returns the new object as a pointer to its policy base class (Scheduler*, ...), cast to
// void*, or nullptr with *error set.
using CreateFn = void*(const CreateArgs& args, std::string* error);

// A factory that throws std::invalid_argument reports bad parameters (exit code 2, at the
// plugin's table in the experiment file) rather than a plugin fault (exit code 3).
inline constexpr const char* kInvalidArgumentPrefix = "invalid parameters: ";

template <class Impl>
using PolicyBase =
    std::conditional_t<std::is_base_of_v<Scheduler, Impl>, Scheduler,
                       std::conditional_t<std::is_base_of_v<Threshold, Impl>, Threshold,
                                          std::conditional_t<std::is_base_of_v<Migration, Impl>,
                                                             Migration, Dispatcher>>>;

template <class Impl>
void* create_guarded(const CreateArgs& args, std::string* error) noexcept {
  static_assert(std::is_base_of_v<Scheduler, Impl> || std::is_base_of_v<Threshold, Impl> ||
                    std::is_base_of_v<Migration, Impl> || std::is_base_of_v<Dispatcher, Impl>,
                "a plugin class must derive from a lorasched::api policy base");
  try {
    PolicyBase<Impl>* obj = new Guarded<Impl>(args);
    return static_cast<void*>(obj);
  } catch (const std::invalid_argument& e) {
    // Bad parameter values (e.g. beta >= alpha): reported as bad input at the plugin table.
    if (error) *error = std::string(kInvalidArgumentPrefix) + e.what();
  } catch (const std::exception& e) {
    if (error) *error = e.what();
  } catch (...) {
    if (error) *error = "threw a non-standard exception";
  }
  return nullptr;
}

}  // namespace lorasched::api

#define LORASCHED_PLUGIN(Class, info_function)                                                  \
  namespace lorasched_plugin_exports {                                                          \
  int exported_api_version() { return ::lorasched::api::kApiVersion; }                          \
  ::lorasched::api::PluginInfo exported_info() {                                                \
    ::lorasched::api::PluginInfo i = info_function();                                           \
    i.api_version = ::lorasched::api::kApiVersion;                                              \
    i.kind = ::lorasched::api::kind_of<Class>();                                                \
    return i;                                                                                   \
  }                                                                                             \
  void* exported_create(const ::lorasched::api::CreateArgs& args, std::string* error) {         \
    return ::lorasched::api::create_guarded<Class>(args, error);                                \
  }                                                                                             \
  }                                                                                             \
  BOOST_DLL_ALIAS(lorasched_plugin_exports::exported_api_version, lorasched_plugin_api_version) \
  BOOST_DLL_ALIAS(lorasched_plugin_exports::exported_info, lorasched_plugin_info)               \
  BOOST_DLL_ALIAS(lorasched_plugin_exports::exported_create, lorasched_plugin_create)
