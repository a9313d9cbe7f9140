// Everything a lorasched plugin includes: types, views, policy interfaces, plan
// validation and the export macro. Plugins see only these headers, never engine internals.
#pragma once

#include "lorasched/plugin/export.hpp"
#include "lorasched/plugin/policies.hpp"
#include "lorasched/plugin/types.hpp"
#include "lorasched/plugin/validate.hpp"
#include "lorasched/plugin/views.hpp"
