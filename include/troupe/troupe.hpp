// Everything a program needs: #include <troupe/troupe.hpp> brings the whole
// public API (actors, the runtime, fs, net, whole-file reads, fixed buffers,
// the logger and fmt formatting of refs).
#pragma once

#include <troupe/actor.hpp>
#include <troupe/config.hpp>
#include <troupe/defaults.hpp>
#include <troupe/error.hpp>
#include <troupe/fixed_buffer.hpp>
#include <troupe/fs.hpp>
#include <troupe/fwd.hpp>
#include <troupe/io.hpp>
#include <troupe/log.hpp>
#include <troupe/net.hpp>
#include <troupe/placement.hpp>
#include <troupe/promise.hpp>
#include <troupe/ref.hpp>
#include <troupe/result.hpp>
#include <troupe/runtime.hpp>
#include <troupe/spawn.hpp>
#include <troupe/stats.hpp>
#include <troupe/whole_file.hpp>
