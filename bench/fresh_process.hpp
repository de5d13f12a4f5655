// Figures measured in a fresh process: a benchmark runs itself again (/proc/self/exe) with a flag
// naming what to measure, and the child writes its figures (doubles) into a pipe. Resident-set
// measurements need this: each allocator, pool or arena size starts from a clean heap and its
// own resident set. One copy for every benchmark that does it.
//
//   main():   if (auto code = movable::bench::run_if_child(argc, argv, flag, child)) return *code;
//   parent:   movable::bench::figures_in_fresh_process(flag, which, count)
// where child(which) returns the figures for `which` (empty: unknown).
#pragma once

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace movable::bench {

// In the child (argv[1] == flag + "which:fd"): writes child(which) to fd and answers the exit
// code; otherwise nothing (the program goes on as the parent).
inline std::optional<int>
run_if_child(int argc, char** argv, const char* flag,
             const std::function<std::vector<double>(const std::string&)>& child) {
    if (argc != 2 || std::strncmp(argv[1], flag, std::strlen(flag)) != 0) {
        return std::nullopt;
    }
    const std::string spec = argv[1] + std::strlen(flag); // which:fd
    const std::size_t colon = spec.find(':');
    if (colon == std::string::npos) {
        return 2;
    }
    const std::vector<double> values = child(spec.substr(0, colon));
    if (values.empty()) {
        return 2;
    }
    const int fd = std::stoi(spec.substr(colon + 1));
    const auto bytes = static_cast<ssize_t>(values.size() * sizeof(double));
    return ::write(fd, values.data(), static_cast<std::size_t>(bytes)) == bytes ? 0 : 1;
}

// Runs this program again as a child measuring `which`; its `count` figures, or empty on
// failure.
inline std::vector<double> figures_in_fresh_process(const char* flag, const std::string& which,
                                                    std::size_t count) {
    int fds[2];
    if (::pipe(fds) != 0) {
        return {};
    }
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(fds[0]);
        std::string argument = flag + which + ":" + std::to_string(fds[1]);
        char program[] = "/proc/self/exe";
        char* arguments[] = {program, argument.data(), nullptr};
        ::execv(program, arguments);
        ::_exit(127);
    }
    ::close(fds[1]);
    std::vector<double> values(count);
    const auto wanted = static_cast<ssize_t>(count * sizeof(double));
    ssize_t got = 0;
    while (child > 0 && got < wanted) {
        const ssize_t n = ::read(fds[0], reinterpret_cast<char*>(values.data()) + got,
                                 static_cast<std::size_t>(wanted - got));
        if (n <= 0) {
            break;
        }
        got += n;
    }
    ::close(fds[0]);
    int status = 0;
    if (child > 0) {
        ::waitpid(child, &status, 0);
    }
    const bool ok = got == wanted && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return ok ? values : std::vector<double>{};
}

} // namespace movable::bench
