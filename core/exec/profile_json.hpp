// The profile file (JSON, read and written with nlohmann-json; docs/costmodel.md).
#pragma once

#include <filesystem>
#include <string>

#include "core/exec/profile.hpp"

namespace lorasched {

// JSON (nlohmann). read_profile throws InputError naming the file and the key for a
// missing or corrupt file, a wrong format or version, or a missing or bad field.
void write_profile(const Profile& p, const std::filesystem::path& path);
Profile read_profile(const std::filesystem::path& path);
std::string profile_to_json(const Profile& p);
Profile profile_from_json(const std::string& text, const std::string& source);

}  // namespace lorasched
