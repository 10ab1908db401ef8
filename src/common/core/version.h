// version.h — the project's version and the git commit the build was configured from
// (`git describe --always --dirty` at cmake time; "unknown" outside a git checkout). Every
// executable prints version_line(name) for --version.
#pragma once
#include <string>

namespace rlhf {

const char* version();     // e.g. "0.1.0"
const char* git_commit();  // e.g. "0bd01c0" or "0bd01c0-dirty"
// "<program> <version> (git <commit>)"
std::string version_line(const std::string& program);

}  // namespace rlhf
