// Everything a program needs: #include <troupe/troupe.hpp>.
#pragma once

#include <troupe/actor.hpp>
#include <troupe/config.hpp>
#include <troupe/error.hpp>
#include <troupe/fs.hpp>
#include <troupe/io.hpp>
#include <troupe/placement.hpp>
#include <troupe/promise.hpp>
#include <troupe/ref.hpp>
#include <troupe/result.hpp>
#include <troupe/runtime.hpp>
#include <troupe/stats.hpp>
